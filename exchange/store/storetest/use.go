package storetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenbroker/tokenbroker/exchange"
)

// useResult is what a test checks of one APIKeyUse after UseAPIKeys.
type useResult struct {
	ID        string // of the key reported, "" for none
	Used      bool
	Remaining int64
	NotFound  bool // Err is ErrNotFound
	Invalid   bool // Err is another error
}

func resultOf(u *exchange.APIKeyUse) useResult {
	return useResult{
		ID: u.Key.ID, Used: u.Used, Remaining: u.Key.Remaining,
		NotFound: errors.Is(u.Err, exchange.ErrNotFound),
		Invalid:  u.Err != nil && !errors.Is(u.Err, exchange.ErrNotFound),
	}
}

func testUseAPIKeys(t *testing.T, open func(t *testing.T) exchange.Store) {
	unknown := sha256.Sum256([]byte("unknown"))
	at := base.Add(time.Minute)
	use := func(k exchange.APIKey) *exchange.APIKeyUse { return &exchange.APIKeyUse{Hash: k.Hash, Now: at} }
	// a and b have 2 uses, c 1 use and is revoked, d 2 uses and expired at
	// the time of the uses, e is unlimited.
	a, b, c, d, e := apiKey("a", 2), apiKey("b", 2), apiKey("c", 1), apiKey("d", 2), apiKey("e", 0)
	d.ExpiresAt = at
	tests := []struct {
		name          string
		uses          func() []*exchange.APIKeyUse
		want          []useResult
		wantRemaining map[string]int64 // after the batch, by key id
	}{
		{
			"uses of one key beyond its remaining: the first ones are granted",
			func() []*exchange.APIKeyUse { return []*exchange.APIKeyUse{use(a), use(a), use(a), use(a)} },
			[]useResult{{"kid_a", true, 1, false, false}, {"kid_a", true, 0, false, false}, {"kid_a", false, 0, false, false}, {"kid_a", false, 0, false, false}},
			map[string]int64{"kid_a": 0, "kid_b": 2},
		},
		{
			"interleaved keys, each in its own order",
			func() []*exchange.APIKeyUse {
				return []*exchange.APIKeyUse{use(b), use(a), use(b), use(a), use(b)}
			},
			[]useResult{{"kid_b", true, 1, false, false}, {"kid_a", true, 1, false, false}, {"kid_b", true, 0, false, false}, {"kid_a", true, 0, false, false}, {"kid_b", false, 0, false, false}},
			map[string]int64{"kid_a": 0, "kid_b": 0},
		},
		{
			"refused, unknown and malformed uses do not fail the others",
			func() []*exchange.APIKeyUse {
				return []*exchange.APIKeyUse{
					use(c), {Hash: unknown[:], Now: at}, use(a), {Hash: a.Hash[:16], Now: at},
					use(d), {Hash: a.Hash}, use(e), use(e),
				}
			},
			[]useResult{
				{"kid_c", false, 1, false, false}, {NotFound: true}, {"kid_a", true, 1, false, false}, {Invalid: true},
				{"kid_d", false, 2, false, false}, {Invalid: true}, {"kid_e", true, 0, false, false}, {"kid_e", true, 0, false, false},
			},
			map[string]int64{"kid_a": 1, "kid_c": 1, "kid_d": 2},
		},
		{"empty batch", func() []*exchange.APIKeyUse { return nil }, nil, map[string]int64{"kid_a": 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t, open)
			if err := s.InsertAPIKeys(ctx(t), []exchange.APIKey{a, b, c, d, e}); err != nil {
				t.Fatal(err)
			}
			if ok, err := s.RevokeAPIKey(ctx(t), c.ID, base); err != nil || !ok {
				t.Fatalf("RevokeAPIKey = %t, %v", ok, err)
			}
			uses := tt.uses()
			if err := s.UseAPIKeys(ctx(t), uses); err != nil {
				t.Fatalf("UseAPIKeys: %v", err)
			}
			var got []useResult
			for _, u := range uses {
				got = append(got, resultOf(u))
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("UseAPIKeys results (-want +got):\n%s", d)
			}
			for id, want := range tt.wantRemaining {
				if k, err := s.APIKeyByID(ctx(t), id); err != nil || k.Remaining != want {
					t.Errorf("%s after the batch: remaining %d, %v; want %d", id, k.Remaining, err, want)
				}
			}
		})
	}
}

