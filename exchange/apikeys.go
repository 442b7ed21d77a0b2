package exchange

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Verification codes of POST /v1/keys/verify (DESIGN.md, contract).
const (
	KeyValid         = "VALID"
	KeyNotFound      = "NOT_FOUND"
	KeyExpired       = "EXPIRED"
	KeyRevoked       = "REVOKED"
	KeyUsageExceeded = "USAGE_EXCEEDED"
)

// APIKeysConfig wires APIKeys.
type APIKeysConfig struct {
	// Store keeps the keys. Required.
	Store APIKeyStore
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// Commit tunes the group commits of new keys and of uses of limited keys.
	Commit GroupCommitOptions
}

// APIKeys issues, verifies and revokes API keys. New keys and uses of keys
// with a use limit are committed in groups (GroupCommitter): Issue and
// Verify return only once their write is durable, and concurrent calls
// share a transaction.
type APIKeys struct {
	store     APIKeyStore
	now       func() time.Time
	committer *GroupCommitter[APIKey]
	uses      *GroupCommitter[*APIKeyUse]
}

// NewAPIKeys checks cfg and starts the group committers; Close stops them.
func NewAPIKeys(cfg APIKeysConfig) (*APIKeys, error) {
	if cfg.Store == nil {
		return nil, errors.New("exchange: APIKeysConfig needs a Store")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &APIKeys{
		store:     cfg.Store,
		now:       cfg.Now,
		committer: NewGroupCommitter(cfg.Store.InsertAPIKeys, cfg.Commit),
		uses:      NewGroupCommitter(cfg.Store.UseAPIKeys, cfg.Commit),
	}, nil
}

// Close commits the keys and uses already submitted and stops the
// committers.
func (a *APIKeys) Close() error {
	return errors.Join(a.uses.Close(), a.committer.Close())
}

// Issue makes a new key carrying the fields of grant (Subject, Issuer,
// Policy, Audience, Scopes, Metadata, CreatedAt, ExpiresAt, Uses), stores it
// and returns the key and what was stored. It returns only once the key is
// committed; an error means the key must not be handed out. Text the store
// cannot hold (invalid UTF-8, NUL, over-long) is refused before the group
// commit, so it cannot fail the commit of other callers' keys.
func (a *APIKeys) Issue(ctx context.Context, grant APIKey) (string, APIKey, error) {
	switch {
	case grant.Policy == "":
		return "", APIKey{}, errors.New("exchange: API key without policy")
	case grant.CreatedAt.IsZero() || !grant.ExpiresAt.After(grant.CreatedAt):
		return "", APIKey{}, errors.New("exchange: API key lifetime is empty")
	case grant.Uses < 0:
		return "", APIKey{}, errors.New("exchange: API key with negative uses")
	}
	if err := validateKeyText(&grant); err != nil {
		return "", APIKey{}, err
	}
	key, hash := NewAPIKey()
	k := grant
	k.ID, k.Hash = APIKeyID(hash), hash
	k.Remaining, k.RevokedAt = k.Uses, time.Time{}
	k.Audience, k.Scopes = slices.Clone(k.Audience), slices.Clone(k.Scopes)
	k.Metadata = maps.Clone(k.Metadata)
	if err := a.committer.Submit(ctx, k); err != nil {
		return "", APIKey{}, fmt.Errorf("exchange: store API key: %w", err)
	}
	return key, k, nil
}

// KeyVerification is the verdict on an API key.
type KeyVerification struct {
	// Code is KeyValid or the reason the key is refused.
	Code string
	// Key is the key as it stands after the verification (Remaining already
	// decremented); it is zero for KeyNotFound.
	Key APIKey
}

// Valid reports whether Code is KeyValid.
func (v KeyVerification) Valid() bool { return v.Code == KeyValid }

// Verify checks key and, when it is valid and has a use limit, spends one
// use, atomically across replicas. A malformed key, or one with a wrong
// checksum, is KeyNotFound without any store access. The key is read first:
// an unlimited key, or one already refused, costs that read only. A use of a
// limited key goes through the group committer of uses, whose transaction
// re-checks the key. An error means the store failed; the verdict is then
// unknown (and the use possibly spent).
func (a *APIKeys) Verify(ctx context.Context, key string) (KeyVerification, error) {
	hash, err := ParseAPIKey(key)
	if err != nil {
		return KeyVerification{Code: KeyNotFound}, nil
	}
	now := a.now()
	k, err := a.store.APIKeyByHash(ctx, hash)
	switch {
	case errors.Is(err, ErrNotFound):
		return KeyVerification{Code: KeyNotFound}, nil
	case err != nil:
		return KeyVerification{}, fmt.Errorf("exchange: verify API key: %w", err)
	}
	if code := keyState(k, now); code != KeyValid || !k.Limited() {
		return KeyVerification{Code: code, Key: k}, nil
	}
	return a.use(ctx, hash, now)
}

// use spends one use of the limited key of hash at now and reports the
// verdict on the key as the use left it.
func (a *APIKeys) use(ctx context.Context, hash []byte, now time.Time) (KeyVerification, error) {
	u := &APIKeyUse{Hash: hash, Now: now}
	if err := a.uses.Submit(ctx, u); err != nil {
		return KeyVerification{}, fmt.Errorf("exchange: verify API key: %w", err)
	}
	// Submit returned after the commit set u's results.
	switch {
	case errors.Is(u.Err, ErrNotFound): // purged since the read
		return KeyVerification{Code: KeyNotFound}, nil
	case u.Err != nil:
		return KeyVerification{}, fmt.Errorf("exchange: verify API key: %w", u.Err)
	case u.Used:
		return KeyVerification{Code: KeyValid, Key: u.Key}, nil
	}
	// Refused since the read: spent, revoked or expired by now. A key the
	// store refused is never reported valid, whatever it reads as.
	code := keyState(u.Key, now)
	if code == KeyValid {
		code = KeyUsageExceeded
	}
	return KeyVerification{Code: code, Key: u.Key}, nil
}

// Inspect reports the state of key without spending a use (introspection).
func (a *APIKeys) Inspect(ctx context.Context, key string) (KeyVerification, error) {
	hash, err := ParseAPIKey(key)
	if err != nil {
		return KeyVerification{Code: KeyNotFound}, nil
	}
	k, err := a.store.APIKeyByHash(ctx, hash)
	switch {
	case errors.Is(err, ErrNotFound):
		return KeyVerification{Code: KeyNotFound}, nil
	case err != nil:
		return KeyVerification{}, fmt.Errorf("exchange: inspect API key: %w", err)
	}
	return KeyVerification{Code: keyState(k, a.now()), Key: k}, nil
}

// Revoke revokes key. It returns the key's id when the key is known (even
// if it was revoked before) and "" for a malformed or unknown key.
func (a *APIKeys) Revoke(ctx context.Context, key string) (string, error) {
	hash, err := ParseAPIKey(key)
	if err != nil {
		return "", nil
	}
	if _, err := a.store.RevokeAPIKeyByHash(ctx, hash, a.now()); err != nil {
		return "", fmt.Errorf("exchange: revoke API key: %w", err)
	}
	if _, err := a.store.APIKeyByHash(ctx, hash); err != nil {
		if errors.Is(err, ErrNotFound) {
			return "", nil
		}
		return "", fmt.Errorf("exchange: revoke API key: %w", err)
	}
	return APIKeyID(hash), nil
}

// keyState is the code of a stored key at now, the use it may have just been
// granted aside: revocation first, then expiry, then spent uses.
func keyState(k APIKey, now time.Time) string {
	switch {
	case !k.RevokedAt.IsZero():
		return KeyRevoked
	case !k.ExpiresAt.After(now):
		return KeyExpired
	case k.Limited() && k.Remaining <= 0:
		return KeyUsageExceeded
	}
	return KeyValid
}
