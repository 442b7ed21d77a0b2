package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/tokenbroker/tokenbroker/exchange"
	"github.com/tokenbroker/tokenbroker/exchange/store/internal/sqlstore"
)

// SigningKeys returns every key not removed at now, oldest first.
func (s *Store) SigningKeys(ctx context.Context, now time.Time) ([]exchange.StoredKey, error) {
	n, err := sqlstore.Nanos(now)
	if err != nil {
		return nil, fmt.Errorf("sqlite: signing keys: %w", err)
	}
	rows, err := s.read.QueryContext(ctx, `SELECT `+sqlstore.KeyColumns+` FROM signing_keys
		WHERE remove_at IS NULL OR remove_at > ? ORDER BY created_at, id`, n)
	if err != nil {
		return nil, fmt.Errorf("sqlite: signing keys: %w", err)
	}
	defer rows.Close()
	var keys []exchange.StoredKey
	for rows.Next() {
		var r sqlstore.KeyRow
		if err := rows.Scan(r.Dest()...); err != nil {
			return nil, fmt.Errorf("sqlite: signing keys: %w", err)
		}
		keys = append(keys, r.Key())
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: signing keys: %w", err)
	}
	return keys, nil
}

// EnsureSigningKey inserts candidate unless an unretired key of its algorithm
// exists, and returns the current key of the algorithm: the oldest unretired
// one. The lookup and the insert share one IMMEDIATE transaction, which holds
// the database's write lock from its start, so concurrent callers (in this
// process or another) are serialised and all return the same key.
func (s *Store) EnsureSigningKey(ctx context.Context, candidate exchange.StoredKey) (exchange.StoredKey, error) {
	if err := sqlstore.CheckCandidate(candidate); err != nil {
		return exchange.StoredKey{}, fmt.Errorf("sqlite: ensure signing key: %w", err)
	}
	row, err := sqlstore.EncodeKey(candidate)
	if err != nil {
		return exchange.StoredKey{}, fmt.Errorf("sqlite: ensure signing key: %w", err)
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return exchange.StoredKey{}, fmt.Errorf("sqlite: ensure signing key: %w", err)
	}
	defer func() { _ = tx.Rollback() }() // a no-op after Commit
	var cur sqlstore.KeyRow
	err = tx.QueryRowContext(ctx, `SELECT `+sqlstore.KeyColumns+` FROM signing_keys
		WHERE algorithm = ? AND retired_at IS NULL ORDER BY created_at, id LIMIT 1`,
		candidate.Algorithm).Scan(cur.Dest()...)
	switch {
	case err == nil:
		return cur.Key(), nil
	case !errors.Is(err, sql.ErrNoRows):
		return exchange.StoredKey{}, fmt.Errorf("sqlite: ensure signing key: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO signing_keys (`+sqlstore.KeyColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, row.Args()...); err != nil {
		return exchange.StoredKey{}, fmt.Errorf("sqlite: insert signing key %q: %w", candidate.ID, err)
	}
	if err := tx.Commit(); err != nil {
		return exchange.StoredKey{}, fmt.Errorf("sqlite: insert signing key %q: %w", candidate.ID, err)
	}
	return row.Key(), nil
}

// RotateSigningKey retires currentID at retireAt (removed at removeAt) and
// inserts next, unless currentID is already retired: then it returns false
// and changes nothing. Like EnsureSigningKey it runs in one IMMEDIATE
// transaction, so the check and the writes are one step for every process
// sharing the file.
func (s *Store) RotateSigningKey(ctx context.Context, currentID string, next exchange.StoredKey, retireAt, removeAt time.Time) (bool, error) {
	rot, err := sqlstore.EncodeRotation(currentID, next, retireAt, removeAt)
	if err != nil {
		return false, fmt.Errorf("sqlite: rotate signing key: %w", err)
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("sqlite: rotate signing key %q: %w", currentID, err)
	}
	defer func() { _ = tx.Rollback() }() // a no-op after Commit
	var alg string
	var retired sql.NullInt64
	err = tx.QueryRowContext(ctx, `SELECT algorithm, retired_at FROM signing_keys WHERE id = ?`, currentID).Scan(&alg, &retired)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, fmt.Errorf("sqlite: rotate signing key %q: %w", currentID, exchange.ErrNotFound)
	case err != nil:
		return false, fmt.Errorf("sqlite: rotate signing key %q: %w", currentID, err)
	case retired.Valid:
		return false, nil
	case alg != next.Algorithm:
		return false, fmt.Errorf("sqlite: rotate signing key %q: next key is %s, not %s", currentID, next.Algorithm, alg)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE signing_keys SET retired_at = ?, remove_at = ? WHERE id = ?`,
		rot.RetireAt, rot.RemoveAt, currentID); err != nil {
		return false, fmt.Errorf("sqlite: retire signing key %q: %w", currentID, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO signing_keys (`+sqlstore.KeyColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, rot.Next.Args()...); err != nil {
		return false, fmt.Errorf("sqlite: insert signing key %q: %w", next.ID, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("sqlite: rotate signing key %q: %w", currentID, err)
	}
	return true, nil
}
