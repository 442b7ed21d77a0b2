// Package sqlite is the embedded store of the broker: signing keys, replay
// cache and audit trail in one SQLite file, through the pure-Go driver
// modernc.org/sqlite (no cgo). It is the default store; it serves one broker
// process (several replicas share a PostgreSQL store instead).
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	// The pure-Go SQLite driver, registered as "sqlite".
	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/tokenbroker/tokenbroker/exchange"
	"github.com/tokenbroker/tokenbroker/exchange/store/internal/sqlstore"
)

// Memory is the path of a private in-memory database, lost on Close. It is
// meant for tests and `tokenbroker dev`.
const Memory = ":memory:"

// busyTimeout is how long a statement waits for a lock that another process
// (say, the `tokenbroker keys` command next to a running server) holds.
const busyTimeout = 5 * time.Second

//go:embed migrations/*.sql
var migrationFS embed.FS

// Store is an exchange.Store in a SQLite database. It is safe for concurrent
// use.
//
// SQLite lets one connection write at a time. The store therefore keeps two
// pools: write, a single connection whose transactions begin IMMEDIATE, and
// read, several query-only connections. Writers queue in database/sql for the
// one connection (cheap, fair, context-aware) instead of spinning in SQLite's
// busy handler, and no transaction can deadlock by upgrading a read lock to a
// write lock. In WAL mode readers never wait for the writer, so audit queries
// and JWKS reads proceed while claims commit. A single pool with
// _txlock=immediate would also be correct, but then every read competes with
// writes for SQLITE_BUSY retries, which sleep.
type Store struct {
	write *sql.DB
	read  *sql.DB
	now   func() time.Time

	closeOnce sync.Once
	closeErr  error
}

var _ exchange.Store = (*Store)(nil)

// Option configures Open.
type Option func(*Store)

// WithNow sets the clock that decides whether a replay entry has expired and
// stamps migrations; the default is time.Now.
func WithNow(now func() time.Time) Option {
	return func(s *Store) { s.now = now }
}

