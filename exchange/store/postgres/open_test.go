package postgres_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokenbroker/tokenbroker/exchange"
	"github.com/tokenbroker/tokenbroker/exchange/store/postgres"
	"github.com/tokenbroker/tokenbroker/exchange/store/storetest"
)

func TestClock(t *testing.T) {
	storetest.RunClock(t, func(t *testing.T, now func() time.Time) exchange.Store {
		s, err := postgres.Open(context.Background(), storetest.PostgresDSN(t), postgres.WithNow(now))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

// TestOpenErrorsHidePassword needs no server: nothing listens on port 1.
func TestOpenErrorsHidePassword(t *testing.T) {
	const pw = "S3cret-Pa55word"
	tests := []struct {
		name, dsn string
		want      []string // substrings the error must hold
	}{
		{"closed port, password in URL", "postgres://broker:" + pw + "@127.0.0.1:1/tb?sslmode=disable&connect_timeout=5",
			[]string{"127.0.0.1:1", `database "tb"`, `user "broker"`}},
		{"closed port, password in query", "postgresql://broker@127.0.0.1:1/tb?sslmode=disable&password=" + pw,
			[]string{"127.0.0.1:1"}},
		{"closed port, keyword/value", "host=127.0.0.1 port=1 user=broker dbname=tb sslmode=disable password='" + pw + "'",
			[]string{"127.0.0.1:1"}},
		{"escaped password", "postgres://broker:" + url.QueryEscape(pw+"@/") + "@127.0.0.1:1/tb?sslmode=disable",
			[]string{"127.0.0.1:1"}},
		{"bad port", "postgres://broker:" + pw + "@127.0.0.1:notaport/tb", []string{"parse"}},
		{"bad URL", "postgres://broker:" + pw + "@[::1/tb", []string{"parse"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s, err := postgres.Open(ctx, tt.dsn)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded, want an error")
			}
			msg := err.Error()
			for _, secret := range []string{pw, url.QueryEscape(pw), url.PathEscape(pw)} {
				if strings.Contains(msg, secret) {
					t.Errorf("error reveals the password: %q", msg)
				}
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
			if !strings.HasPrefix(msg, "postgres: ") {
				t.Errorf("error %q lacks the package prefix", msg)
			}
			var pe *postgres.Error
			if !errors.As(err, &pe) {
				t.Errorf("error is %T, want it to be a *postgres.Error", err)
			}
		})
	}
}

func TestOpenConcurrentMigrates(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	const n = 4
	stores := make([]*postgres.Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { stores[i], errs[i] = postgres.Open(context.Background(), dsn) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Errorf("Open %d: %v", i, errs[i])
			continue
		}
		stores[i].Close()
	}
	if got := queryInt(t, dsn, "SELECT count(*) FROM schema_migrations"); got != 2 {
		t.Errorf("schema_migrations rows = %d, want 2", got)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	s, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	s.Close()
	queryInt(t, dsn, "INSERT INTO schema_migrations (version, applied_at) VALUES (9999, 0) RETURNING version")
	s, err = postgres.Open(context.Background(), dsn)
	if err == nil {
		s.Close()
		t.Fatal("Open of a database from a newer build succeeded, want an error")
	}
	if !strings.Contains(err.Error(), "newer") {
		t.Errorf("Open error = %q, want it to say the schema is newer", err)
	}
}

// queryInt runs query on a plain connection and returns its integer result.
func queryInt(t *testing.T, dsn, query string) int64 {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}
