// Package postgres is the shared store of the broker: signing keys, replay
// cache and audit trail in PostgreSQL through jackc/pgx/v5, for several broker
// replicas behind a load balancer.
//
// Every table lives in the connection's current schema (the first of its
// search_path), so one server can hold several brokers, or test runs, side by
// side.
package postgres

import (
	"context"
	"embed"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tokenbroker/tokenbroker/exchange"
	"github.com/tokenbroker/tokenbroker/exchange/store/internal/sqlstore"
)

// defaultConnectTimeout bounds each connection attempt when the DSN sets no
// connect_timeout, so an unreachable server fails Open instead of hanging it.
const defaultConnectTimeout = 10 * time.Second

// Advisory lock names. The lock key hashes the name with the current schema,
// so brokers in different schemas do not wait for each other.
const (
	lockMigrate     = "tokenbroker.migrate"
	lockSigningKeys = "tokenbroker.signing_keys"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Store is an exchange.Store in a PostgreSQL database. It is safe for
// concurrent use, by any number of replicas sharing the database.
type Store struct {
	pool *pgxpool.Pool
	now  func() time.Time

	closeOnce sync.Once
}

var _ exchange.Store = (*Store)(nil)

// Option configures Open.
type Option func(*Store)

// WithNow sets the clock that decides whether a replay entry has expired and
// stamps migrations; the default is time.Now. Replicas compare their own
// clocks with expiry times, so keep them synchronised (NTP).
func WithNow(now func() time.Time) Option {
	return func(s *Store) { s.now = now }
}

// Error is an error of Open whose message is free of the DSN's password. The
// driver's own error, which may quote the DSN, stays reachable through
// errors.Unwrap for errors.Is and errors.As, but it is never printed.
type Error struct {
	msg string
	err error
}

// Error returns the scrubbed message.
func (e *Error) Error() string { return e.msg }

// Unwrap returns the driver's error.
func (e *Error) Unwrap() error { return e.err }

// safeError builds an Error from prefix and the driver error's message with
// every secret removed, or from prefix alone when scrubbing is not safe.
func safeError(prefix string, err error, secrets []string) error {
	if msg, ok := scrub(prefix+": "+err.Error(), secrets); ok {
		return &Error{msg: msg, err: err}
	}
	if msg, ok := scrub(prefix, secrets); ok {
		return &Error{msg: msg + " (details withheld: they would reveal the password)", err: err}
	}
	return &Error{msg: "postgres: open failed (details withheld: they would reveal the password)", err: err}
}

// Open connects to the database named by dsn (a postgres:// URL or a
// keyword/value string, see pgx.ParseConfig) and applies pending schema
// migrations. Errors name the server but never the password.
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	s := &Store{now: time.Now}
	for _, o := range opts {
		o(s)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, safeError("postgres: cannot parse DSN "+Redact(dsn), err, secrets(dsn))
	}
	cc := cfg.ConnConfig
	if cc.ConnectTimeout == 0 {
		cc.ConnectTimeout = defaultConnectTimeout
	}
	where := fmt.Sprintf("%s (database %q, user %q)", server(cc.Host, cc.Port), cc.Database, cc.User)
	s.pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, safeError("postgres: connect to "+where, err, secrets(dsn, cc.Password))
	}
	if err := s.pool.Ping(ctx); err != nil {
		s.pool.Close()
		return nil, safeError("postgres: cannot reach "+where, err, secrets(dsn, cc.Password))
	}
	if err := s.migrate(ctx); err != nil {
		s.pool.Close()
		return nil, err
	}
	return s, nil
}

// server names a host and port, or a Unix socket directory and port.
func server(host string, port uint16) string {
	if strings.HasPrefix(host, "/") {
		return fmt.Sprintf("socket %s port %d", host, port)
	}
	return net.JoinHostPort(host, strconv.Itoa(int(port)))
}

// lock takes the transaction-scoped advisory lock of name in the current
// schema; it is released at commit or rollback. coalesce keeps the key
// defined when the search_path names no existing schema (a NULL key would
// silently take no lock).
func lock(ctx context.Context, tx pgx.Tx, name string) error {
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1 || ':' || coalesce(current_schema(), ''), 0))`, name)
	if err != nil {
		return fmt.Errorf("advisory lock %s: %w", name, err)
	}
	return nil
}

// migrate applies every embedded migration the database lacks, each in its
// own transaction under an advisory lock, so that replicas starting at once
// apply each migration exactly once: the others wait, then see it recorded.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := sqlstore.Migrations(migrationFS, "migrations")
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	for _, m := range ms {
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			return s.apply(ctx, tx, m, ms[len(ms)-1].Version)
		})
		if err != nil {
			return fmt.Errorf("postgres: migration %s: %w", m.Name, err)
		}
	}
	return nil
}

// apply runs one migration unless it is recorded already. It refuses a
// database migrated by a newer build, whose schema this build may misuse.
func (s *Store) apply(ctx context.Context, tx pgx.Tx, m sqlstore.Migration, known int64) error {
	if err := lock(ctx, tx, lockMigrate); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    bigint NOT NULL PRIMARY KEY,
		applied_at bigint NOT NULL
	)`); err != nil {
		return err
	}
	var newest *int64
	if err := tx.QueryRow(ctx, "SELECT max(version) FROM schema_migrations").Scan(&newest); err != nil {
		return err
	}
	if newest != nil && *newest > known {
		return fmt.Errorf("database schema version %d is newer than this build knows (%d); upgrade tokenbroker", *newest, known)
	}
	var done bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)", m.Version).Scan(&done); err != nil {
		return err
	}
	if done {
		return nil
	}
	if _, err := tx.Exec(ctx, m.SQL); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)", m.Version, s.now().UnixNano())
	return err
}

// Ping reports whether the database is reachable.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: ping: %w", err)
	}
	return nil
}

// Close closes every connection; later calls do nothing.
func (s *Store) Close() error {
	s.closeOnce.Do(s.pool.Close)
	return nil
}
