package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenbroker/tokenbroker/exchange"
	"github.com/tokenbroker/tokenbroker/exchange/store/sqlite"
	"github.com/tokenbroker/tokenbroker/exchange/store/storetest"
)

func TestClock(t *testing.T) {
	storetest.RunClock(t, func(t *testing.T, now func() time.Time) exchange.Store {
		s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "tb.db"), sqlite.WithNow(now))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

// rawQuery reads one value from the database file with a plain connection.
func rawQuery(t *testing.T, path, query string) string {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v string
	if err := db.QueryRow(query).Scan(&v); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return v
}

func TestOpenCreatesPrivateFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "tb")
	path := filepath.Join(dir, "tokenbroker.db")
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	for _, c := range []struct {
		path string
		want os.FileMode
	}{{dir, 0o700 | os.ModeDir}, {path, 0o600}, {path + "-wal", 0o600}} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatalf("stat: %v", err)
		}
		if got := fi.Mode(); got != c.want {
			t.Errorf("mode of %s = %v, want %v", filepath.Base(c.path), got, c.want)
		}
	}
	if got := rawQuery(t, path, "PRAGMA journal_mode"); got != "wal" {
		t.Errorf("journal_mode = %q, want wal", got)
	}
	if got := rawQuery(t, path, "SELECT group_concat(version ORDER BY version) FROM schema_migrations"); got != "1,2" {
		t.Errorf("applied migrations = %q, want 1,2", got)
	}
}

func TestOpenOddPath(t *testing.T) {
	// Characters that mean something in a file: URI must reach the file name.
	dir := t.TempDir()
	path := filepath.Join(dir, "a b?c#d%41e&f.db")
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	if _, err := os.Stat(path); err != nil {
		t.Errorf("database not at the given path: %v", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "a b?c#d%41e&f.db") {
			t.Errorf("stray file %q next to the database", e.Name())
		}
	}
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tb.db")
	ctx := context.Background()
	now := time.Now()
	k := exchange.StoredKey{ID: "k1", Algorithm: "ES256", PrivateKey: []byte{1, 2, 3}, CreatedAt: now, ActiveAt: now}
	ev := exchange.AuditEvent{Time: now, RequestID: "r1", Outcome: exchange.OutcomeAllowed}
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if _, err := s.EnsureSigningKey(ctx, k); err != nil {
		t.Fatalf("EnsureSigningKey: %v", err)
	}
	if err := s.Claim(ctx, "iss", "jti", now.Add(time.Hour)); err != nil {
		t.Fatalf("Claim: %v", err)
	}
	if err := s.AppendAudit(ctx, []exchange.AuditEvent{ev}); err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s, err = sqlite.Open(ctx, path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	keys, err := s.SigningKeys(ctx, now)
	if err != nil {
		t.Fatalf("SigningKeys: %v", err)
	}
	if d := cmp.Diff([]exchange.StoredKey{k}, keys); d != "" {
		t.Errorf("SigningKeys after reopen (-want +got):\n%s", d)
	}
	if err := s.Claim(ctx, "iss", "jti", now.Add(time.Hour)); !errors.Is(err, exchange.ErrReplay) {
		t.Errorf("Claim after reopen = %v, want ErrReplay", err)
	}
	events, err := s.QueryAudit(ctx, exchange.AuditQuery{})
	if err != nil {
		t.Fatalf("QueryAudit: %v", err)
	}
	if d := cmp.Diff([]exchange.AuditEvent{ev}, events); d != "" {
		t.Errorf("QueryAudit after reopen (-want +got):\n%s", d)
	}
}

func TestOpenConcurrentMigrates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tb.db")
	const n = 4
	stores := make([]*sqlite.Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { stores[i], errs[i] = sqlite.Open(context.Background(), path) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Errorf("Open %d: %v", i, errs[i])
			continue
		}
		stores[i].Close()
	}
	if got := rawQuery(t, path, "SELECT count(*) FROM schema_migrations"); got != "2" {
		t.Errorf("schema_migrations rows = %s, want 2", got)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tb.db")
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	s.Close()
	rawQuery(t, path, "INSERT INTO schema_migrations (version, applied_at) VALUES (9999, 0) RETURNING version")
	s, err = sqlite.Open(context.Background(), path)
	if err == nil {
		s.Close()
		t.Fatal("Open of a database from a newer build succeeded, want an error")
	}
	if !strings.Contains(err.Error(), "newer") {
		t.Errorf("Open error = %q, want it to say the schema is newer", err)
	}
}

func TestOpenErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	notDB := filepath.Join(t.TempDir(), "garbage.db")
	if err := os.WriteFile(notDB, []byte(strings.Repeat("not a database ", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path string
	}{
		{"empty path", ""},
		{"parent is a file", filepath.Join(file, "tb.db")},
		{"not a database", notDB},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := sqlite.Open(context.Background(), tt.path)
			if err == nil {
				s.Close()
				t.Fatalf("Open(%q) succeeded, want an error", tt.path)
			}
			if !strings.HasPrefix(err.Error(), "sqlite: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}
