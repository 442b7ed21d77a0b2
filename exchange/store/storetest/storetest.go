// Package storetest is the conformance suite that every exchange.Store
// implementation passes. It is test support: it imports testing and is only
// imported from _test.go files.
package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/exchange"
)

// base is the reference time of the suite: nanosecond precision and a
// non-UTC zone, so a store that truncates or mangles times fails.
var base = time.Date(2026, time.March, 1, 12, 0, 0, 123456789, time.FixedZone("CET", 3600))

// Run runs the conformance suite. open returns a new, empty store for one
// test and cleans up after it (temporary file, schema); Run closes every
// store it opens, and Close must tolerate being called twice. The tests run
// in parallel, so open must be safe for concurrent use.
//
// Stores must use the real clock by default: the replay tests claim entries
// that expired a minute ago and far in the future, never near now.
func Run(t *testing.T, open func(t *testing.T) exchange.Store) {
	t.Helper()
	tests := []struct {
		name string
		run  func(t *testing.T, open func(t *testing.T) exchange.Store)
	}{
		{"EnsureSigningKey", testEnsureSigningKey},
		{"EnsureSigningKeyConcurrent", testEnsureSigningKeyConcurrent},
		{"EnsureSigningKeyInvalid", testEnsureSigningKeyInvalid},
		{"SigningKeys", testSigningKeys},
		{"RotateSigningKey", testRotateSigningKey},
		{"RotateSigningKeyConcurrent", testRotateSigningKeyConcurrent},
		{"RotateSigningKeyInvalid", testRotateSigningKeyInvalid},
		{"Claim", testClaim},
		{"ClaimConcurrent", testClaimConcurrent},
		{"ClaimInvalid", testClaimInvalid},
		{"ClaimAll", testClaimAll},
		{"ClaimAllConcurrent", testClaimAllConcurrent},
		{"ClaimAllInvalid", testClaimAllInvalid},
		{"AuditRoundTrip", testAuditRoundTrip},
		{"AuditQuery", testAuditQuery},
		{"AuditDefaultLimit", testAuditDefaultLimit},
		{"AuditInvalid", testAuditInvalid},
		{"APIKeyRoundTrip", testAPIKeyRoundTrip},
		{"APIKeyInsertAtomic", testAPIKeyInsertAtomic},
		{"UseAPIKey", testUseAPIKey},
		{"UseAPIKeyConcurrent", testUseAPIKeyConcurrent},
		{"UseAPIKeys", testUseAPIKeys},
		{"UseAPIKeysFailed", testUseAPIKeysFailed},
		{"UseAPIKeysConcurrent", testUseAPIKeysConcurrent},
		{"UseAPIKeysConcurrentSameKey", testUseAPIKeysConcurrentSameKey},
		{"RevokeAPIKey", testRevokeAPIKey},
		{"ListAPIKeys", testListAPIKeys},
		{"PurgeAPIKeys", testPurgeAPIKeys},
		{"RevokedTokens", testRevokedTokens},
		{"PingClose", testPingClose},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, open)
		})
	}
}

// newStore opens a store and closes it when the test ends.
func newStore(t *testing.T, open func(t *testing.T) exchange.Store) exchange.Store {
	t.Helper()
	s := open(t)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// ctx returns a context bounded well beyond any sane operation, so a
// deadlocked store fails the test instead of hanging it.
func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func testPingClose(t *testing.T, open func(t *testing.T) exchange.Store) {
	s := newStore(t, open)
	if err := s.Ping(ctx(t)); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Ping(ctx(t)); err == nil {
		t.Errorf("Ping after Close: got nil error, want one")
	}
	if err := s.Claim(ctx(t), "https://ci.example", "after-close", base.Add(time.Hour)); err == nil {
		t.Errorf("Claim after Close: got nil error, want one")
	}
}
