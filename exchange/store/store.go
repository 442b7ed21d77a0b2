// Package store opens the exchange.Store that a DSN names: SQLite (the
// default, embedded) or PostgreSQL (shared by several replicas).
//
// Accepted DSNs:
//
//	sqlite://./tokenbroker.db       a path relative to the working directory
//	sqlite:///var/lib/tb/tb.db      an absolute path
//	sqlite::memory:                 a private in-memory database (tests, dev)
//	./tokenbroker.db                a bare path is a SQLite file too
//	postgres://user:pw@host:5432/db?sslmode=verify-full
//	postgresql://...                the same
package store

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/tokenbroker/tokenbroker/exchange"
	"github.com/tokenbroker/tokenbroker/exchange/store/postgres"
	"github.com/tokenbroker/tokenbroker/exchange/store/sqlite"
)

// Kinds of store a DSN names.
const (
	KindSQLite   = "sqlite"
	KindPostgres = "postgres"
)

// Option configures Open.
type Option func(*options)

type options struct {
	now func() time.Time
}

// WithNow sets the clock of the store (replay expiry); the default is
// time.Now.
func WithNow(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// Open opens the store that dsn names and applies pending schema migrations.
// Its errors never hold a password; log the DSN itself through Redact.
func Open(ctx context.Context, dsn string, opts ...Option) (exchange.Store, error) {
	o := options{now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	kind, target, err := Parse(dsn)
	if err != nil {
		return nil, err
	}
	switch kind {
	case KindSQLite:
		s, err := sqlite.Open(ctx, target, sqlite.WithNow(o.now))
		if err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		return s, nil
	default:
		s, err := postgres.Open(ctx, target, postgres.WithNow(o.now))
		if err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		return s, nil
	}
}

var (
	// scheme matches a URL scheme (RFC 3986 section 3.1) and its colon.
	scheme = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.-]*):`)
	// keyValue matches the start of a libpq keyword/value string.
	keyValue = regexp.MustCompile(`^[A-Za-z_]+\s*=`)
)

// Parse returns the kind of store dsn names and what to open: the file path
// for SQLite (or sqlite.Memory), the DSN itself for PostgreSQL. Its errors
// quote at most the scheme, never the DSN, which may hold a password.
func Parse(dsn string) (kind, target string, err error) {
	dsn = strings.TrimSpace(dsn)
	if dsn == "" {
		return "", "", errors.New("store: empty DSN")
	}
	m := scheme.FindStringSubmatch(dsn)
	if m == nil {
		if keyValue.MatchString(dsn) {
			return "", "", errors.New("store: keyword/value connection strings are not supported; write a postgres:// URL")
		}
		return KindSQLite, dsn, nil
	}
	switch strings.ToLower(m[1]) {
	case "sqlite", "sqlite3":
		path := dsn[len(m[0]):]
		path = strings.TrimPrefix(path, "//")
		if path == "" {
			return "", "", errors.New("store: sqlite DSN without a path, want sqlite://./file.db or sqlite:///abs/file.db")
		}
		if strings.ContainsAny(path, "?#") {
			return "", "", errors.New("store: sqlite DSN: parameters are not supported (the store sets its own pragmas)")
		}
		return KindSQLite, path, nil
	case "postgres", "postgresql":
		if !strings.HasPrefix(dsn[len(m[0]):], "//") {
			return "", "", fmt.Errorf("store: want %s://host/database", strings.ToLower(m[1]))
		}
		return KindPostgres, dsn, nil
	default:
		return "", "", fmt.Errorf("store: unsupported scheme %q, want sqlite:// or postgres://", m[1])
	}
}

// Redact returns dsn with its passwords replaced, fit for logs.
func Redact(dsn string) string {
	if kind, _, err := Parse(dsn); err == nil && kind == KindSQLite {
		return strings.TrimSpace(dsn)
	}
	return postgres.Redact(dsn)
}
