package exchange

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Key states, as KeyInfo.State reports them.
const (
	// KeyPending is a key published in the JWKS that does not sign yet.
	KeyPending = "pending"
	// KeyActive is a key that may sign (the newest active one does).
	KeyActive = "active"
	// KeyRetired is a key that signs no more but stays in the JWKS until its
	// RemoveAt, so the tokens it signed keep verifying.
	KeyRetired = "retired"
)

// RotationMargin is added to the longest credential lifetime and the leeway
// to get how long a retired key stays published (see KeepAfter). It covers a
// replica that signs with the old key until its next reload (every minute),
// and the clock skew of downstream verifiers.
const RotationMargin = 5 * time.Minute

// KeepAfter returns how long a key must stay published after it retires,
// when minted tokens live at most maxTTL and verifiers allow leeway of clock
// skew: every token the key signed has expired by then.
func KeepAfter(maxTTL, leeway time.Duration) time.Duration {
	return maxTTL + leeway + RotationMargin
}

// ErrRotationPending is returned by Rotate while the current key is still
// pending: a rotation is already under way. Rotate again once it is active.
var ErrRotationPending = errors.New("exchange: a rotation is pending")

// ErrConcurrentRotation is returned by Rotate when another replica (or
// command) rotated the current key first. Its rotation stands; nothing was
// changed.
var ErrConcurrentRotation = errors.New("exchange: the signing key was rotated concurrently")

// KeyInfo describes a signing key for listings: never the private key.
type KeyInfo struct {
	// ID is the JWS kid.
	ID        string
	Algorithm string
	CreatedAt time.Time
	ActiveAt  time.Time
	// RetiredAt and RemoveAt are zero until the key is rotated out.
	RetiredAt time.Time
	RemoveAt  time.Time
	// State is KeyPending, KeyActive or KeyRetired at the time of listing.
	State string
	// Signing is set on the key that signs at the time of listing.
	Signing bool
	// Encrypted is set on a key whose private key the store holds sealed
	// (see KeySealer); an unset one is stored in the clear.
	Encrypted bool
}

func keyInfo(sk StoredKey, now time.Time) KeyInfo {
	state := KeyActive
	switch {
	case sk.ActiveAt.After(now):
		state = KeyPending
	case !sk.RetiredAt.IsZero() && !now.Before(sk.RetiredAt):
		state = KeyRetired
	}
	return KeyInfo{
		ID: sk.ID, Algorithm: sk.Algorithm, CreatedAt: sk.CreatedAt, ActiveAt: sk.ActiveAt,
		RetiredAt: sk.RetiredAt, RemoveAt: sk.RemoveAt, State: state,
		Encrypted: IsSealed(sk.PrivateKey),
	}
}

// Keys describes the loaded keys (every published key), oldest first.
func (m *KeyManager) Keys() []KeyInfo {
	now := m.now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	return describe(m.keys, m.algorithm, now)
}

// DescribeKeys describes stored keys (as SigningKeyStore.SigningKeys returns
// them) at now, marking the one a broker signing with algorithm would use.
// It lets a listing read the store without creating a key.
func DescribeKeys(stored []StoredKey, algorithm string, now time.Time) []KeyInfo {
	keys := make([]*signingKey, len(stored))
	for i, sk := range stored {
		keys[i] = &signingKey{stored: sk}
	}
	return describe(keys, algorithm, now)
}

func describe(keys []*signingKey, algorithm string, now time.Time) []KeyInfo {
	signer := pickSigner(keys, algorithm, now)
	out := make([]KeyInfo, 0, len(keys))
	for _, k := range keys {
		ki := keyInfo(k.stored, now)
		ki.Signing = k == signer
		out = append(out, ki)
	}
	return out
}

