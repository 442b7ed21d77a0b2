package verifier

import (
	"context"
	"time"
)

// Kinds of credential.
const (
	// KindJWT is a JWT verified locally.
	KindJWT = "jwt"
	// KindAPIKey is an API key checked with the broker.
	KindAPIKey = "api_key"
)

// Identity is who a verified credential speaks for: the pipeline a trust
// policy allowed, and what it may do.
type Identity struct {
	// Kind is KindJWT or KindAPIKey.
	Kind string
	// ID is the JWT's jti or the API key's key_id: what revocation and the
	// broker's audit trail name.
	ID string
	// Subject is the CI token's sub (e.g. repo:octo-org/app:environment:prod).
	Subject string
	// Audience lists the APIs the credential is for; it holds this API's.
	Audience []string
	// Scopes are the granted scopes.
	Scopes []string
	// Policy is the trust policy that allowed the exchange (the JWT's
	// client_id).
	Policy string
	// Repository is the pipeline's repository or project path, when the
	// credential names one (claim repository, src.repository,
	// src.project_path, or API key metadata repository).
	Repository string
	// Source is the JWT's src claim: the CI token's issuer, subject and
	// identity claims. Nil for API keys.
	Source map[string]any
	// Claims are all of the JWT's claims. Nil for API keys.
	Claims map[string]any
	// Metadata is the API key's metadata. Nil for JWTs.
	Metadata map[string]string
	// ExpiresAt is when the credential expires.
	ExpiresAt time.Time
	// Remaining is the API key's remaining uses, nil when unlimited.
	Remaining *int
}

// HasScope reports whether the identity was granted scope.
func (id *Identity) HasScope(scope string) bool {
	return contains(id.Scopes, scope)
}

type ctxKey struct{}

// WithIdentity returns ctx carrying id.
func WithIdentity(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the identity the middleware verified for the request
// whose context is ctx.
func FromContext(ctx context.Context) (*Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(*Identity)
	return id, ok && id != nil
}
