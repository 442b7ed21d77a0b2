package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tokenbroker/tokenbroker/exchange"
	"github.com/tokenbroker/tokenbroker/exchange/store/postgres"
	"github.com/tokenbroker/tokenbroker/exchange/store/storetest"
)

// envDSN names the environment variable holding the test server's DSN.
const envDSN = "TOKENBROKER_TEST_POSTGRES"

// freshSchema creates a schema of a random name on the test server, drops it
// when the test ends, and returns a DSN whose search_path selects it, so
// that tests and parallel runs never share tables.
func freshSchema(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(envDSN)
	if dsn == "" {
		t.Skipf("%s is not set", envDSN)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("%s: %v", envDSN, err)
	}
	name := "tb_test_" + randomHex(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to %s: %v", postgres.Redact(dsn), err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+name); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Errorf("connect to drop schema %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+name+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", name, err)
		}
	})
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	return u.String()
}

func randomHex(t testing.TB) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func openFresh(t testing.TB) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), freshSchema(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) exchange.Store { return openFresh(t) })
}

func BenchmarkAppendAudit(b *testing.B) {
	s := openFresh(b)
	defer s.Close()
	storetest.BenchAppendAudit(b, s)
}

func BenchmarkClaim(b *testing.B) {
	s := openFresh(b)
	defer s.Close()
	storetest.BenchClaim(b, s)
}

func BenchmarkClaimParallel(b *testing.B) {
	s := openFresh(b)
	defer s.Close()
	storetest.BenchClaimParallel(b, s)
}
