package postgres_test

import (
	"context"
	"testing"

	"github.com/tokenbroker/tokenbroker/exchange"
	"github.com/tokenbroker/tokenbroker/exchange/store/postgres"
	"github.com/tokenbroker/tokenbroker/exchange/store/storetest"
)

func openFresh(t testing.TB) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), storetest.PostgresDSN(t))
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
