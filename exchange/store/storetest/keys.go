package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenbroker/tokenbroker/exchange"
)

// key returns a distinct stored key; the private key bytes stand in for a
// PKCS #8 blob, which the store keeps opaque.
func key(id, alg string, created time.Time) exchange.StoredKey {
	return exchange.StoredKey{
		ID:         id,
		Algorithm:  alg,
		PrivateKey: []byte("pkcs8:" + id + "\x00\xff"),
		CreatedAt:  created,
		ActiveAt:   created.Add(time.Minute),
	}
}

func retired(k exchange.StoredKey, at, remove time.Time) exchange.StoredKey {
	k.RetiredAt, k.RemoveAt = at, remove
	return k
}

func testEnsureSigningKey(t *testing.T, open func(t *testing.T) exchange.Store) {
	es1 := key("es-1", "ES256", base)
	es2 := key("es-2", "ES256", base.Add(time.Hour))
	rs1 := key("rs-1", "RS256", base.Add(2*time.Hour))
	old := retired(key("es-0", "ES256", base.Add(-time.Hour)), base, base.Add(time.Hour))
	tests := []struct {
		name  string
		calls []exchange.StoredKey
		want  []exchange.StoredKey // the result of each call
	}{
		{"first insert wins", []exchange.StoredKey{es1}, []exchange.StoredKey{es1}},
		{"second returns the first", []exchange.StoredKey{es1, es2}, []exchange.StoredKey{es1, es1}},
		{"different algorithms coexist", []exchange.StoredKey{es1, rs1, es2}, []exchange.StoredKey{es1, rs1, es1}},
		{"retired key does not count", []exchange.StoredKey{old, es1, es2}, []exchange.StoredKey{old, es1, es1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t, open)
			for i, c := range tt.calls {
				got, err := s.EnsureSigningKey(ctx(t), c)
				if err != nil {
					t.Fatalf("EnsureSigningKey(%s): %v", c.ID, err)
				}
				if d := cmp.Diff(tt.want[i], got); d != "" {
					t.Errorf("EnsureSigningKey(%s) (-want +got):\n%s", c.ID, d)
				}
			}
		})
	}
}

func testEnsureSigningKeyConcurrent(t *testing.T, open func(t *testing.T) exchange.Store) {
	s := newStore(t, open)
	const callers = 8
	got := make([]exchange.StoredKey, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			got[i], errs[i] = s.EnsureSigningKey(ctx(t), key(fmt.Sprintf("es-%d", i), "ES256", base.Add(time.Duration(i))))
		})
	}
	wg.Wait()
	for i := range callers {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if d := cmp.Diff(got[0], got[i]); d != "" {
			t.Errorf("callers 0 and %d disagree (-0 +%d):\n%s", i, i, d)
		}
	}
	keys, err := s.SigningKeys(ctx(t), base)
	if err != nil {
		t.Fatalf("SigningKeys: %v", err)
	}
	if d := cmp.Diff([]exchange.StoredKey{got[0]}, keys); d != "" {
		t.Errorf("SigningKeys after concurrent EnsureSigningKey (-want +got):\n%s", d)
	}
}

func testEnsureSigningKeyInvalid(t *testing.T, open func(t *testing.T) exchange.Store) {
	good := key("es-1", "ES256", base)
	tests := []struct {
		name   string
		mutate func(*exchange.StoredKey)
	}{
		{"no id", func(k *exchange.StoredKey) { k.ID = "" }},
		{"no algorithm", func(k *exchange.StoredKey) { k.Algorithm = "" }},
		{"no private key", func(k *exchange.StoredKey) { k.PrivateKey = nil }},
		{"no creation time", func(k *exchange.StoredKey) { k.CreatedAt = time.Time{} }},
		{"creation time out of range", func(k *exchange.StoredKey) { k.CreatedAt = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC) }},
	}
	s := newStore(t, open)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := good
			tt.mutate(&k)
			if got, err := s.EnsureSigningKey(ctx(t), k); err == nil {
				t.Errorf("EnsureSigningKey = %+v, nil; want an error", got)
			}
		})
	}
	keys, err := s.SigningKeys(ctx(t), base)
	if err != nil {
		t.Fatalf("SigningKeys: %v", err)
	}
	if len(keys) != 0 {
		t.Errorf("SigningKeys after refused inserts = %d keys, want none", len(keys))
	}
}

func testSigningKeys(t *testing.T, open func(t *testing.T) exchange.Store) {
	s := newStore(t, open)
	now := base.Add(10 * time.Hour)
	// Inserted out of creation order, to check the ordering; the retired keys
	// first, as none would be stored once an unretired ES256 key exists.
	gone := retired(key("gone", "ES256", base.Add(1*time.Hour)), base.Add(2*time.Hour), now.Add(-time.Second))
	edge := retired(key("edge", "ES256", base.Add(2*time.Hour)), base.Add(3*time.Hour), now)
	kept := retired(key("kept", "ES256", base.Add(3*time.Hour)), base.Add(4*time.Hour), now.Add(time.Nanosecond))
	cur := key("cur", "ES256", base.Add(4*time.Hour))
	ed := key("ed", "EdDSA", base)
	for _, k := range []exchange.StoredKey{kept, edge, gone, cur, ed} {
		if _, err := s.EnsureSigningKey(ctx(t), k); err != nil {
			t.Fatalf("EnsureSigningKey(%s): %v", k.ID, err)
		}
	}
	tests := []struct {
		name string
		now  time.Time
		want []exchange.StoredKey
	}{
		{"before any removal", base, []exchange.StoredKey{ed, gone, edge, kept, cur}},
		{"keys with RemoveAt at or before now left out", now, []exchange.StoredKey{ed, kept, cur}},
		{"long after", now.Add(24 * time.Hour), []exchange.StoredKey{ed, cur}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.SigningKeys(ctx(t), tt.now)
			if err != nil {
				t.Fatalf("SigningKeys: %v", err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("SigningKeys(%s) (-want +got):\n%s", tt.now, d)
			}
		})
	}
}
