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

// SigningKeys returns every key not removed at now, oldest first.
func (s *Store) SigningKeys(ctx context.Context, now time.Time) ([]exchange.StoredKey, error) {
	n, err := sqlstore.Nanos(now)
	if err != nil {
		return nil, fmt.Errorf("postgres: signing keys: %w", err)
	}
	rows, err := s.pool.Query(ctx, `SELECT `+sqlstore.KeyColumns+` FROM signing_keys
		WHERE remove_at IS NULL OR remove_at > $1 ORDER BY created_at, id`, n)
	if err != nil {
		return nil, fmt.Errorf("postgres: signing keys: %w", err)
	}
	defer rows.Close()
	var keys []exchange.StoredKey
	for rows.Next() {
		var r sqlstore.KeyRow
		if err := rows.Scan(r.Dest()...); err != nil {
			return nil, fmt.Errorf("postgres: signing keys: %w", err)
		}
		keys = append(keys, r.Key())
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: signing keys: %w", err)
	}
	return keys, nil
}

// EnsureSigningKey inserts candidate unless an unretired key of its algorithm
// exists, and returns the current key of the algorithm: the oldest unretired
// one. An advisory transaction lock serialises the lookup and the insert
// across replicas (row locks cannot guard a row that does not exist yet), so
// replicas starting at once all return the same key.
func (s *Store) EnsureSigningKey(ctx context.Context, candidate exchange.StoredKey) (exchange.StoredKey, error) {
	if err := sqlstore.CheckCandidate(candidate); err != nil {
		return exchange.StoredKey{}, fmt.Errorf("postgres: ensure signing key: %w", err)
	}
	row, err := sqlstore.EncodeKey(candidate)
	if err != nil {
		return exchange.StoredKey{}, fmt.Errorf("postgres: ensure signing key: %w", err)
	}
	var cur sqlstore.KeyRow
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := lock(ctx, tx, lockSigningKeys); err != nil {
			return err
		}
		err := tx.QueryRow(ctx, `SELECT `+sqlstore.KeyColumns+` FROM signing_keys
			WHERE algorithm = $1 AND retired_at IS NULL ORDER BY created_at, id LIMIT 1`,
			candidate.Algorithm).Scan(cur.Dest()...)
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		cur = row
		_, err = tx.Exec(ctx, `INSERT INTO signing_keys (`+sqlstore.KeyColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, row.Args()...)
		return err
	})
	if err != nil {
		return exchange.StoredKey{}, fmt.Errorf("postgres: ensure signing key %q: %w", candidate.ID, err)
	}
	return cur.Key(), nil
}

// RotateSigningKey retires currentID at retireAt (removed at removeAt) and
// inserts next, unless currentID is already retired: then it returns false
// and changes nothing. It takes the advisory lock of EnsureSigningKey, so a
// rotation and a replica starting up never interleave, and concurrent
// rotations of the same key are serialised: exactly one succeeds.
func (s *Store) RotateSigningKey(ctx context.Context, currentID string, next exchange.StoredKey, retireAt, removeAt time.Time) (bool, error) {
	rot, err := sqlstore.EncodeRotation(currentID, next, retireAt, removeAt)
	if err != nil {
		return false, fmt.Errorf("postgres: rotate signing key: %w", err)
	}
	var rotated bool
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := lock(ctx, tx, lockSigningKeys); err != nil {
			return err
		}
		var alg string
		var retired *int64
		err := tx.QueryRow(ctx, `SELECT algorithm, retired_at FROM signing_keys WHERE id = $1`, currentID).Scan(&alg, &retired)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return exchange.ErrNotFound
		case err != nil:
			return err
		case retired != nil:
			return nil
		case alg != next.Algorithm:
			return fmt.Errorf("next key is %s, not %s", next.Algorithm, alg)
		}
		if _, err := tx.Exec(ctx, `UPDATE signing_keys SET retired_at = $1, remove_at = $2 WHERE id = $3`,
			rot.RetireAt, rot.RemoveAt, currentID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO signing_keys (`+sqlstore.KeyColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, rot.Next.Args()...); err != nil {
			return fmt.Errorf("insert %q: %w", next.ID, err)
		}
		rotated = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("postgres: rotate signing key %q: %w", currentID, err)
	}
	return rotated, nil
}
