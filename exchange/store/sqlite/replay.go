package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/tokenbroker/tokenbroker/exchange"
	"github.com/tokenbroker/tokenbroker/exchange/store/internal/sqlstore"
)

// purgeBatch bounds the rows one purge statement deletes, so that a large
// purge does not hold the write lock, and delay claims, for long.
const purgeBatch = 5000

// claimReplay is the upsert of one claim: it inserts the pair, or takes over
// an expired entry, or changes nothing, and the count of changed rows tells
// which.
const claimReplay = `INSERT INTO replay (issuer, jti, expires_at) VALUES (?, ?, ?)
	ON CONFLICT (issuer, jti) DO UPDATE SET expires_at = excluded.expires_at
	WHERE replay.expires_at < ?`

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

// ClaimAll runs the claims in one IMMEDIATE transaction on the write
// connection, so a batch costs one commit (one fsync of the WAL). Each claim
// is one run of the claimReplay upsert, in order: a pair claimed earlier in
// the batch is already recorded when a later claim of it runs.
func (s *Store) ClaimAll(ctx context.Context, claims []*exchange.ReplayClaim) error {
	if len(claims) == 0 {
		return nil
	}
	exps, err := sqlstore.ClaimExpiries(claims)
	if err != nil {
		return fmt.Errorf("sqlite: claim: %w", err)
	}
	now := s.now().UnixNano()
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: claim: %w", err)
	}
	defer func() { _ = tx.Rollback() }() // a no-op after Commit
	stmt, err := tx.PrepareContext(ctx, claimReplay)
	if err != nil {
		return fmt.Errorf("sqlite: claim: %w", err)
	}
	defer stmt.Close()
	results := make([]error, len(claims))
	for i, c := range claims {
		res, err := stmt.ExecContext(ctx, c.Issuer, c.JTI, exps[i], now)
		if err != nil {
			return fmt.Errorf("sqlite: claim: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("sqlite: claim: %w", err)
		}
		if n == 0 {
			results[i] = exchange.ErrReplay
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: claim: %w", err)
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
		return 0, fmt.Errorf("sqlite: purge replay: %w", err)
	}
	var total int64
	for {
		res, err := s.write.ExecContext(ctx, `DELETE FROM replay WHERE (issuer, jti) IN (
			SELECT issuer, jti FROM replay WHERE expires_at < ? LIMIT ?)`, n, purgeBatch)
		if err != nil {
			return total, fmt.Errorf("sqlite: purge replay: %w", err)
		}
		deleted, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("sqlite: purge replay: %w", err)
		}
		total += deleted
		if deleted < purgeBatch {
			return total, nil
		}
	}
}
