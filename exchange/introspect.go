package exchange

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Introspection is the answer of POST /introspect (RFC 7662 §2.2). An
// inactive, unknown or foreign token is exactly {"active":false}.
type Introspection struct {
	Active bool `json:"active"`
	// Scope is the space-separated scopes.
	Scope string `json:"scope,omitempty"`
	// ClientID is the name of the trust policy that granted the credential.
	ClientID  string   `json:"client_id,omitempty"`
	TokenType string   `json:"token_type,omitempty"`
	Exp       int64    `json:"exp,omitempty"`
	Iat       int64    `json:"iat,omitempty"`
	Nbf       int64    `json:"nbf,omitempty"`
	Subject   string   `json:"sub,omitempty"`
	Audience  []string `json:"aud,omitempty"`
	Issuer    string   `json:"iss,omitempty"`
	JTI       string   `json:"jti,omitempty"`
	// CredentialType is CredentialJWT or CredentialAPIKey (an extension).
	CredentialType string `json:"credential_type,omitempty"`
	// KeyID, Remaining and Metadata describe an API key (extensions);
	// Remaining is absent for a key without a use limit.
	KeyID     string            `json:"key_id,omitempty"`
	Remaining *int64            `json:"remaining,omitempty"`
	Metadata  map[string]string `json:"metadata,omitempty"`
}

// Introspect reports whether token is an active credential of this broker
// and what it carries. It never spends a use of an API key. An error means
// the store failed, and the answer is unknown (not "inactive").
func (r *Revoker) Introspect(ctx context.Context, token string) (Introspection, error) {
	if LooksLikeAPIKey(token) {
		return r.introspectKey(ctx, token)
	}
	c, err := r.ownJWT(token)
	if err != nil {
		return Introspection{}, nil
	}
	now := r.cfg.Now()
	if c.Exp == 0 || !time.Unix(c.Exp, 0).After(now) || time.Unix(c.Nbf, 0).After(now.Add(IntrospectLeeway)) {
		return Introspection{}, nil
	}
	if c.JTI != "" {
		revoked, err := r.cfg.Tokens.TokenRevoked(ctx, c.JTI)
		if err != nil {
			return Introspection{}, fmt.Errorf("exchange: introspect JWT: %w", err)
		}
		if revoked {
			return Introspection{}, nil
		}
	}
	return Introspection{
		Active: true, Scope: c.Scope, ClientID: c.ClientID, TokenType: "Bearer",
		Exp: c.Exp, Iat: c.Iat, Nbf: c.Nbf, Subject: c.Subject, Audience: c.Audience,
		Issuer: c.Issuer, JTI: c.JTI, CredentialType: CredentialJWT,
	}, nil
}

func (r *Revoker) introspectKey(ctx context.Context, token string) (Introspection, error) {
	if r.cfg.APIKeys == nil {
		return Introspection{}, nil
	}
	v, err := r.cfg.APIKeys.Inspect(ctx, token)
	if err != nil || !v.Valid() {
		return Introspection{}, err
	}
	k := v.Key
	in := Introspection{
		Active: true, Scope: strings.Join(k.Scopes, " "), ClientID: k.Policy, TokenType: "Bearer",
		Exp: k.ExpiresAt.Unix(), Iat: k.CreatedAt.Unix(), Subject: k.Subject, Audience: k.Audience,
		Issuer: r.cfg.Issuer, CredentialType: CredentialAPIKey, KeyID: k.ID, Metadata: k.Metadata,
	}
	if k.Limited() {
		in.Remaining = &k.Remaining
	}
	return in, nil
}
