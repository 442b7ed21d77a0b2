package providers

import (
	"errors"
	"time"
)

// Token is a CI ID token whose signature, issuer, algorithm and time claims
// have been verified. Audience is not checked here: trust policies decide
// which audience a token must carry.
type Token struct {
	// Provider is the name of the configured provider that vouched for the token.
	Provider string
	// Issuer is the token's iss, byte for byte equal to the configured issuer.
	Issuer string
	// Subject is the token's sub.
	Subject string
	// Audience is the token's aud, always as a list.
	Audience []string
	// Expiry, IssuedAt and NotBefore are exp, iat and nbf (zero when absent).
	Expiry, IssuedAt, NotBefore time.Time
	// ID is the token's jti, empty when absent.
	ID string
	// Algorithm is the JWS alg the token was signed with.
	Algorithm string
	// KeyID is the kid of the key that verified the signature.
	KeyID string
	// Claims holds every claim of the payload, decoded with json.Decoder.UseNumber
	// so that numbers keep their JSON text (policies compare them as text).
	Claims map[string]any
}

// Sentinel errors returned (wrapped) by Registry.Verify. Callers branch on
// them with errors.Is; the wrapped message carries the full reason for the
// audit trail and must not be sent to the client.
var (
	// ErrUntrustedIssuer means the unverified iss names no configured issuer.
	// No network I/O was done for the token.
	ErrUntrustedIssuer = errors.New("providers: issuer is not configured")
	// ErrMalformed means the token is not a well-formed compact JWS with a JSON
	// payload within the size limits, or carries a forbidden header.
	ErrMalformed = errors.New("providers: malformed token")
	// ErrAlgorithm means the token's alg is not allowed for its issuer.
	ErrAlgorithm = errors.New("providers: signing algorithm not allowed")
	// ErrUnknownKey means no key of the issuer's key set has the token's kid,
	// even after a refetch (or the refetch is still in its cooldown).
	ErrUnknownKey = errors.New("providers: unknown signing key")
	// ErrSignature means the signature does not verify.
	ErrSignature = errors.New("providers: invalid signature")
	// ErrExpired means exp is in the past (beyond the leeway), or absent.
	ErrExpired = errors.New("providers: token expired")
	// ErrNotYetValid means nbf is in the future (beyond the leeway).
	ErrNotYetValid = errors.New("providers: token not yet valid")
	// ErrIssuedInFuture means iat is in the future (beyond the leeway).
	ErrIssuedInFuture = errors.New("providers: token issued in the future")
	// ErrLifetime means exp - iat exceeds the configured maximum lifetime.
	ErrLifetime = errors.New("providers: token lifetime too long")
	// ErrClaims means a registered claim has the wrong type or is missing
	// (iss, sub, aud, exp, iat).
	ErrClaims = errors.New("providers: invalid claims")
	// ErrUnavailable means the issuer's discovery document or key set could not
	// be fetched and no usable cached copy exists; the request may be retried.
	ErrUnavailable = errors.New("providers: issuer unavailable")
)
