package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokenbroker/tokenbroker/exchange"
	"github.com/tokenbroker/tokenbroker/exchange/store/internal/sqlstore"
)

// Claim records (issuer, jti) until the given time, or returns
// exchange.ErrReplay if the pair is recorded and has not expired at the
// store's clock. One upsert decides, atomically across replicas: a
// concurrent claim of the same pair waits for the first to commit, then
// re-checks the WHERE clause against the committed row, finds it unexpired
// and returns no row.
func (s *Store) Claim(ctx context.Context, issuer, jti string, until time.Time) error {
	if err := sqlstore.CheckClaim(issuer, jti); err != nil {
		return fmt.Errorf("postgres: claim: %w", err)
	}
	exp, err := sqlstore.Nanos(until)
	if err != nil {
		return fmt.Errorf("postgres: claim until: %w", err)
	}
	var claimed bool
	err = s.pool.QueryRow(ctx, `INSERT INTO replay (issuer, jti, expires_at) VALUES ($1, $2, $3)
		ON CONFLICT (issuer, jti) DO UPDATE SET expires_at = EXCLUDED.expires_at
		WHERE replay.expires_at < $4
		RETURNING true`, issuer, jti, exp, s.now().UnixNano()).Scan(&claimed)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return exchange.ErrReplay
	case err != nil:
		return fmt.Errorf("postgres: claim: %w", err)
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
