package sqlstore

import (
	"time"

	"github.com/tokenbroker/tokenbroker/exchange"
)

// CheckUse checks a use of an API key and returns its time as Unix
// nanoseconds.
func CheckUse(u *exchange.APIKeyUse) (int64, error) {
	if err := CheckHash(u.Hash); err != nil {
		return 0, err
	}
	return Nanos(u.Now)
}

// Used is the verdict on a use at now, given the key as read after the use
// and whether the use's conditional decrement changed its row. A limited key
// is used only when it was decremented (the decrement re-checks revocation,
// expiry and remaining uses); an unlimited key is never written and is used
// when it is neither revoked nor expired.
func Used(k exchange.APIKey, decremented bool, now time.Time) bool {
	if k.Limited() {
		return decremented
	}
	return k.RevokedAt.IsZero() && k.ExpiresAt.After(now)
}
