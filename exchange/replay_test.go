package exchange_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenbroker/tokenbroker/exchange"
	"github.com/tokenbroker/tokenbroker/exchange/store/sqlite"
)

// failingClaims is a store whose replay batches fail.
type failingClaims struct {
	exchange.Store
}

var errClaimsDown = errors.New("replay cache down")

func (failingClaims) ClaimAll(context.Context, []*exchange.ReplayClaim) error {
	return errClaimsDown
}

// exchangeCode runs one exchange and returns the error code and description
// ("" on success).
func exchangeCode(t *testing.T, x *exchange.Exchanger, req *exchange.Request) string {
	t.Helper()
	_, _, err := x.Exchange(context.Background(), req)
	if err == nil {
		return ""
	}
	var e *exchange.Error
	if !errors.As(err, &e) {
		t.Fatalf("Exchange error %v is not an *exchange.Error", err)
	}
	return e.Code + ": " + e.Description
}

// replayRefusal is what exchangeCode gives for a replayed token.
const replayRefusal = exchange.CodeInvalidRequest + ": subject_token already used"

// TestExchangeSingleUseConcurrent exchanges one token from many goroutines
// at once, next to fresh tokens: the claims are committed in groups, and the
// shared token still wins exactly once.
func TestExchangeSingleUseConcurrent(t *testing.T) {
	x, iss, _ := newTestExchanger(t, "true")
	const racers = 24
	shared := benchRequest(t, iss)
	fresh := make([]*exchange.Request, racers)
	for i := range fresh {
		fresh[i] = benchRequest(t, iss)
	}
	sharedCodes := make([]string, racers)
	freshCodes := make([]string, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() { sharedCodes[i] = exchangeCode(t, x, shared) })
		wg.Go(func() { freshCodes[i] = exchangeCode(t, x, fresh[i]) })
	}
	wg.Wait()
	got := map[string]int{}
	for _, c := range sharedCodes {
		got[c]++
	}
	want := map[string]int{"": 1, replayRefusal: racers - 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("codes of the shared token's exchanges (-want +got):\n%s", diff)
	}
	for i, c := range freshCodes {
		if c != "" {
			t.Errorf("fresh token %d: code %q, want success", i, c)
		}
	}
	for i, req := range fresh[:3] {
		if c := exchangeCode(t, x, req); c != replayRefusal {
			t.Errorf("fresh token %d exchanged again: %q, want %q", i, c, replayRefusal)
		}
	}
}

// TestExchangeReplayUnavailable checks that a failed replay batch, and an
// exchange after Close, are 503 temporarily_unavailable, never a success.
func TestExchangeReplayUnavailable(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T) (*exchange.Exchanger, *exchange.Request)
	}{
		{"replay batch fails", func(t *testing.T) (*exchange.Exchanger, *exchange.Request) {
			st, err := sqlite.Open(context.Background(), sqlite.Memory)
			if err != nil {
				t.Fatal(err)
			}
			x, iss, _ := newTestExchangerOn(t, "true", failingClaims{st})
			return x, benchRequest(t, iss)
		}},
		{"exchanger closed", func(t *testing.T) (*exchange.Exchanger, *exchange.Request) {
			x, iss, _ := newTestExchanger(t, "true")
			if err := x.Close(); err != nil {
				t.Fatal(err)
			}
			return x, benchRequest(t, iss)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, req := tt.setup(t)
			_, _, err := x.Exchange(context.Background(), req)
			var e *exchange.Error
			if !errors.As(err, &e) || e.Code != exchange.CodeTemporarilyUnavailable || e.RetryAfter <= 0 {
				t.Fatalf("Exchange = %v, want %s with a Retry-After", err, exchange.CodeTemporarilyUnavailable)
			}
		})
	}
}
