package sqlstore

import (
	"errors"
	"fmt"

	"github.com/tokenbroker/tokenbroker/exchange"
)

// DefaultAuditLimit is the number of audit events a query returns when its
// Limit is zero (exchange.AuditQuery documents it).
const DefaultAuditLimit = 100

// AuditLimit returns the effective limit of q.
func AuditLimit(q exchange.AuditQuery) int {
	if q.Limit <= 0 {
		return DefaultAuditLimit
	}
	return q.Limit
}

// CheckCandidate refuses a signing key that lacks a required field. A
// retired candidate is accepted: it is stored (say, a key imported only for
// verification) but never counts as current for a later call.
func CheckCandidate(k exchange.StoredKey) error {
	switch {
	case k.ID == "":
		return errors.New("signing key without id")
	case k.Algorithm == "":
		return fmt.Errorf("signing key %q without algorithm", k.ID)
	case len(k.PrivateKey) == 0:
		return fmt.Errorf("signing key %q without private key", k.ID)
	case k.CreatedAt.IsZero():
		return fmt.Errorf("signing key %q without creation time", k.ID)
	}
	return nil
}

// CheckClaim refuses an empty issuer or jti: recording one would make every
// token lacking it collide on a single entry, and a caller sending it is
// buggy (a single-use token must carry a jti).
func CheckClaim(issuer, jti string) error {
	if issuer == "" || jti == "" {
		return errors.New("replay claim needs both issuer and jti")
	}
	return nil
}

// ClaimExpiries checks every claim of a ReplayCache.ClaimAll batch
// (CheckClaim, and an Until that Nanos accepts) and returns their Until in
// Unix nanoseconds, in order. One invalid claim fails the batch.
func ClaimExpiries(claims []*exchange.ReplayClaim) ([]int64, error) {
	exps := make([]int64, len(claims))
	for i, c := range claims {
		if err := CheckClaim(c.Issuer, c.JTI); err != nil {
			return nil, fmt.Errorf("claim %d: %w", i, err)
		}
		exp, err := Nanos(c.Until)
		if err != nil {
			return nil, fmt.Errorf("claim %d until: %w", i, err)
		}
		exps[i] = exp
	}
	return exps, nil
}
