package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/tokenbroker/tokenbroker/exchange"
	"github.com/tokenbroker/tokenbroker/exchange/store/sqlite"
	"github.com/tokenbroker/tokenbroker/exchange/store/storetest"
)

func openTemp(t testing.TB) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "data", "tokenbroker.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) exchange.Store { return openTemp(t) })
}

func TestConformanceMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) exchange.Store {
		s, err := sqlite.Open(context.Background(), sqlite.Memory)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

func BenchmarkAppendAudit(b *testing.B) {
	s := openTemp(b)
	defer s.Close()
	storetest.BenchAppendAudit(b, s)
}

func BenchmarkClaim(b *testing.B) {
	s := openTemp(b)
	defer s.Close()
	storetest.BenchClaim(b, s)
}

func BenchmarkClaimParallel(b *testing.B) {
	s := openTemp(b)
	defer s.Close()
	storetest.BenchClaimParallel(b, s)
}
