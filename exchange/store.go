package exchange

import (
	"context"
	"errors"
	"time"
)

// Store is everything the broker keeps: signing keys, the replay cache, the
// audit trail, API keys and revoked JWTs. Implementations live under
// exchange/store (SQLite, the default) and must pass the conformance suite in
// exchange/store/storetest.
type Store interface {
	SigningKeyStore
	ReplayCache
	AuditStore
	APIKeyStore
	RevocationStore
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
	// RotateSigningKey atomically retires the key currentID (setting its
	// RetiredAt to retireAt and its RemoveAt to removeAt) and inserts next,
	// provided currentID is held and not yet retired. It returns false and
	// changes nothing when currentID is already retired: another replica
	// rotated first (a compare-and-swap, safe across every replica). next
	// must be unretired and of currentID's algorithm, and removeAt must not
	// precede retireAt. An unknown currentID gives an error wrapping
	// ErrNotFound.
	RotateSigningKey(ctx context.Context, currentID string, next StoredKey, retireAt, removeAt time.Time) (bool, error)
}

// ErrReplay is returned by ReplayCache.Claim, and set in ReplayClaim.Err by
// ReplayCache.ClaimAll, for an (issuer, jti) pair that was already claimed.
var ErrReplay = errors.New("exchange: token already used")

// ReplayClaim is one claim of a ReplayCache.ClaimAll batch: the pair to
// record and, once the batch is committed, its result.
type ReplayClaim struct {
	Issuer, JTI string
	// Until is when the entry expires.
	Until time.Time
	// Err is set by ClaimAll: nil when the pair was claimed, ErrReplay when
	// it was already claimed and not expired.
	Err error
}

// ReplayCache records the (iss, jti) pairs of exchanged single-use tokens.
type ReplayCache interface {
	// Claim records (issuer, jti) until the given time, or returns ErrReplay
	// if the pair is already recorded and not yet expired. It is atomic across
	// every replica sharing the store.
	Claim(ctx context.Context, issuer, jti string, until time.Time) error
	// ClaimAll runs the claims in one transaction, in order, and sets each
	// claim's Err to nil (claimed) or ErrReplay (already claimed and not
	// expired, by an earlier claim of the batch too: the first claim of a
	// pair wins). An invalid claim or a store failure returns an error and
	// claims nothing; the claims' Err are then meaningless. It is atomic
	// across every replica sharing the store, like Claim.
	ClaimAll(ctx context.Context, claims []*ReplayClaim) error
	// PurgeExpired deletes the entries that expired before now and returns
	// how many.
	PurgeExpired(ctx context.Context, now time.Time) (int64, error)
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

// ErrNotFound is returned by a store for an API key it does not hold.
var ErrNotFound = errors.New("exchange: not found")

// APIKey is an API key as the store keeps it: never the key itself, only
// its SHA-256 hash, plus what a verification reports.
type APIKey struct {
	// ID is the short, non-secret key id ("kid_..."), derived from Hash;
	// listings and the audit trail show it.
	ID string
	// Hash is the SHA-256 of the key (32 bytes).
	Hash []byte
	// Subject and Issuer are the sub and iss of the CI token exchanged.
	Subject string
	Issuer  string
	// Policy is the trust policy that granted the key.
	Policy   string
	Audience []string
	Scopes   []string
	// Metadata are the grant's rendered claims (repository, ref, run id, ...).
	Metadata  map[string]string
	CreatedAt time.Time
	ExpiresAt time.Time
	// Uses is the number of uses granted; 0 means unlimited.
	Uses int64
	// Remaining is the number of uses left; it means nothing when Uses is 0.
	Remaining int64
	// RevokedAt, when set, is when the key was revoked.
	RevokedAt time.Time
}

// Limited reports whether the key has a number of uses.
func (k *APIKey) Limited() bool { return k.Uses > 0 }

// APIKeyQuery selects API keys for listings; zero fields do not filter.
type APIKeyQuery struct {
	Subject string
	Policy  string
	// Now, when set, leaves out keys expired or revoked at Now.
	Now time.Time
	// Limit caps the number of keys returned, newest first; 0 means 100.
	Limit int
}

// APIKeyUse is one use of an APIKeyStore.UseAPIKeys batch: the key to spend
// and the time of the use, then, once the batch is committed, its result.
type APIKeyUse struct {
	// Hash is the SHA-256 of the key.
	Hash []byte
	// Now is the time of the use, against which expiry is checked.
	Now time.Time
	// Key is the key as it stands after the use (set by UseAPIKeys).
	Key APIKey
	// Used reports whether a use was granted (set by UseAPIKeys).
	Used bool
	// Err is ErrNotFound for an unknown hash, another error for a
	// malformed use or a stored key that cannot be read, nil otherwise (set
	// by UseAPIKeys).
	Err error
}

// APIKeyStore keeps API keys, shared by every replica.
type APIKeyStore interface {
	// InsertAPIKeys stores keys in one transaction: all or none. A key
	// whose hash or id is already stored fails the whole call.
	InsertAPIKeys(ctx context.Context, keys []APIKey) error
	// APIKeyByHash returns the key of the given hash, or ErrNotFound.
	APIKeyByHash(ctx context.Context, hash []byte) (APIKey, error)
	// APIKeyByID returns the key of the given id, or ErrNotFound.
	APIKeyByID(ctx context.Context, id string) (APIKey, error)
	// UseAPIKeys spends one use per item of the key of its hash if it is
	// usable at its Now: held, not revoked, ExpiresAt after Now and, when
	// limited, with a use left; the check and the decrement are one atomic
	// step across every replica (N concurrent uses of a key with N uses
	// grant exactly N). Each item gets the key as it stands after its use.
	// A batch is one transaction (one commit):
	// each use is decided in order, against the key as the earlier uses of
	// the batch left it (N uses of a key with N-1 remaining: the first N-1
	// are granted), and its Key, Used and Err are set. A use of an unknown
	// hash gets Err ErrNotFound and a malformed use its own error, without
	// failing the others. A returned error means the store failed: the
	// transaction is rolled back (unless the failure hid its commit, as a
	// lost connection can), the uses' results are meaningless and each use
	// must be treated as refused.
	UseAPIKeys(ctx context.Context, uses []*APIKeyUse) error
	// RevokeAPIKey marks the key of id revoked at now and reports whether it
	// was held and not yet revoked.
	RevokeAPIKey(ctx context.Context, id string, now time.Time) (bool, error)
	// RevokeAPIKeyByHash is RevokeAPIKey by hash.
	RevokeAPIKeyByHash(ctx context.Context, hash []byte, now time.Time) (bool, error)
	// ListAPIKeys returns matching keys, newest first.
	ListAPIKeys(ctx context.Context, q APIKeyQuery) ([]APIKey, error)
	// PurgeAPIKeys deletes the keys that expired before the given time and
	// returns how many it deleted.
	PurgeAPIKeys(ctx context.Context, expiredBefore time.Time) (int64, error)
}

// RevocationStore keeps the jti of revoked JWTs until they expire.
type RevocationStore interface {
	// RevokeToken records jti as revoked until the given time (the token's
	// exp); revoking it again keeps the later time.
	RevokeToken(ctx context.Context, jti string, until time.Time) error
	// TokenRevoked reports whether jti is recorded as revoked.
	TokenRevoked(ctx context.Context, jti string) (bool, error)
	// PurgeRevokedTokens deletes the entries that expired before now.
	PurgeRevokedTokens(ctx context.Context, now time.Time) (int64, error)
}