// Open opens the database at path, creating it (mode 0600) and its parent
// directory (mode 0700) when missing, and applies pending schema migrations.
// The path Memory opens a private in-memory database.
//
// Every connection runs with journal_mode=WAL and synchronous=FULL, so a
// transaction that returned is on disk: a key handed out survives a crash or
// kill -9 of the process or the machine.
func Open(ctx context.Context, path string, opts ...Option) (*Store, error) {
	s := &Store{now: time.Now}
	for _, o := range opts {
		o(s)
	}
	if path == "" {
		return nil, errors.New("sqlite: empty database path")
	}
	var err error
	if path == Memory {
		// Every connection to ":memory:" is a database of its own, so a
		// single connection serves both roles.
		if s.write, err = sql.Open("sqlite", "file::memory:?"+params(false).Encode()); err != nil {
			return nil, fmt.Errorf("sqlite: open in-memory database: %w", err)
		}
		s.write.SetMaxOpenConns(1)
		s.write.SetConnMaxIdleTime(0)
		s.write.SetConnMaxLifetime(0)
		s.read = s.write
	} else if err := s.openFile(path); err != nil {
		return nil, err
	}
	if err := s.startRetrying(ctx, path); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// startRetrying runs start, again while it fails with SQLITE_BUSY, for up to
// busyTimeout. Switching a new file to WAL takes a lock that SQLite does not
// wait for with the busy handler, so processes opening one new file at once
// (a CLI command beside a starting broker) can see SQLITE_BUSY there.
func (s *Store) startRetrying(ctx context.Context, path string) error {
	deadline := time.Now().Add(busyTimeout)
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		err := s.start(ctx, path)
		if err == nil || !isBusy(err) || time.Now().Add(wait).After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// isBusy reports whether err is SQLITE_BUSY (any extended code).
func isBusy(err error) bool {
	var se *msqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY
}

// params returns the driver parameters of a connection. The pragmas are set
// on every new connection, before database/sql hands it out.
func params(readOnly bool) url.Values {
	v := url.Values{}
	v.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	v.Add("_pragma", "foreign_keys(1)")
	v.Add("_pragma", "synchronous(FULL)")
	if readOnly {
		v.Set("_query_only", "1")
		return v
	}
	// WAL is a property of the file, set by the writer; the default
	// synchronous=FULL in WAL mode fsyncs the log at every commit.
	v.Add("_pragma", "journal_mode(WAL)")
	v.Set("_txlock", "immediate")
	return v
}

// openFile creates the database file with owner-only permissions (it holds
// private signing keys; SQLite gives the -wal and -shm files the same mode)
// and opens both pools on it.
func (s *Store) openFile(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("sqlite: database path %q: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return fmt.Errorf("sqlite: create directory of %q: %w", path, err)
	}
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("sqlite: create %q: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("sqlite: create %q: %w", path, err)
	}
	// A file: URI with an escaped path, so names holding '?', '#' or '%'
	// open the right file.
	uri := (&url.URL{Scheme: "file", Path: abs}).String()
	if s.write, err = sql.Open("sqlite", uri+"?"+params(false).Encode()); err != nil {
		return fmt.Errorf("sqlite: open %q: %w", path, err)
	}
	s.write.SetMaxOpenConns(1)
	s.write.SetMaxIdleConns(1)
	s.write.SetConnMaxIdleTime(0)
	s.write.SetConnMaxLifetime(0)
	if s.read, err = sql.Open("sqlite", uri+"?"+params(true).Encode()); err != nil {
		s.write.Close()
		return fmt.Errorf("sqlite: open %q: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	s.read.SetMaxOpenConns(n)
	s.read.SetMaxIdleConns(n)
	return nil
}

// start checks the connection and migrates the schema.
func (s *Store) start(ctx context.Context, path string) error {
	var mode string
	if err := s.write.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("sqlite: open %q: %w", path, err)
	}
	if path != Memory && mode != "wal" {
		return fmt.Errorf("sqlite: %q: journal mode is %q, want wal (is it on a network file system?)", path, mode)
	}
	if err := s.migrate(ctx); err != nil {
		return err
	}
	if err := s.read.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: open %q: %w", path, err)
	}
	return nil
}

// migrate applies every embedded migration the database lacks, each in its
// own IMMEDIATE transaction, so that two processes starting at once apply
// each migration exactly once: the second one waits for the write lock, then
// sees the version recorded.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := sqlstore.Migrations(migrationFS, "migrations")
	if err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	if _, err := s.write.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER NOT NULL PRIMARY KEY,
		applied_at INTEGER NOT NULL
	) STRICT`); err != nil {
		return fmt.Errorf("sqlite: create schema_migrations: %w", err)
	}
	var newest sql.NullInt64
	if err := s.write.QueryRowContext(ctx, "SELECT max(version) FROM schema_migrations").Scan(&newest); err != nil {
		return fmt.Errorf("sqlite: read schema version: %w", err)
	}
	if known := ms[len(ms)-1].Version; newest.Int64 > known {
		return fmt.Errorf("sqlite: database schema version %d is newer than this build knows (%d); upgrade tokenbroker", newest.Int64, known)
	}
	for _, m := range ms {
		if err := s.apply(ctx, m); err != nil {
			return fmt.Errorf("sqlite: migration %s: %w", m.Name, err)
		}
	}
	return nil
}

// apply runs one migration unless it is recorded already.
func (s *Store) apply(ctx context.Context, m sqlstore.Migration) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }() // a no-op after Commit
	var done int
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM schema_migrations WHERE version = ?", m.Version).Scan(&done); err != nil {
		return err
	}
	if done > 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
		m.Version, s.now().UnixNano()); err != nil {
		return err
	}
	return tx.Commit()
}

// Ping reports whether both pools reach the database.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.write.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: ping: %w", err)
	}
	if err := s.read.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: ping: %w", err)
	}
	return nil
}

// Close closes the database; later calls return the first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		if s.read != nil && s.read != s.write {
			errs = append(errs, s.read.Close())
		}
		if s.write != nil {
			errs = append(errs, s.write.Close())
		}
		if err := errors.Join(errs...); err != nil {
			s.closeErr = fmt.Errorf("sqlite: close: %w", err)
		}
	})
	return s.closeErr
}
