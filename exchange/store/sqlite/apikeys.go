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

// decrementUse spends one use of a limited key. Its WHERE clause re-checks
// every condition against the row as the earlier statements of the
// transaction left it.
const decrementUse = `UPDATE api_keys SET remaining = remaining - 1
	WHERE hash = ? AND remaining > 0 AND revoked_at IS NULL AND expires_at > ?
	RETURNING ` + sqlstore.APIKeyColumns

// UseAPIKeys runs the uses in one IMMEDIATE transaction on the single write
// connection, so a batch costs one commit (one fsync of the WAL). Each use
// is one conditional decrement, in order (a later use of a key sees the
// earlier ones), and a read of the row when the decrement changed nothing:
// the key is unlimited, spent, revoked, expired or unknown. SQLite runs one
// writer at a time, so concurrent batches never take more uses than a key
// has.
func (s *Store) UseAPIKeys(ctx context.Context, uses []*exchange.APIKeyUse) error {
	if len(uses) == 0 {
		return nil
	}
	nows := make([]int64, len(uses))
	results := make([]exchange.APIKeyUse, len(uses))
	valid := 0
	for i, u := range uses {
		n, err := sqlstore.CheckUse(u)
		if err != nil {
			results[i].Err = fmt.Errorf("sqlite: use API key: %w", err)
			continue
		}
		nows[i], valid = n, valid+1
	}
	if valid > 0 {
		if err := s.useAPIKeys(ctx, uses, nows, results); err != nil {
			return fmt.Errorf("sqlite: use API keys: %w", err)
		}
	}
	for i, u := range uses {
		u.Key, u.Used, u.Err = results[i].Key, results[i].Used, results[i].Err
	}
	return nil
}

// useAPIKeys runs the transaction of UseAPIKeys, skipping the uses whose
// result already holds an error, and fills in the others' results.
func (s *Store) useAPIKeys(ctx context.Context, uses []*exchange.APIKeyUse, nows []int64, results []exchange.APIKeyUse) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }() // a no-op after Commit
	dec, err := tx.PrepareContext(ctx, decrementUse)
	if err != nil {
		return err
	}
	defer dec.Close()
	get, err := tx.PrepareContext(ctx, `SELECT `+sqlstore.APIKeyColumns+` FROM api_keys WHERE hash = ?`)
	if err != nil {
		return err
	}
	defer get.Close()
	for i, u := range uses {
		if results[i].Err != nil {
			continue
		}
		var r sqlstore.APIKeyRow
		err := dec.QueryRowContext(ctx, u.Hash, nows[i]).Scan(r.Dest()...)
		decremented := err == nil
		if errors.Is(err, sql.ErrNoRows) {
			err = get.QueryRowContext(ctx, u.Hash).Scan(r.Dest()...)
		}
		switch {
		case errors.Is(err, sql.ErrNoRows):
			results[i].Err = fmt.Errorf("sqlite: use API key: %w", exchange.ErrNotFound)
			continue
		case err != nil:
			return err
		}
		k, err := r.APIKey()
		if err != nil {
			// A row this store cannot decode fails its own use only (which
			// may be spent), not the batch.
			results[i].Err = fmt.Errorf("sqlite: use API key: %w", err)
			continue
		}
		results[i].Key, results[i].Used = k, sqlstore.Used(k, decremented, u.Now)
	}
	return tx.Commit()
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
