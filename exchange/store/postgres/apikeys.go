package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokenbroker/tokenbroker/exchange"
	"github.com/tokenbroker/tokenbroker/exchange/store/internal/sqlstore"
)

// insertAPIKey inserts one API key; the JSON columns arrive as text.
const insertAPIKey = `INSERT INTO api_keys (` + sqlstore.APIKeyColumns + `)
	VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8::jsonb, $9, $10, $11, $12, $13)`

// InsertAPIKeys stores keys in one transaction (all or none) and one round
// trip: pgx sends the batch as one pipeline ending in a single Sync, which
// PostgreSQL runs as one implicit transaction, so a group of keys costs one
// commit.
func (s *Store) InsertAPIKeys(ctx context.Context, keys []exchange.APIKey) error {
	if len(keys) == 0 {
		return nil
	}
	var b pgx.Batch
	for _, k := range keys {
		r, err := sqlstore.EncodeAPIKey(k)
		if err != nil {
			return fmt.Errorf("postgres: insert API keys: %w", err)
		}
		b.Queue(insertAPIKey, r.Args()...)
	}
	if err := s.pool.SendBatch(ctx, &b).Close(); err != nil {
		return fmt.Errorf("postgres: insert API keys: %w", err)
	}
	return nil
}

// apiKey runs a query returning at most one api_keys row.
func (s *Store) apiKey(ctx context.Context, query string, args ...any) (exchange.APIKey, error) {
	var r sqlstore.APIKeyRow
	err := s.pool.QueryRow(ctx, query, args...).Scan(r.Dest()...)
	if errors.Is(err, pgx.ErrNoRows) {
		return exchange.APIKey{}, exchange.ErrNotFound
	}
	if err != nil {
		return exchange.APIKey{}, err
	}
	return r.APIKey()
}

const selectAPIKey = `SELECT ` + sqlstore.APIKeyColumns + ` FROM api_keys `

// APIKeyByHash returns the key of hash, or exchange.ErrNotFound.
func (s *Store) APIKeyByHash(ctx context.Context, hash []byte) (exchange.APIKey, error) {
	if err := sqlstore.CheckHash(hash); err != nil {
		return exchange.APIKey{}, fmt.Errorf("postgres: API key: %w", err)
	}
	k, err := s.apiKey(ctx, selectAPIKey+"WHERE hash = $1", hash)
	if err != nil {
		return exchange.APIKey{}, fmt.Errorf("postgres: API key: %w", err)
	}
	return k, nil
}

// APIKeyByID returns the key of id, or exchange.ErrNotFound.
func (s *Store) APIKeyByID(ctx context.Context, id string) (exchange.APIKey, error) {
	k, err := s.apiKey(ctx, selectAPIKey+"WHERE id = $1", id)
	if err != nil {
		return exchange.APIKey{}, fmt.Errorf("postgres: API key %q: %w", id, err)
	}
	return k, nil
}

// decrementUse spends one use of a limited key. PostgreSQL locks the row, and
// a concurrent UPDATE (from any replica) waits for the lock, then
// re-evaluates the WHERE clause against the committed row, so remaining
// never goes below zero.
const decrementUse = `UPDATE api_keys SET remaining = remaining - 1
	WHERE hash = $1 AND remaining > 0 AND revoked_at IS NULL AND expires_at > $2`

// UseAPIKeys runs the uses in one transaction and one round trip: per use,
// the conditional decrement decrementUse and a read of the row, queued in a pgx
// batch that PostgreSQL runs as one implicit transaction. Each statement
// takes a fresh snapshot (READ COMMITTED), so the read shows the row as the
// decrement left it, or as the concurrent transaction the decrement waited
// for left it. The uses run in hash order, so two batches sharing keys lock
// them in the same order and never deadlock; the sort is stable, so the
// earlier uses of a key in the batch are the ones granted.
func (s *Store) UseAPIKeys(ctx context.Context, uses []*exchange.APIKeyUse) error {
	if len(uses) == 0 {
		return nil
	}
	nows := make([]int64, len(uses))
	results := make([]exchange.APIKeyUse, len(uses))
	order := make([]int, 0, len(uses))
	for i, u := range uses {
		n, err := sqlstore.CheckUse(u)
		if err != nil {
			results[i].Err = fmt.Errorf("postgres: use API key: %w", err)
			continue
		}
		nows[i] = n
		order = append(order, i)
	}
	slices.SortStableFunc(order, func(a, b int) int { return bytes.Compare(uses[a].Hash, uses[b].Hash) })
	if len(order) > 0 {
		if err := s.useAPIKeys(ctx, uses, nows, order, results); err != nil {
			return fmt.Errorf("postgres: use API keys: %w", err)
		}
	}
	for i, u := range uses {
		u.Key, u.Used, u.Err = results[i].Key, results[i].Used, results[i].Err
	}
	return nil
}

