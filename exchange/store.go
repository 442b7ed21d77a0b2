package exchange

import (
	"context"
	"errors"
	"time"
)

// Store is everything the broker keeps: signing keys, the replay cache and the
// audit trail. Implementations live under exchange/store (SQLite, the default)
// and must pass the conformance suite in exchange/store/storetest.
type Store interface {
	SigningKeyStore
	ReplayCache
	AuditStore
	// Ping reports whether the store is reachable (for /readyz).
	Ping(ctx context.Context) error
	// Close releases the store.
	Close() error
}

// StoredKey is a signing key as the store keeps it.
type StoredKey struct {
	// ID is the JWS kid.
	ID string
	// Algorithm is the JWS alg the key signs with (ES256, RS256, EdDSA).
	Algorithm string
	// PrivateKey is the PKCS #8 DER encoding of the private key.
	PrivateKey []byte
	// CreatedAt is when the key was generated.
	CreatedAt time.Time
	// ActiveAt is when the key may start signing; before it, it is only
	// published in the JWKS (so verifiers learn it before they meet it).
	ActiveAt time.Time
	// RetiredAt, when set, is when the key stopped signing.
	RetiredAt time.Time
	// RemoveAt, when set, is when the key leaves the JWKS (every token it
	// signed has expired by then).
	RemoveAt time.Time
}

// SigningKeyStore keeps the broker's signing keys, shared by every replica.
type SigningKeyStore interface {
	// SigningKeys returns every key not yet removed (RemoveAt zero or after now),
	// oldest first.
	SigningKeys(ctx context.Context, now time.Time) ([]StoredKey, error)
	// EnsureSigningKey atomically inserts candidate unless a key of the same
	// algorithm that is not retired already exists, and returns the key that
	// is then current for the algorithm (the existing one, or candidate).
	// Replicas starting at once therefore agree on a single key.
	EnsureSigningKey(ctx context.Context, candidate StoredKey) (StoredKey, error)
}

// ErrReplay is returned by ReplayCache.Claim for an (issuer, jti) pair that
// was already claimed.
var ErrReplay = errors.New("exchange: token already used")

// ReplayCache records the (iss, jti) pairs of exchanged single-use tokens.
type ReplayCache interface {
	// Claim records (issuer, jti) until the given time, or returns ErrReplay
	// if the pair is already recorded and not yet expired. It is atomic across
	// every replica sharing the store.
	Claim(ctx context.Context, issuer, jti string, until time.Time) error
}

// Outcomes of an audited decision.
const (
	OutcomeAllowed = "allowed"
	OutcomeDenied  = "denied"
	OutcomeError   = "error"
)

// AuditEvent is one decision of the broker. It never holds a secret: no
// token, no API key, only identifiers.
type AuditEvent struct {
	Time      time.Time
	RequestID string
	ClientIP  string
	// Action is what was asked, e.g. "token.exchange".
	Action string
	// Outcome is OutcomeAllowed, OutcomeDenied or OutcomeError.
	Outcome string
	// ErrorCode is the RFC 6749 error sent to the client, if any.
	ErrorCode string
	// Reason is the full reason for a refusal or error.
	Reason  string
	Issuer  string
	Subject string
	Policy  string
	// Candidates are all the policies that allowed the request, in selection order.
	Candidates []string
	TokenType  string
	Audience   []string
	Scopes     []string
	// CredentialID is the jti of a minted JWT or the id of a minted API key.
	CredentialID string
	ExpiresAt    time.Time
}

// AuditQuery selects audit events; zero fields do not filter.
type AuditQuery struct {
	Since, Until time.Time
	Subject      string
	Policy       string
	Outcome      string
	// Limit caps the number of events returned, newest first; 0 means 100.
	Limit int
}

// AuditStore keeps the audit trail.
type AuditStore interface {
	// AppendAudit stores events in one transaction.
	AppendAudit(ctx context.Context, events []AuditEvent) error
	// QueryAudit returns matching events, newest first.
	QueryAudit(ctx context.Context, q AuditQuery) ([]AuditEvent, error)
}