// testUseAPIKeysFailed: a batch that fails spends nothing.
func testUseAPIKeysFailed(t *testing.T, open func(t *testing.T) exchange.Store) {
	s := newStore(t, open)
	k := apiKey("k", 2)
	if err := s.InsertAPIKeys(ctx(t), []exchange.APIKey{k}); err != nil {
		t.Fatal(err)
	}
	canceled, cancel := context.WithCancel(ctx(t))
	cancel()
	uses := []*exchange.APIKeyUse{{Hash: k.Hash, Now: base.Add(time.Minute)}}
	if err := s.UseAPIKeys(canceled, uses); err == nil {
		t.Fatalf("UseAPIKeys with a canceled context: got nil error")
	}
	if got, err := s.APIKeyByID(ctx(t), k.ID); err != nil || got.Remaining != 2 {
		t.Errorf("after a failed batch: remaining %d, %v; want 2", got.Remaining, err)
	}
}

// testUseAPIKeysConcurrent runs batches at once that share two keys, in
// opposite orders (a store locking them in batch order would deadlock), and
// each use a key several times: every use of the keys is granted exactly
// once.
func testUseAPIKeysConcurrent(t *testing.T, open func(t *testing.T) exchange.Store) {
	s := newStore(t, open)
	const batches, perKey, uses = 16, 25, 300 // 400 uses per key, 300 to grant
	x, y := apiKey("x", uses), apiKey("y", uses)
	if err := s.InsertAPIKeys(ctx(t), []exchange.APIKey{x, y}); err != nil {
		t.Fatal(err)
	}
	at := base.Add(time.Minute)
	all := make([][]*exchange.APIKeyUse, batches)
	errs := make([]error, batches)
	var wg sync.WaitGroup
	for i := range batches {
		first, second := x, y
		if i%2 == 1 {
			first, second = y, x
		}
		for range perKey {
			all[i] = append(all[i], &exchange.APIKeyUse{Hash: first.Hash, Now: at}, &exchange.APIKeyUse{Hash: second.Hash, Now: at})
		}
		wg.Go(func() { errs[i] = s.UseAPIKeys(ctx(t), all[i]) })
	}
	wg.Wait()
	granted := map[string]int{}
	for i, batch := range all {
		if errs[i] != nil {
			t.Fatalf("batch %d: %v", i, errs[i])
		}
		for _, u := range batch {
			if u.Err != nil {
				t.Fatalf("batch %d: use of %s: %v", i, u.Key.ID, u.Err)
			}
			if u.Used {
				granted[u.Key.ID]++
			}
		}
	}
	want := map[string]int{x.ID: uses, y.ID: uses}
	if d := cmp.Diff(want, granted); d != "" {
		t.Errorf("uses granted by key, %d concurrent batches of %d uses (-want +got):\n%s", batches, 2*perKey, d)
	}
	for _, k := range []exchange.APIKey{x, y} {
		if got, err := s.APIKeyByID(ctx(t), k.ID); err != nil || got.Remaining != 0 {
			t.Errorf("%s after: remaining %d, %v; want 0", k.ID, got.Remaining, err)
		}
	}
}

// testUseAPIKeysConcurrentSameKey: N concurrent single-use batches on a key
// with N uses are all granted, and one more is refused.
func testUseAPIKeysConcurrentSameKey(t *testing.T, open func(t *testing.T) exchange.Store) {
	s := newStore(t, open)
	const n = 16
	k := apiKey("k", n)
	if err := s.InsertAPIKeys(ctx(t), []exchange.APIKey{k}); err != nil {
		t.Fatal(err)
	}
	uses := make([]*exchange.APIKeyUse, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		uses[i] = &exchange.APIKeyUse{Hash: k.Hash, Now: base.Add(time.Minute)}
		wg.Go(func() { errs[i] = s.UseAPIKeys(ctx(t), uses[i:i+1]) })
	}
	wg.Wait()
	for i, u := range uses {
		if errs[i] != nil || u.Err != nil || !u.Used {
			t.Errorf("use %d of %d: used=%t, %v, %v; want used", i, n, u.Used, errs[i], u.Err)
		}
	}
	last, used, err := useOne(ctx(t), s, k.Hash, base.Add(time.Minute))
	if err != nil || used || last.Remaining != 0 {
		t.Errorf("use %d: used=%t remaining=%d, %v; want refused with 0 left", n+1, used, last.Remaining, err)
	}
}

// useOne spends one use of the key of hash: UseAPIKeys of one item.
func useOne(ctx context.Context, s exchange.Store, hash []byte, now time.Time) (exchange.APIKey, bool, error) {
	u := &exchange.APIKeyUse{Hash: hash, Now: now}
	if err := s.UseAPIKeys(ctx, []*exchange.APIKeyUse{u}); err != nil {
		return exchange.APIKey{}, false, err
	}
	return u.Key, u.Used, u.Err
}
