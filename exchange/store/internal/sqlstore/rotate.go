package sqlstore

import (
	"errors"
	"fmt"
	"time"

	"github.com/tokenbroker/tokenbroker/exchange"
)

// Rotation is a RotateSigningKey call in its column encoding.
type Rotation struct {
	// Next is the key inserted.
	Next KeyRow
	// RetireAt and RemoveAt are set on the current key.
	RetireAt, RemoveAt int64
}

// EncodeRotation checks the arguments of RotateSigningKey and encodes them.
// It refuses an empty currentID, a next key lacking a required field or
// already retired (it would never count as current, and the next
// EnsureSigningKey would add another key), a zero or out-of-range time, and
// a removeAt before retireAt (the key would leave the JWKS while it still
// signs).
func EncodeRotation(currentID string, next exchange.StoredKey, retireAt, removeAt time.Time) (Rotation, error) {
	if currentID == "" {
		return Rotation{}, errors.New("rotation without current key id")
	}
	if err := CheckCandidate(next); err != nil {
		return Rotation{}, err
	}
	if !next.RetiredAt.IsZero() || !next.RemoveAt.IsZero() {
		return Rotation{}, fmt.Errorf("next signing key %q is already retired", next.ID)
	}
	if next.ID == currentID {
		return Rotation{}, fmt.Errorf("next signing key %q is the current key", next.ID)
	}
	if removeAt.Before(retireAt) {
		return Rotation{}, fmt.Errorf("signing key %q removed (%s) before it retires (%s)", currentID,
			removeAt.UTC().Format(time.RFC3339), retireAt.UTC().Format(time.RFC3339))
	}
	row, err := EncodeKey(next)
	if err != nil {
		return Rotation{}, err
	}
	r := Rotation{Next: row}
	if r.RetireAt, err = Nanos(retireAt); err != nil {
		return Rotation{}, fmt.Errorf("signing key %q retire time: %w", currentID, err)
	}
	if r.RemoveAt, err = Nanos(removeAt); err != nil {
		return Rotation{}, fmt.Errorf("signing key %q remove time: %w", currentID, err)
	}
	return r, nil
}
