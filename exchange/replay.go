package exchange

import (
	"context"
	"errors"
	"time"

	"github.com/tokenbroker/tokenbroker/providers"
)

// errClaimIncomplete refuses to submit a claim that the store would reject:
// in a group, it would fail every other exchange of the group too.
var errClaimIncomplete = errors.New("exchange: verified token lacks iss or exp")

// claim records the token's (iss, jti) until replayUntil,
// through the group committer of replay claims: concurrent single-use
// exchanges share one transaction (one fsync on SQLite, one round trip and
// commit on PostgreSQL). It returns nil once the claim is durable,
// ErrReplay when the pair was claimed before (earlier in the same group
// too), or the error that failed the group, the submission or ctx.
func (x *Exchanger) claim(ctx context.Context, tok *providers.Token) error {
	if tok.Issuer == "" || tok.Expiry.IsZero() {
		return errClaimIncomplete
	}
	c := &ReplayClaim{Issuer: tok.Issuer, JTI: tok.ID, Until: x.replayUntil(tok)}
	if err := x.replay.Submit(ctx, c); err != nil {
		return err
	}
	// Submit returned after the commit wrote c.Err (its answer is sent
	// once the commit is done).
	return c.Err
}

// replayUntil is when the replay entry of tok may be forgotten: its exp
// plus ReplayLeeway, and never sooner than ReplayLeeway from now. A token
// accepted past its exp (the verifier's clock leeway) would otherwise be
// recorded with an entry already expired, which the next replay takes over.
// The verifier's leeway must not exceed ReplayLeeway (serve passes the same
// limits.leeway to both), or a token still verifying after its entry ended
// could be replayed.
func (x *Exchanger) replayUntil(tok *providers.Token) time.Time {
	until := tok.Expiry.Add(x.cfg.ReplayLeeway)
	if floor := x.cfg.Now().Add(x.cfg.ReplayLeeway); until.Before(floor) {
		return floor
	}
	return until
}
