package storetest

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/exchange"
)

// BenchAppendAudit measures appending batches of 64 events.
func BenchAppendAudit(b *testing.B, s exchange.Store) {
	batch := make([]exchange.AuditEvent, 64)
	for i := range batch {
		batch[i] = event(fmt.Sprintf("req-%d", i), base.Add(time.Duration(i)), "repo:octo-org/app:ref:refs/heads/main", "deploy-prod", exchange.OutcomeAllowed)
		batch[i].Audience = []string{"deploy-api"}
		batch[i].Scopes = []string{"deploy:prod", "deploy:read"}
		batch[i].Candidates = []string{"deploy-prod"}
		batch[i].ExpiresAt = base.Add(10 * time.Minute)
	}
	c := ctx(b)
	b.ReportAllocs()
	for b.Loop() {
		if err := s.AppendAudit(c, batch); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchClaim measures claiming fresh (issuer, jti) pairs one after another.
func BenchClaim(b *testing.B, s exchange.Store) {
	c := ctx(b)
	until := time.Now().Add(time.Hour)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if err := s.Claim(c, "https://ci.example", fmt.Sprintf("jti-%d", i), until); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchClaimParallel measures claiming fresh pairs from GOMAXPROCS
// goroutines at once, as concurrent exchanges do.
func BenchClaimParallel(b *testing.B, s exchange.Store) {
	c := ctx(b)
	until := time.Now().Add(time.Hour)
	var n atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Claim(c, "https://ci.example", fmt.Sprintf("jti-%d", n.Add(1)), until); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
