package exchange_test

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/tokenbroker/tokenbroker/exchange"
)

func TestAPIKeyFormat(t *testing.T) {
	scanner := regexp.MustCompile(exchange.APIKeyPattern)
	seen := map[string]bool{}
	for range 200 {
		key, hash := exchange.NewAPIKey()
		if len(key) != exchange.APIKeyLen || !scanner.MatchString("token: "+key+"\n") {
			t.Fatalf("key %q: length %d or scanner pattern mismatch", key, len(key))
		}
		got, err := exchange.ParseAPIKey(key)
		if err != nil || string(got) != string(hash) {
			t.Fatalf("ParseAPIKey(%q) = %x, %v; want %x", key, got, err, hash)
		}
		id := exchange.APIKeyID(hash)
		if !strings.HasPrefix(id, "kid_") || len(id) != 16 || strings.Contains(key, id[4:]) {
			t.Fatalf("APIKeyID = %q", id)
		}
		if seen[key] {
			t.Fatalf("duplicate key %q", key)
		}
		seen[key] = true
	}
}

func TestParseAPIKeyRefuses(t *testing.T) {
	key, _ := exchange.NewAPIKey()
	flip := func(i int) string {
		b := []byte(key)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	tests := []struct{ name, key string }{
		{"empty", ""},
		{"prefix only", "tbk_"},
		{"wrong prefix", "tbx_" + key[4:]},
		{"one character short", key[:len(key)-1]},
		{"one character long", key + "0"},
		{"random part typo", flip(10)},
		{"checksum typo", flip(len(key) - 1)},
		{"non-base62 character", key[:10] + "-" + key[11:]},
		{"random part above 2^256", "tbk_" + strings.Repeat("Z", 43) + "000000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := exchange.ParseAPIKey(tt.key); err == nil {
				t.Errorf("ParseAPIKey(%q) = nil error, want one", tt.key)
			}
		})
	}
}

func FuzzParseAPIKey(f *testing.F) {
	key, _ := exchange.NewAPIKey()
	f.Add(key)
	f.Add("tbk_" + strings.Repeat("0", 49))
	f.Add("tbk_")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		hash, err := exchange.ParseAPIKey(s)
		if err != nil {
			return
		}
		if !exchange.LooksLikeAPIKey(s) || string(hash) != string(exchange.HashAPIKey(s)) {
			t.Fatalf("ParseAPIKey(%q) accepted a key of the wrong shape or hash", s)
		}
	})
}

func TestGroupCommitter(t *testing.T) {
	boom := errors.New("disk full")
	tests := []struct {
		name    string
		fail    bool
		wantErr error
	}{
		{"every submitter sees its commit", false, nil},
		{"every submitter sees the failure", true, boom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			committed := map[int]bool{}
			calls := 0
			g := exchange.NewGroupCommitter(func(_ context.Context, items []int) error {
				mu.Lock()
				defer mu.Unlock()
				calls++
				if tt.fail {
					return boom
				}
				for _, i := range items {
					committed[i] = true
				}
				return nil
			}, exchange.GroupCommitOptions{MaxBatch: 8})
			const n = 64
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					errs[i] = g.Submit(context.Background(), i)
					if errs[i] == nil {
						mu.Lock()
						ok := committed[i]
						mu.Unlock()
						if !ok {
							t.Errorf("Submit(%d) returned before its commit", i)
						}
					}
				})
			}
			wg.Wait()
			for i, err := range errs {
				if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
					t.Errorf("Submit(%d) = %v, want %v", i, err, tt.wantErr)
				}
			}
			if calls > n {
				t.Errorf("%d commits for %d items", calls, n)
			}
			if err := g.Close(); err != nil {
				t.Fatal(err)
			}
			if err := g.Submit(context.Background(), 0); !errors.Is(err, exchange.ErrCommitterClosed) {
				t.Errorf("Submit after Close = %v, want ErrCommitterClosed", err)
			}
		})
	}
}

func TestGroupCommitterCancelled(t *testing.T) {
	release := make(chan struct{})
	g := exchange.NewGroupCommitter(func(context.Context, []int) error { <-release; return nil }, exchange.GroupCommitOptions{})
	defer g.Close()
	defer close(release)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := g.Submit(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("Submit with a cancelled context = %v, want context.Canceled", err)
	}
}
