package exchange

import (
	"context"
	"errors"

	"github.com/tokenbroker/tokenbroker/providers"
)

// errClaimIncomplete refuses to submit a claim that the store would reject:
// in a group, it would fail every other exchange of the group too.
var errClaimIncomplete = errors.New("exchange: verified token lacks iss or exp")

// claim records the token's (iss, jti) until its exp plus ReplayLeeway,
// through the group committer of replay claims: concurrent single-use
// exchanges share one transaction (one fsync on SQLite, one round trip and
// commit on PostgreSQL). It returns nil once the claim is durable,
// ErrReplay when the pair was claimed before (earlier in the same group
// too), or the error that failed the group, the submission or ctx.
func (x *Exchanger) claim(ctx context.Context, tok *providers.Token) error {
	if tok.Issuer == "" || tok.Expiry.IsZero() {
		return errClaimIncomplete
	}
	c := &ReplayClaim{Issuer: tok.Issuer, JTI: tok.ID, Until: tok.Expiry.Add(x.cfg.ReplayLeeway)}
	if err := x.replay.Submit(ctx, c); err != nil {
		return err
	}
	// Submit returned after the commit wrote c.Err (its answer is sent
	// once the commit is done).
	return c.Err
}
