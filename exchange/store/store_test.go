package store_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/exchange/store"
	"github.com/tokenbroker/tokenbroker/exchange/store/postgres"
	"github.com/tokenbroker/tokenbroker/exchange/store/sqlite"
	"github.com/tokenbroker/tokenbroker/exchange/store/storetest"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name, dsn, kind, target string
	}{
		{"relative sqlite URL", "sqlite://./tokenbroker.db", store.KindSQLite, "./tokenbroker.db"},
		{"absolute sqlite URL", "sqlite:///var/lib/tb/tb.db", store.KindSQLite, "/var/lib/tb/tb.db"},
		{"sqlite URL without dot", "sqlite://data/tb.db", store.KindSQLite, "data/tb.db"},
		{"sqlite opaque form", "sqlite:tb.db", store.KindSQLite, "tb.db"},
		{"sqlite3 scheme, upper case", "SQLITE3://./tb.db", store.KindSQLite, "./tb.db"},
		{"sqlite in memory", "sqlite::memory:", store.KindSQLite, sqlite.Memory},
		{"sqlite in memory URL", "sqlite://:memory:", store.KindSQLite, sqlite.Memory},
		{"bare relative path", "./tokenbroker.db", store.KindSQLite, "./tokenbroker.db"},
		{"bare absolute path", "/var/lib/tb.db", store.KindSQLite, "/var/lib/tb.db"},
		{"bare name", "tokenbroker.db", store.KindSQLite, "tokenbroker.db"},
		{"surrounding space trimmed", "  sqlite://./tb.db\n", store.KindSQLite, "./tb.db"},
		{"postgres", "postgres://u:pw@db:5432/tb?sslmode=verify-full", store.KindPostgres, "postgres://u:pw@db:5432/tb?sslmode=verify-full"},
		{"postgresql", "postgresql://db/tb", store.KindPostgres, "postgresql://db/tb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kind, target, err := store.Parse(tt.dsn)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.dsn, err)
			}
			if kind != tt.kind || target != tt.target {
				t.Errorf("Parse(%q) = %q, %q; want %q, %q", tt.dsn, kind, target, tt.kind, tt.target)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, dsn, want string
	}{
		{"empty", " ", "empty DSN"},
		{"unknown scheme", "mysql://u:pw-secret@db/tb", `unsupported scheme "mysql"`},
		{"sqlite without path", "sqlite://", "without a path"},
		{"sqlite parameters", "sqlite://./tb.db?_pragma=journal_mode(DELETE)", "parameters are not supported"},
		{"postgres without slashes", "postgres:pw-secret@db", "want postgres://"},
		{"keyword/value", "host=db password=pw-secret", "keyword/value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := store.Parse(tt.dsn)
			if err == nil {
				t.Fatalf("Parse(%q) succeeded, want an error", tt.dsn)
			}
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "pw-secret") {
				t.Errorf("Parse(%q) error = %q, want it to say %q and hide the password", tt.dsn, err, tt.want)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	tests := []struct {
		name, dsn, want string
	}{
		{"sqlite unchanged", "sqlite://./tb.db", "sqlite://./tb.db"},
		{"bare path unchanged", "/var/lib/tb.db", "/var/lib/tb.db"},
		{"postgres password", "postgres://u:pw-secret@db/tb", "postgres://u:xxxxx@db/tb"},
		{"unknown scheme password", "mysql://u:pw-secret@db/tb", "mysql://u:xxxxx@db/tb"},
		{"keyword/value password", "host=db password=pw-secret", "host=db password=xxxxx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := store.Redact(tt.dsn); got != tt.want {
				t.Errorf("Redact(%q) = %q, want %q", tt.dsn, got, tt.want)
			}
		})
	}
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		dsn  func(t *testing.T) string
		want any
	}{
		{"sqlite URL", func(*testing.T) string { return "sqlite://" + filepath.Join(dir, "a", "tb.db") }, &sqlite.Store{}},
		{"bare path", func(*testing.T) string { return filepath.Join(dir, "b.db") }, &sqlite.Store{}},
		{"memory", func(*testing.T) string { return "sqlite::memory:" }, &sqlite.Store{}},
		{"postgres", func(t *testing.T) string { return storetest.PostgresDSN(t) }, &postgres.Store{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dsn := tt.dsn(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			s, err := store.Open(ctx, dsn, store.WithNow(time.Now))
			if err != nil {
				t.Fatalf("Open(%q): %v", store.Redact(dsn), err)
			}
			defer s.Close()
			if err := s.Ping(ctx); err != nil {
				t.Errorf("Ping: %v", err)
			}
			switch tt.want.(type) {
			case *sqlite.Store:
				if _, ok := s.(*sqlite.Store); !ok {
					t.Errorf("Open returned %T, want *sqlite.Store", s)
				}
			case *postgres.Store:
				if _, ok := s.(*postgres.Store); !ok {
					t.Errorf("Open returned %T, want *postgres.Store", s)
				}
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	tests := []struct {
		name, dsn, want string
	}{
		{"unknown scheme", "redis://db", "store: unsupported scheme"},
		{"unreachable postgres", "postgres://u:pw-secret@127.0.0.1:1/tb?sslmode=disable&connect_timeout=5", "127.0.0.1:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := store.Open(context.Background(), tt.dsn)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "pw-secret") {
				t.Errorf("Open error = %q, want it to mention %q and hide the password", err, tt.want)
			}
		})
	}
}

// FuzzParse checks that Parse never panics and that what it accepts is
// consistent.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"sqlite://./tb.db", "sqlite:///abs.db", "sqlite::memory:", "./x.db",
		"postgres://u:pw@h/db", "postgresql://h", "mysql://u:pw@h", "host=h password=pw", "", "sqlite:", "x:y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, dsn string) {
		kind, target, err := store.Parse(dsn)
		if err != nil {
			if kind != "" || target != "" {
				t.Errorf("Parse(%q) = %q, %q with error %v", dsn, kind, target, err)
			}
			return
		}
		switch kind {
		case store.KindSQLite:
			if target == "" || strings.ContainsAny(target, "?#") && target != strings.TrimSpace(dsn) {
				t.Errorf("Parse(%q) = sqlite path %q", dsn, target)
			}
		case store.KindPostgres:
			if !strings.Contains(target, "://") {
				t.Errorf("Parse(%q) = postgres DSN %q without ://", dsn, target)
			}
		default:
			t.Errorf("Parse(%q) = unknown kind %q", dsn, kind)
		}
	})
}
