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

// Claim records (issuer, jti) until the given time, or returns
// exchange.ErrReplay if the pair is recorded and has not expired at the
// store's clock. A single upsert statement decides: it inserts the pair, or
// takes over an expired entry, or changes nothing, and the count of changed
// rows tells which.
func (s *Store) Claim(ctx context.Context, issuer, jti string, until time.Time) error {
	if err := sqlstore.CheckClaim(issuer, jti); err != nil {
		return fmt.Errorf("sqlite: claim: %w", err)
	}
	exp, err := sqlstore.Nanos(until)
	if err != nil {
		return fmt.Errorf("sqlite: claim until: %w", err)
	}
	now := s.now().UnixNano()
	res, err := s.write.ExecContext(ctx, `INSERT INTO replay (issuer, jti, expires_at) VALUES (?, ?, ?)
		ON CONFLICT (issuer, jti) DO UPDATE SET expires_at = excluded.expires_at
		WHERE replay.expires_at < ?`, issuer, jti, exp, now)
	if err != nil {
		return fmt.Errorf("sqlite: claim: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("sqlite: claim: %w", err)
	}
	if n == 0 {
		return exchange.ErrReplay
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
