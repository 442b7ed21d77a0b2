package exchange_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/exchange"
	"github.com/tokenbroker/tokenbroker/exchange/store/sqlite"
)

// useStore is a SQLite store that counts the batches of uses it commits,
// can fail them, and runs after, when set, between a verification's read of
// a key and its use (the window where another replica may change the key).
type useStore struct {
	exchange.Store
	batches atomic.Int64
	fail    atomic.Bool
	after   func(hash []byte)
}

func (s *useStore) APIKeyByHash(ctx context.Context, hash []byte) (exchange.APIKey, error) {
	k, err := s.Store.APIKeyByHash(ctx, hash)
	if s.after != nil {
		s.after(hash)
	}
	return k, err
}

func (s *useStore) UseAPIKeys(ctx context.Context, uses []*exchange.APIKeyUse) error {
	s.batches.Add(1)
	if s.fail.Load() {
		return errDown
	}
	return s.Store.UseAPIKeys(ctx, uses)
}

func newUseKeys(t *testing.T, now func() time.Time) (*exchange.APIKeys, *useStore) {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "tb.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	st := &useStore{Store: db}
	keys, err := exchange.NewAPIKeys(exchange.APIKeysConfig{Store: st, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = keys.Close() })
	return keys, st
}

// TestAPIKeyVerifyCodes: the verdicts and their precedence (revoked, then
// expired, then spent), for limited and unlimited keys, including a key
// changed between the verification's read and its use.
func TestAPIKeyVerifyCodes(t *testing.T) {
	tests := []struct {
		name string
		uses int64
		// prepare runs after the key is issued, with the clock and store.
		prepare func(t *testing.T, clk *clock, st *useStore, hash []byte)
		want    string
		// wantBatches is the number of use batches the verification commits.
		wantBatches int64
		wantErr     bool
	}{
		{"limited key, valid", 2, nil, exchange.KeyValid, 1, false},
		{"unlimited key is only read", 0, nil, exchange.KeyValid, 0, false},
		{"limited key spent", 1, spend, exchange.KeyUsageExceeded, 0, false},
		{"revoked before expired before spent", 1, func(t *testing.T, clk *clock, st *useStore, hash []byte) {
			spend(t, clk, st, hash)
			revoke(t, clk, st, hash)
			clk.Advance(time.Hour)
		}, exchange.KeyRevoked, 0, false},
		{"expired before spent", 1, func(t *testing.T, clk *clock, st *useStore, hash []byte) {
			spend(t, clk, st, hash)
			clk.Advance(time.Hour)
		}, exchange.KeyExpired, 0, false},
		{"unlimited key revoked", 0, revoke, exchange.KeyRevoked, 0, false},
		{"limited key revoked after the read", 2, func(t *testing.T, clk *clock, st *useStore, _ []byte) {
			st.after = func(hash []byte) { revoke(t, clk, st, hash) }
		}, exchange.KeyRevoked, 1, false},
		{"limited key spent after the read", 1, func(t *testing.T, clk *clock, st *useStore, _ []byte) {
			st.after = func(hash []byte) { spend(t, clk, st, hash) }
		}, exchange.KeyUsageExceeded, 1, false},
		{"limited key purged after the read", 1, func(t *testing.T, clk *clock, st *useStore, _ []byte) {
			st.after = func([]byte) {
				if _, err := st.PurgeAPIKeys(context.Background(), clk.Now().Add(2*time.Hour)); err != nil {
					t.Error(err)
				}
			}
		}, exchange.KeyNotFound, 1, false},
		{"store fails the use", 2, func(_ *testing.T, _ *clock, st *useStore, _ []byte) { st.fail.Store(true) }, "", 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			keys, st := newUseKeys(t, clk.Now)
			now := clk.Now()
			key, k, err := keys.Issue(t.Context(), exchange.APIKey{Policy: "p", Subject: "s", CreatedAt: now, ExpiresAt: now.Add(time.Minute), Uses: tt.uses})
			if err != nil {
				t.Fatal(err)
			}
			if tt.prepare != nil {
				tt.prepare(t, clk, st, k.Hash)
			}
			v, err := keys.Verify(t.Context(), key)
			switch {
			case tt.wantErr:
				if !errors.Is(err, errDown) {
					t.Errorf("Verify = %s, %v; want an error wrapping %v", v.Code, err, errDown)
				}
			case err != nil || v.Code != tt.want:
				t.Errorf("Verify = %s, %v; want %s", v.Code, err, tt.want)
			}
			if got := st.batches.Load(); got != tt.wantBatches {
				t.Errorf("use batches committed: %d, want %d", got, tt.wantBatches)
			}
		})
	}
}

// spend uses up the key of hash.
func spend(t *testing.T, clk *clock, st *useStore, hash []byte) {
	for {
		u := &exchange.APIKeyUse{Hash: hash, Now: clk.Now()}
		if err := st.Store.UseAPIKeys(context.Background(), []*exchange.APIKeyUse{u}); err != nil { // not counted
			t.Fatal(err)
		}
		used, err := u.Used, u.Err
		if err != nil {
			t.Fatal(err)
		}
		if !used {
			return
		}
	}
}

func revoke(t *testing.T, clk *clock, st *useStore, hash []byte) {
	if _, err := st.RevokeAPIKeyByHash(context.Background(), hash, clk.Now()); err != nil {
		t.Fatal(err)
	}
}

// TestAPIKeyVerifyConcurrentLimited: concurrent verifications of a key with
// N uses, group committed, are VALID exactly N times, each reporting the
// remaining count its own use left (each count once).
func TestAPIKeyVerifyConcurrentLimited(t *testing.T) {
	const uses, callers = 10, 40
	keys, _ := newUseKeys(t, time.Now)
	now := time.Now()
	key, _, err := keys.Issue(t.Context(), exchange.APIKey{Policy: "p", Subject: "s", CreatedAt: now, ExpiresAt: now.Add(time.Hour), Uses: uses})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu        sync.Mutex
		remaining = map[int64]int{}
		codes     = map[string]int{}
		wg        sync.WaitGroup
	)
	for range callers {
		wg.Go(func() {
			v, err := keys.Verify(t.Context(), key)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			codes[v.Code]++
			if v.Valid() {
				remaining[v.Key.Remaining]++
			}
		})
	}
	wg.Wait()
	if codes[exchange.KeyValid] != uses || codes[exchange.KeyUsageExceeded] != callers-uses {
		t.Errorf("%d verifications of a key with %d uses: %v, want %d VALID and the rest USAGE_EXCEEDED", callers, uses, codes, uses)
	}
	for r := range int64(uses) {
		if remaining[r] != 1 {
			t.Errorf("VALID verifications reporting %d remaining: %d, want 1", r, remaining[r])
		}
	}
}
