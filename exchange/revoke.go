package exchange

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// IntrospectLeeway is the clock skew allowed on a minted JWT's nbf when
// introspecting it: replicas mint with their own clocks.
const IntrospectLeeway = 30 * time.Second

// Kinds of credential the broker mints, as Revocation and Introspection
// name them.
const (
	CredentialJWT    = "jwt"
	CredentialAPIKey = "api_key"
)

// RevokerConfig wires a Revoker. Issuer, Keys and Tokens are required;
// without APIKeys, API keys are unknown tokens.
type RevokerConfig struct {
	// Issuer is the iss of minted JWTs (the broker's public URL).
	Issuer string
	// Keys checks that a JWT was signed by this broker before its jti or
	// exp is trusted.
	Keys *KeyManager
	// Tokens keeps the jti of revoked JWTs.
	Tokens RevocationStore
	// APIKeys revokes and inspects API keys.
	APIKeys *APIKeys
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Revoker revokes (RFC 7009) and introspects (RFC 7662) the credentials the
// broker minted: API keys by their hash, JWTs by their jti.
type Revoker struct {
	cfg RevokerConfig
}

// NewRevoker checks cfg and fills its defaults.
func NewRevoker(cfg RevokerConfig) (*Revoker, error) {
	if cfg.Issuer == "" || cfg.Keys == nil || cfg.Tokens == nil {
		return nil, errors.New("exchange: RevokerConfig needs Issuer, Keys and Tokens")
	}
	cfg.Issuer = strings.TrimRight(cfg.Issuer, "/")
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Revoker{cfg: cfg}, nil
}

// Revocation is what a revocation did.
type Revocation struct {
	// Kind is CredentialJWT or CredentialAPIKey; empty for a token this
	// broker did not mint (RFC 7009 §2.2: nothing to do, still a success).
	Kind string
	// ID is the jti of the JWT or the id of the API key.
	ID string
}

// Revoke revokes token. The kind is told by the token's shape, which is
// unambiguous, so the RFC 7009 token_type_hint is not needed. A JWT counts
// only if its signature verifies with one of the broker's own keys and its
// iss is the broker's: then its jti is recorded until its exp (an expired JWT
// needs nothing). An error means the store failed.
func (r *Revoker) Revoke(ctx context.Context, token string) (Revocation, error) {
	if LooksLikeAPIKey(token) {
		if r.cfg.APIKeys == nil {
			return Revocation{}, nil
		}
		id, err := r.cfg.APIKeys.Revoke(ctx, token)
		if err != nil || id == "" {
			return Revocation{}, err
		}
		return Revocation{Kind: CredentialAPIKey, ID: id}, nil
	}
	c, err := r.ownJWT(token)
	if err != nil || c.JTI == "" {
		return Revocation{}, nil
	}
	exp := time.Unix(c.Exp, 0)
	if exp.After(r.cfg.Now()) {
		if err := r.cfg.Tokens.RevokeToken(ctx, c.JTI, exp); err != nil {
			return Revocation{}, fmt.Errorf("exchange: revoke JWT: %w", err)
		}
	}
	return Revocation{Kind: CredentialJWT, ID: c.JTI}, nil
}

// mintedClaims are the claims of a JWT this broker minted that revocation
// and introspection read.
type mintedClaims struct {
	Issuer   string   `json:"iss"`
	Subject  string   `json:"sub"`
	Audience audience `json:"aud"`
	Exp      int64    `json:"exp"`
	Iat      int64    `json:"iat"`
	Nbf      int64    `json:"nbf"`
	JTI      string   `json:"jti"`
	Scope    string   `json:"scope"`
	ClientID string   `json:"client_id"`
}

// audience is an aud claim: a string or an array of strings (RFC 7519 §4.1.3).
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	if bytes.HasPrefix(bytes.TrimSpace(b), []byte(`"`)) {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*a = audience{s}
		return nil
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return err
	}
	*a = l
	return nil
}

// ownJWT verifies that token is a JWS signed by one of the broker's
// published keys and issued by the broker, and returns its claims. Expiry is
// left to the caller.
func (r *Revoker) ownJWT(token string) (*mintedClaims, error) {
	if strings.Count(token, ".") != 2 || len(token) > MaxBodyBytes {
		return nil, errors.New("exchange: not a compact JWS")
	}
	payload, err := r.cfg.Keys.verifyOwn(token)
	if err != nil {
		return nil, err
	}
	var c mintedClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, fmt.Errorf("exchange: JWT claims: %w", err)
	}
	if c.Issuer != r.cfg.Issuer {
		return nil, fmt.Errorf("exchange: JWT issued by %q, not this broker", c.Issuer)
	}
	return &c, nil
}

// verifyOwn checks the signature of a compact JWS against the key its kid
// names among the published keys (the algorithm is the key's own, never the
// header's choice) and returns the payload.
func (m *KeyManager) verifyOwn(token string) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.EdDSA})
	if err != nil {
		return nil, fmt.Errorf("exchange: parse JWS: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("exchange: JWS must carry one signature")
	}
	h := jws.Signatures[0].Header
	m.mu.RLock()
	var key *signingKey
	for _, k := range m.keys {
		if k.stored.ID == h.KeyID {
			key = k
			break
		}
	}
	m.mu.RUnlock()
	if key == nil {
		return nil, fmt.Errorf("exchange: JWS kid %q is not a key of this broker", h.KeyID)
	}
	if h.Algorithm != key.stored.Algorithm {
		return nil, fmt.Errorf("exchange: JWS alg %q, key %s is %s", h.Algorithm, key.stored.ID, key.stored.Algorithm)
	}
	payload, err := jws.Verify(key.public)
	if err != nil {
		return nil, fmt.Errorf("exchange: JWS signature: %w", err)
	}
	return payload, nil
}
