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

// InsertAPIKeys stores keys in one IMMEDIATE transaction, so a group of keys
// costs one commit (one fsync of the WAL).
func (s *Store) InsertAPIKeys(ctx context.Context, keys []exchange.APIKey) error {
	if len(keys) == 0 {
		return nil
	}
	rows := make([]sqlstore.APIKeyRow, len(keys))
	for i, k := range keys {
		r, err := sqlstore.EncodeAPIKey(k)
		if err != nil {
			return fmt.Errorf("sqlite: insert API keys: %w", err)
		}
		rows[i] = r
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: insert API keys: %w", err)
	}
	defer func() { _ = tx.Rollback() }() // a no-op after Commit
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO api_keys (`+sqlstore.APIKeyColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("sqlite: insert API keys: %w", err)
	}
	defer stmt.Close()
	for i := range rows {
		if _, err := stmt.ExecContext(ctx, rows[i].Args()...); err != nil {
			return fmt.Errorf("sqlite: insert API key %q: %w", rows[i].ID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: insert API keys: %w", err)
	}
	return nil
}

// apiKey runs a query returning at most one api_keys row.
func apiKey(ctx context.Context, db *sql.DB, query string, args ...any) (exchange.APIKey, error) {
	var r sqlstore.APIKeyRow
	err := db.QueryRowContext(ctx, `SELECT `+sqlstore.APIKeyColumns+` FROM api_keys `+query, args...).Scan(r.Dest()...)
	if errors.Is(err, sql.ErrNoRows) {
		return exchange.APIKey{}, exchange.ErrNotFound
	}
	if err != nil {
		return exchange.APIKey{}, err
	}
	return r.APIKey()
}

// APIKeyByHash returns the key of hash, or exchange.ErrNotFound.
func (s *Store) APIKeyByHash(ctx context.Context, hash []byte) (exchange.APIKey, error) {
	if err := sqlstore.CheckHash(hash); err != nil {
		return exchange.APIKey{}, fmt.Errorf("sqlite: API key: %w", err)
	}
	k, err := apiKey(ctx, s.read, "WHERE hash = ?", hash)
	if err != nil {
		return exchange.APIKey{}, fmt.Errorf("sqlite: API key: %w", err)
	}
	return k, nil
}

// APIKeyByID returns the key of id, or exchange.ErrNotFound.
func (s *Store) APIKeyByID(ctx context.Context, id string) (exchange.APIKey, error) {
	k, err := apiKey(ctx, s.read, "WHERE id = ?", id)
	if err != nil {
		return exchange.APIKey{}, fmt.Errorf("sqlite: API key %q: %w", id, err)
	}
	return k, nil
}

// UseAPIKey spends one use of the key of hash if it is usable at now. A key
// without a use limit is only read (no write, no lock). A limited key is
// decremented by one conditional UPDATE on the single write connection,
// whose WHERE clause re-checks every condition: SQLite runs one writer at a
// time, so concurrent calls see each other's decrements and never go below
// zero.
func (s *Store) UseAPIKey(ctx context.Context, hash []byte, now time.Time) (exchange.APIKey, bool, error) {
	if err := sqlstore.CheckHash(hash); err != nil {
		return exchange.APIKey{}, false, fmt.Errorf("sqlite: use API key: %w", err)
	}
	n, err := sqlstore.Nanos(now)
	if err != nil {
		return exchange.APIKey{}, false, fmt.Errorf("sqlite: use API key: %w", err)
	}
	k, err := apiKey(ctx, s.read, "WHERE hash = ?", hash)
	if err != nil {
		return exchange.APIKey{}, false, fmt.Errorf("sqlite: use API key: %w", err)
	}
	if !k.RevokedAt.IsZero() || !k.ExpiresAt.After(now) || (k.Limited() && k.Remaining <= 0) {
		return k, false, nil
	}
	if !k.Limited() {
		return k, true, nil
	}
	var r sqlstore.APIKeyRow
	err = s.write.QueryRowContext(ctx, `UPDATE api_keys SET remaining = remaining - 1
		WHERE hash = ? AND remaining > 0 AND revoked_at IS NULL AND expires_at > ?
		RETURNING `+sqlstore.APIKeyColumns, hash, n).Scan(r.Dest()...)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		// Spent, revoked or deleted since the read: report it as it is now.
		k, err := apiKey(ctx, s.write, "WHERE hash = ?", hash)
		if err != nil {
			return exchange.APIKey{}, false, fmt.Errorf("sqlite: use API key: %w", err)
		}
		return k, false, nil
	case err != nil:
		return exchange.APIKey{}, false, fmt.Errorf("sqlite: use API key: %w", err)
	}
	if k, err = r.APIKey(); err != nil {
		return exchange.APIKey{}, false, fmt.Errorf("sqlite: use API key: %w", err)
	}
	return k, true, nil
}

// RevokeAPIKey marks the key of id revoked at now; it reports false for an
// unknown or already revoked key (the first revocation time stays).
func (s *Store) RevokeAPIKey(ctx context.Context, id string, now time.Time) (bool, error) {
	return s.revoke(ctx, "id = ?", id, now)
}

// RevokeAPIKeyByHash is RevokeAPIKey by hash.
func (s *Store) RevokeAPIKeyByHash(ctx context.Context, hash []byte, now time.Time) (bool, error) {
	if err := sqlstore.CheckHash(hash); err != nil {
		return false, fmt.Errorf("sqlite: revoke API key: %w", err)
	}
	return s.revoke(ctx, "hash = ?", hash, now)
}

func (s *Store) revoke(ctx context.Context, cond string, arg any, now time.Time) (bool, error) {
	n, err := sqlstore.Nanos(now)
	if err != nil {
		return false, fmt.Errorf("sqlite: revoke API key: %w", err)
	}
	res, err := s.write.ExecContext(ctx, `UPDATE api_keys SET revoked_at = ? WHERE `+cond+` AND revoked_at IS NULL`, n, arg)
	if err != nil {
		return false, fmt.Errorf("sqlite: revoke API key: %w", err)
	}
	changed, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("sqlite: revoke API key: %w", err)
	}
	return changed > 0, nil
}

// ListAPIKeys returns the keys matching q, newest first.
func (s *Store) ListAPIKeys(ctx context.Context, q exchange.APIKeyQuery) ([]exchange.APIKey, error) {
	where, args, err := sqlstore.APIKeyFilter(q, func(int) string { return "?" })
	if err != nil {
		return nil, fmt.Errorf("sqlite: list API keys: %w", err)
	}
	args = append(args, sqlstore.APIKeyLimit(q))
	rows, err := s.read.QueryContext(ctx, `SELECT `+sqlstore.APIKeyColumns+` FROM api_keys`+where+
		` ORDER BY created_at DESC, id DESC LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list API keys: %w", err)
	}
	defer rows.Close()
	var keys []exchange.APIKey
	for rows.Next() {
		var r sqlstore.APIKeyRow
		if err := rows.Scan(r.Dest()...); err != nil {
			return nil, fmt.Errorf("sqlite: list API keys: %w", err)
		}
		k, err := r.APIKey()
		if err != nil {
			return nil, fmt.Errorf("sqlite: list API keys: %w", err)
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list API keys: %w", err)
	}
	return keys, nil
}

// PurgeAPIKeys deletes the keys that expired before expiredBefore, in
// bounded batches so the write lock is never held for long.
func (s *Store) PurgeAPIKeys(ctx context.Context, expiredBefore time.Time) (int64, error) {
	return s.purge(ctx, "api_keys", "hash", expiredBefore)
}

// RevokeToken records jti as revoked until the given time; revoking it
// again keeps the later time.
func (s *Store) RevokeToken(ctx context.Context, jti string, until time.Time) error {
	if err := sqlstore.CheckRevokedToken(jti); err != nil {
		return fmt.Errorf("sqlite: revoke token: %w", err)
	}
	n, err := sqlstore.Nanos(until)
	if err != nil {
		return fmt.Errorf("sqlite: revoke token: %w", err)
	}
	if _, err := s.write.ExecContext(ctx, `INSERT INTO revoked_tokens (jti, expires_at) VALUES (?, ?)
		ON CONFLICT (jti) DO UPDATE SET expires_at = max(expires_at, excluded.expires_at)`, jti, n); err != nil {
		return fmt.Errorf("sqlite: revoke token: %w", err)
	}
	return nil
}

// TokenRevoked reports whether jti is recorded as revoked.
func (s *Store) TokenRevoked(ctx context.Context, jti string) (bool, error) {
	var one int
	err := s.read.QueryRowContext(ctx, "SELECT 1 FROM revoked_tokens WHERE jti = ?", jti).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("sqlite: token revoked: %w", err)
	}
	return true, nil
}

// PurgeRevokedTokens deletes the entries that expired before now.
func (s *Store) PurgeRevokedTokens(ctx context.Context, now time.Time) (int64, error) {
	return s.purge(ctx, "revoked_tokens", "jti", now)
}

// purge deletes the rows of table that expired before t, purgeBatch at a time.
func (s *Store) purge(ctx context.Context, table, pk string, t time.Time) (int64, error) {
	n, err := sqlstore.Nanos(t)
	if err != nil {
		return 0, fmt.Errorf("sqlite: purge %s: %w", table, err)
	}
	var total int64
	for {
		res, err := s.write.ExecContext(ctx, `DELETE FROM `+table+` WHERE `+pk+` IN (
			SELECT `+pk+` FROM `+table+` WHERE expires_at < ? LIMIT ?)`, n, purgeBatch)
		if err != nil {
			return total, fmt.Errorf("sqlite: purge %s: %w", table, err)
		}
		deleted, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("sqlite: purge %s: %w", table, err)
		}
		total += deleted
		if deleted < purgeBatch {
			return total, nil
		}
	}
}
