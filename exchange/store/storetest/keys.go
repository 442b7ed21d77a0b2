package storetest

import (
	"errors"
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

// rotate calls RotateSigningKey and fails the test on an error.
func rotate(t *testing.T, s exchange.Store, currentID string, next exchange.StoredKey, retireAt, removeAt time.Time) bool {
	t.Helper()
	ok, err := s.RotateSigningKey(ctx(t), currentID, next, retireAt, removeAt)
	if err != nil {
		t.Fatalf("RotateSigningKey(%s -> %s): %v", currentID, next.ID, err)
	}
	return ok
}

// wantKeys checks SigningKeys at now.
func wantKeys(t *testing.T, s exchange.Store, now time.Time, want ...exchange.StoredKey) {
	t.Helper()
	got, err := s.SigningKeys(ctx(t), now)
	if err != nil {
		t.Fatalf("SigningKeys: %v", err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("SigningKeys(%s) (-want +got):\n%s", now, d)
	}
}

func testRotateSigningKey(t *testing.T, open func(t *testing.T) exchange.Store) {
	s := newStore(t, open)
	es1 := key("es-1", "ES256", base)
	es2 := key("es-2", "ES256", base.Add(time.Hour))
	es3 := key("es-3", "ES256", base.Add(2*time.Hour))
	retire1, remove1 := es2.ActiveAt, es2.ActiveAt.Add(time.Hour)
	if _, err := s.EnsureSigningKey(ctx(t), es1); err != nil {
		t.Fatalf("EnsureSigningKey: %v", err)
	}

	// 1. The first rotation retires es1 and publishes es2.
	if !rotate(t, s, es1.ID, es2, retire1, remove1) {
		t.Fatalf("RotateSigningKey(es-1 -> es-2) = false, want true")
	}
	old1 := retired(es1, retire1, remove1)
	wantKeys(t, s, base, old1, es2)

	// 2. A replica starting now finds the pending es2 current: no third key.
	got, err := s.EnsureSigningKey(ctx(t), es3)
	if err != nil {
		t.Fatalf("EnsureSigningKey after rotation: %v", err)
	}
	if d := cmp.Diff(es2, got); d != "" {
		t.Errorf("EnsureSigningKey after rotation (-want +got):\n%s", d)
	}

	// 3. A second rotation of es1 (a replica that lost the race) changes nothing.
	if rotate(t, s, es1.ID, es3, base.Add(5*time.Hour), base.Add(6*time.Hour)) {
		t.Errorf("RotateSigningKey of the retired es-1 = true, want false")
	}
	wantKeys(t, s, base, old1, es2)

	// 4. The retired key stays published until RemoveAt, then leaves.
	wantKeys(t, s, remove1.Add(-time.Nanosecond), old1, es2)
	wantKeys(t, s, remove1, es2)

	// 5. Rotations chain.
	retire2, remove2 := es3.ActiveAt, es3.ActiveAt.Add(time.Hour)
	if !rotate(t, s, es2.ID, es3, retire2, remove2) {
		t.Fatalf("RotateSigningKey(es-2 -> es-3) = false, want true")
	}
	wantKeys(t, s, base, old1, retired(es2, retire2, remove2), es3)
}

func testRotateSigningKeyConcurrent(t *testing.T, open func(t *testing.T) exchange.Store) {
	s := newStore(t, open)
	cur := key("es-cur", "ES256", base)
	if _, err := s.EnsureSigningKey(ctx(t), cur); err != nil {
		t.Fatalf("EnsureSigningKey: %v", err)
	}
	const callers = 8
	nexts := make([]exchange.StoredKey, callers)
	oks := make([]bool, callers)
	errs := make([]error, callers)
	retireAt, removeAt := base.Add(time.Hour), base.Add(3*time.Hour)
	var wg sync.WaitGroup
	for i := range callers {
		nexts[i] = key(fmt.Sprintf("es-next-%d", i), "ES256", base.Add(time.Minute+time.Duration(i)))
		wg.Go(func() {
			oks[i], errs[i] = s.RotateSigningKey(ctx(t), cur.ID, nexts[i], retireAt, removeAt)
		})
	}
	wg.Wait()
	winner := -1
	for i := range callers {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if oks[i] {
			if winner >= 0 {
				t.Fatalf("callers %d and %d both rotated", winner, i)
			}
			winner = i
		}
	}
	if winner < 0 {
		t.Fatalf("no caller rotated")
	}
	wantKeys(t, s, base, retired(cur, retireAt, removeAt), nexts[winner])
}

func testRotateSigningKeyInvalid(t *testing.T, open func(t *testing.T) exchange.Store) {
	cur := key("es-cur", "ES256", base)
	taken := retired(key("es-old", "ES256", base.Add(-time.Hour)), base, base.Add(2*time.Hour))
	good := key("es-next", "ES256", base.Add(time.Minute))
	retireAt, removeAt := base.Add(time.Hour), base.Add(2*time.Hour)
	tests := []struct {
		name            string
		currentID       string
		next            func() exchange.StoredKey
		retire, remove  time.Time
		wantErrNotFound bool
	}{
		{"unknown current key", "nope", func() exchange.StoredKey { return good }, retireAt, removeAt, true},
		{"no current id", "", func() exchange.StoredKey { return good }, retireAt, removeAt, false},
		{"next without private key", cur.ID, func() exchange.StoredKey { k := good; k.PrivateKey = nil; return k }, retireAt, removeAt, false},
		{"next already retired", cur.ID, func() exchange.StoredKey { return retired(good, retireAt, removeAt) }, retireAt, removeAt, false},
		{"next is the current key", cur.ID, func() exchange.StoredKey { k := good; k.ID = cur.ID; return k }, retireAt, removeAt, false},
		{"next of another algorithm", cur.ID, func() exchange.StoredKey { k := good; k.Algorithm = "RS256"; return k }, retireAt, removeAt, false},
		{"next id already stored", cur.ID, func() exchange.StoredKey { k := good; k.ID = taken.ID; return k }, retireAt, removeAt, false},
		{"removed before retired", cur.ID, func() exchange.StoredKey { return good }, removeAt, retireAt, false},
		{"no retire time", cur.ID, func() exchange.StoredKey { return good }, time.Time{}, removeAt, false},
		{"remove time out of range", cur.ID, func() exchange.StoredKey { return good }, retireAt, time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t, open)
			for _, k := range []exchange.StoredKey{taken, cur} {
				if _, err := s.EnsureSigningKey(ctx(t), k); err != nil {
					t.Fatalf("EnsureSigningKey(%s): %v", k.ID, err)
				}
			}
			ok, err := s.RotateSigningKey(ctx(t), tt.currentID, tt.next(), tt.retire, tt.remove)
			if err == nil {
				t.Fatalf("RotateSigningKey = %t, nil; want an error", ok)
			}
			if got := errors.Is(err, exchange.ErrNotFound); got != tt.wantErrNotFound {
				t.Errorf("RotateSigningKey error %v: errors.Is(ErrNotFound) = %t, want %t", err, got, tt.wantErrNotFound)
			}
			// Nothing changed: the current key is still unretired.
			wantKeys(t, s, base, taken, cur)
		})
	}
}
