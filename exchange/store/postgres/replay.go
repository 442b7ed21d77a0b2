package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokenbroker/tokenbroker/exchange"
	"github.com/tokenbroker/tokenbroker/exchange/store/internal/sqlstore"
)

// claimReplay is the upsert of one claim. It decides atomically across
// replicas: a concurrent claim of the same pair waits for the first to
// commit, then re-checks the WHERE clause against the committed row, finds
// it unexpired and returns no row.
const claimReplay = `INSERT INTO replay (issuer, jti, expires_at) VALUES ($1, $2, $3)
	ON CONFLICT (issuer, jti) DO UPDATE SET expires_at = EXCLUDED.expires_at
	WHERE replay.expires_at < $4
	RETURNING true`

// Claim records (issuer, jti) until the given time, or returns
// exchange.ErrReplay if the pair is recorded and has not expired at the
// store's clock. It is ClaimAll of one claim.
func (s *Store) Claim(ctx context.Context, issuer, jti string, until time.Time) error {
	c := &exchange.ReplayClaim{Issuer: issuer, JTI: jti, Until: until}
	if err := s.ClaimAll(ctx, []*exchange.ReplayClaim{c}); err != nil {
		return err
	}
	return c.Err
}

// ClaimAll runs the claims in one transaction and one round trip: one
// claimReplay upsert per claim, queued in a pgx batch that PostgreSQL runs
// as one implicit transaction. The upserts run in (issuer, jti) order, so
// two batches sharing pairs lock them in the same order and never deadlock;
// the sort is stable, so the first claim of a pair in the batch is the one
// that wins it.
func (s *Store) ClaimAll(ctx context.Context, claims []*exchange.ReplayClaim) error {
	if len(claims) == 0 {
		return nil
	}
	exps, err := sqlstore.ClaimExpiries(claims)
	if err != nil {
		return fmt.Errorf("postgres: claim: %w", err)
	}
	order := make([]int, len(claims))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return cmp.Or(cmp.Compare(claims[a].Issuer, claims[b].Issuer), cmp.Compare(claims[a].JTI, claims[b].JTI))
	})
	now := s.now().UnixNano()
	var b pgx.Batch
	for _, i := range order {
		b.Queue(claimReplay, claims[i].Issuer, claims[i].JTI, exps[i], now)
	}
	results := make([]error, len(claims))
	br := s.pool.SendBatch(ctx, &b)
	for _, i := range order {
		var claimed bool
		err := br.QueryRow().Scan(&claimed)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			results[i] = exchange.ErrReplay
		case err != nil:
			_ = br.Close()
			return fmt.Errorf("postgres: claim: %w", err)
		}
	}
	// Close reads the end of the implicit transaction: an error there means
	// it did not commit.
	if err := br.Close(); err != nil {
		return fmt.Errorf("postgres: claim: %w", err)
	}
	for i, c := range claims {
		c.Err = results[i]
	}
	return nil
}

// PurgeExpired deletes the replay entries that expired before now and
// returns how many it deleted. Expired entries are harmless (Claim reuses
// them); purging only bounds the table's size.
func (s *Store) PurgeExpired(ctx context.Context, now time.Time) (int64, error) {
	n, err := sqlstore.Nanos(now)
	if err != nil {
		return 0, fmt.Errorf("postgres: purge replay: %w", err)
	}
	tag, err := s.pool.Exec(ctx, "DELETE FROM replay WHERE expires_at < $1", n)
	if err != nil {
		return 0, fmt.Errorf("postgres: purge replay: %w", err)
	}
	return tag.RowsAffected(), nil
}