// useAPIKeys sends the batch of UseAPIKeys for the uses listed in order and
// fills in their results.
func (s *Store) useAPIKeys(ctx context.Context, uses []*exchange.APIKeyUse, nows []int64, order []int, results []exchange.APIKeyUse) error {
	var b pgx.Batch
	for _, i := range order {
		b.Queue(decrementUse, uses[i].Hash, nows[i])
		b.Queue(selectAPIKey+"WHERE hash = $1", uses[i].Hash)
	}
	br := s.pool.SendBatch(ctx, &b)
	for _, i := range order {
		tag, err := br.Exec()
		if err != nil {
			_ = br.Close()
			return err
		}
		var r sqlstore.APIKeyRow
		err = br.QueryRow().Scan(r.Dest()...)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			results[i].Err = fmt.Errorf("postgres: use API key: %w", exchange.ErrNotFound)
			continue
		case err != nil:
			_ = br.Close()
			return err
		}
		k, err := r.APIKey()
		if err != nil {
			// A row this store cannot decode fails its own use only (which
			// may be spent), not the batch.
			results[i].Err = fmt.Errorf("postgres: use API key: %w", err)
			continue
		}
		results[i].Key, results[i].Used = k, sqlstore.Used(k, tag.RowsAffected() > 0, uses[i].Now)
	}
	// Close reads the end of the implicit transaction: an error there means
	// it did not commit.
	return br.Close()
}

// RevokeAPIKey marks the key of id revoked at now; it reports false for an
// unknown or already revoked key (the first revocation time stays).
func (s *Store) RevokeAPIKey(ctx context.Context, id string, now time.Time) (bool, error) {
	return s.revoke(ctx, "id = $2", id, now)
}

// RevokeAPIKeyByHash is RevokeAPIKey by hash.
func (s *Store) RevokeAPIKeyByHash(ctx context.Context, hash []byte, now time.Time) (bool, error) {
	if err := sqlstore.CheckHash(hash); err != nil {
		return false, fmt.Errorf("postgres: revoke API key: %w", err)
	}
	return s.revoke(ctx, "hash = $2", hash, now)
}

func (s *Store) revoke(ctx context.Context, cond string, arg any, now time.Time) (bool, error) {
	n, err := sqlstore.Nanos(now)
	if err != nil {
		return false, fmt.Errorf("postgres: revoke API key: %w", err)
	}
	tag, err := s.pool.Exec(ctx, `UPDATE api_keys SET revoked_at = $1 WHERE `+cond+` AND revoked_at IS NULL`, n, arg)
	if err != nil {
		return false, fmt.Errorf("postgres: revoke API key: %w", err)
	}
	return tag.RowsAffected() > 0, nil
}

// ListAPIKeys returns the keys matching q, newest first.
func (s *Store) ListAPIKeys(ctx context.Context, q exchange.APIKeyQuery) ([]exchange.APIKey, error) {
	where, args, err := sqlstore.APIKeyFilter(q, func(i int) string { return "$" + strconv.Itoa(i) })
	if err != nil {
		return nil, fmt.Errorf("postgres: list API keys: %w", err)
	}
	args = append(args, sqlstore.APIKeyLimit(q))
	rows, err := s.pool.Query(ctx, selectAPIKey+where+
		` ORDER BY created_at DESC, id DESC LIMIT $`+strconv.Itoa(len(args)), args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: list API keys: %w", err)
	}
	defer rows.Close()
	var keys []exchange.APIKey
	for rows.Next() {
		var r sqlstore.APIKeyRow
		if err := rows.Scan(r.Dest()...); err != nil {
			return nil, fmt.Errorf("postgres: list API keys: %w", err)
		}
		k, err := r.APIKey()
		if err != nil {
			return nil, fmt.Errorf("postgres: list API keys: %w", err)
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: list API keys: %w", err)
	}
	return keys, nil
}

// PurgeAPIKeys deletes the keys that expired before expiredBefore.
func (s *Store) PurgeAPIKeys(ctx context.Context, expiredBefore time.Time) (int64, error) {
	return s.purge(ctx, "api_keys", expiredBefore)
}

// RevokeToken records jti as revoked until the given time; revoking it
// again keeps the later time.
func (s *Store) RevokeToken(ctx context.Context, jti string, until time.Time) error {
	if err := sqlstore.CheckRevokedToken(jti); err != nil {
		return fmt.Errorf("postgres: revoke token: %w", err)
	}
	n, err := sqlstore.Nanos(until)
	if err != nil {
		return fmt.Errorf("postgres: revoke token: %w", err)
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2)
		ON CONFLICT (jti) DO UPDATE SET expires_at = greatest(revoked_tokens.expires_at, EXCLUDED.expires_at)`, jti, n); err != nil {
		return fmt.Errorf("postgres: revoke token: %w", err)
	}
	return nil
}

// TokenRevoked reports whether jti is recorded as revoked.
func (s *Store) TokenRevoked(ctx context.Context, jti string) (bool, error) {
	var revoked bool
	if err := s.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = $1)", jti).Scan(&revoked); err != nil {
		return false, fmt.Errorf("postgres: token revoked: %w", err)
	}
	return revoked, nil
}

// PurgeRevokedTokens deletes the entries that expired before now.
func (s *Store) PurgeRevokedTokens(ctx context.Context, now time.Time) (int64, error) {
	return s.purge(ctx, "revoked_tokens", now)
}

// purge deletes the rows of table that expired before t.
func (s *Store) purge(ctx context.Context, table string, t time.Time) (int64, error) {
	n, err := sqlstore.Nanos(t)
	if err != nil {
		return 0, fmt.Errorf("postgres: purge %s: %w", table, err)
	}
	tag, err := s.pool.Exec(ctx, "DELETE FROM "+table+" WHERE expires_at < $1", n)
	if err != nil {
		return 0, fmt.Errorf("postgres: purge %s: %w", table, err)
	}
	return tag.RowsAffected(), nil
}