// Rotate replaces the current signing key with overlap, in three phases:
//
//  1. a new key is stored now and published in the JWKS at once (every
//     replica loads it within a minute), but signs only from
//     now+publishAhead, so verifiers have fetched it before they meet it;
//  2. at that time the current key retires: it signs no more;
//  3. it stays published for keepAfter more (see KeepAfter), until every
//     token it signed has expired, then leaves the JWKS.
//
// The current key is the unretired key of the configured algorithm, as the
// store holds it now. The store swaps keys only if that key is still
// unretired, so replicas rotating at once make one rotation: the others get
// ErrConcurrentRotation. While the current key is pending Rotate returns
// ErrRotationPending. On success the keys are reloaded and the new key is
// returned.
func (m *KeyManager) Rotate(ctx context.Context, publishAhead, keepAfter time.Duration) (KeyInfo, error) {
	if publishAhead < 0 || keepAfter <= 0 {
		return KeyInfo{}, fmt.Errorf("exchange: rotate: publish ahead %s must not be negative, keep after %s must be positive", publishAhead, keepAfter)
	}
	now := m.now()
	cur, err := m.storedCurrent(ctx, now)
	if err != nil {
		return KeyInfo{}, err
	}
	if cur.ActiveAt.After(now) {
		return KeyInfo{}, fmt.Errorf("%w: key %s signs from %s", ErrRotationPending, cur.ID, cur.ActiveAt.UTC().Format(time.RFC3339))
	}
	next, err := m.generateKey(now)
	if err != nil {
		return KeyInfo{}, err
	}
	next.ActiveAt = next.CreatedAt.Add(publishAhead)
	ok, err := m.store.RotateSigningKey(ctx, cur.ID, next, next.ActiveAt, next.ActiveAt.Add(keepAfter))
	if err != nil {
		return KeyInfo{}, fmt.Errorf("exchange: rotate signing key: %w", err)
	}
	if !ok {
		return KeyInfo{}, fmt.Errorf("%w: key %s", ErrConcurrentRotation, cur.ID)
	}
	if err := m.Reload(ctx); err != nil {
		return KeyInfo{}, err
	}
	return keyInfo(next, now), nil
}

// storedCurrent returns the key of the configured algorithm that the store
// holds unretired: the one EnsureSigningKey returns, the oldest if several.
func (m *KeyManager) storedCurrent(ctx context.Context, now time.Time) (StoredKey, error) {
	stored, err := m.store.SigningKeys(ctx, now)
	if err != nil {
		return StoredKey{}, fmt.Errorf("exchange: load signing keys: %w", err)
	}
	for _, sk := range stored { // oldest first
		if sk.Algorithm == m.algorithm && sk.RetiredAt.IsZero() {
			return sk, nil
		}
	}
	return StoredKey{}, fmt.Errorf("exchange: no unretired %s signing key in the store", m.algorithm)
}

// RotationConfig is the automatic rotation of RunRotation.
type RotationConfig struct {
	// Every is the age (since it became active) at which the current key is
	// rotated. Zero turns automatic rotation off.
	Every time.Duration
	// PublishAhead and KeepAfter are passed to Rotate.
	PublishAhead, KeepAfter time.Duration
	// Interval is how often the age is checked (default one minute).
	Interval time.Duration
	// OnRotate, if not nil, is called with each key this replica rotated in.
	OnRotate func(KeyInfo)
	// OnError, if not nil, is called with each failed check or rotation.
	OnError func(error)
}

// RotateIfDue rotates when the current key has been active for at least
// every, and reports whether this call rotated. A pending key is not due (a
// rotation is under way) and losing the race to another replica is no
// error: either way nothing is done.
func (m *KeyManager) RotateIfDue(ctx context.Context, every, publishAhead, keepAfter time.Duration) (KeyInfo, bool, error) {
	now := m.now()
	cur, err := m.storedCurrent(ctx, now)
	if err != nil {
		return KeyInfo{}, false, err
	}
	if cur.ActiveAt.After(now) || now.Sub(cur.ActiveAt) < every {
		return KeyInfo{}, false, nil
	}
	next, err := m.Rotate(ctx, publishAhead, keepAfter)
	switch {
	case errors.Is(err, ErrConcurrentRotation), errors.Is(err, ErrRotationPending):
		return KeyInfo{}, false, nil
	case err != nil:
		return KeyInfo{}, false, err
	}
	return next, true, nil
}

// RunRotation checks every cfg.Interval whether the current key is due for
// rotation (RotateIfDue) until ctx is done. It returns at once when
// cfg.Every is zero. Every replica may run it: the store's compare-and-swap
// makes concurrent rotations one.
func (m *KeyManager) RunRotation(ctx context.Context, cfg RotationConfig) {
	if cfg.Every <= 0 {
		return
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Minute
	}
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			next, rotated, err := m.RotateIfDue(ctx, cfg.Every, cfg.PublishAhead, cfg.KeepAfter)
			switch {
			case err != nil && cfg.OnError != nil:
				cfg.OnError(err)
			case rotated && cfg.OnRotate != nil:
				cfg.OnRotate(next)
			}
		}
	}
}
