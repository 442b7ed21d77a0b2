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

// claim is one Claim call and the error it must give (nil, or ErrReplay).
type claim struct {
	issuer, jti string
	until       time.Duration // relative to the real clock
	want        error
}

func testClaim(t *testing.T, open func(t *testing.T) exchange.Store) {
	const (
		gh = "https://token.actions.githubusercontent.com"
		gl = "https://gitlab.com"
	)
	tests := []struct {
		name   string
		claims []claim
	}{
		{"first succeeds, second is a replay", []claim{
			{gh, "a", time.Hour, nil},
			{gh, "a", time.Hour, exchange.ErrReplay},
			{gh, "a", 2 * time.Hour, exchange.ErrReplay},
		}},
		{"expired entry is reusable", []claim{
			{gh, "a", -time.Minute, nil},
			{gh, "a", time.Hour, nil},
			{gh, "a", time.Hour, exchange.ErrReplay},
		}},
		{"different issuers are independent", []claim{
			{gh, "a", time.Hour, nil},
			{gl, "a", time.Hour, nil},
			{gl, "a", time.Hour, exchange.ErrReplay},
		}},
		{"different jtis are independent", []claim{
			{gh, "a", time.Hour, nil},
			{gh, "b", time.Hour, nil},
			{gh, "A", time.Hour, nil},
		}},
		{"issuer and jti do not run together", []claim{
			{gh + "/x", "y", time.Hour, nil},
			{gh, "x/y", time.Hour, nil},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t, open)
			for i, c := range tt.claims {
				err := s.Claim(ctx(t), c.issuer, c.jti, time.Now().Add(c.until))
				if !errors.Is(err, c.want) || (c.want == nil && err != nil) {
					t.Errorf("claim %d Claim(%q, %q) = %v, want %v", i, c.issuer, c.jti, err, c.want)
				}
			}
		})
	}
}

func testClaimConcurrent(t *testing.T, open func(t *testing.T) exchange.Store) {
	s := newStore(t, open)
	const claimers = 16
	errs := make([]error, claimers)
	until := time.Now().Add(time.Hour)
	var wg sync.WaitGroup
	for i := range claimers {
		wg.Go(func() { errs[i] = s.Claim(ctx(t), "https://ci.example", "same", until) })
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, exchange.ErrReplay):
			t.Errorf("claimer %d: %v, want nil or ErrReplay", i, err)
		}
	}
	if won != 1 {
		t.Errorf("%d of %d concurrent claims succeeded, want exactly 1", won, claimers)
	}
}

func testClaimInvalid(t *testing.T, open func(t *testing.T) exchange.Store) {
	s := newStore(t, open)
	tests := []struct {
		name, issuer, jti string
		until             time.Time
	}{
		{"empty issuer", "", "a", base},
		{"empty jti", "https://ci.example", "", base},
		{"zero until", "https://ci.example", "a", time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Claim(ctx(t), tt.issuer, tt.jti, tt.until)
			if err == nil || errors.Is(err, exchange.ErrReplay) {
				t.Errorf("Claim = %v, want an error other than ErrReplay", err)
			}
		})
	}
}

func testClaimAll(t *testing.T, open func(t *testing.T) exchange.Store) {
	const (
		gh = "https://token.actions.githubusercontent.com"
		gl = "https://gitlab.com"
	)
	tests := []struct {
		name   string
		before []claim // claimed one by one first; each must succeed
		batch  []claim
	}{
		{"fresh pairs are claimed", nil, []claim{
			{gh, "a", time.Hour, nil},
			{gh, "b", time.Hour, nil},
			{gl, "a", time.Hour, nil},
		}},
		{"pairs claimed before are replays", []claim{
			{gh, "a", time.Hour, nil},
		}, []claim{
			{gh, "b", time.Hour, nil},
			{gh, "a", time.Hour, exchange.ErrReplay},
			{gl, "a", time.Hour, nil},
		}},
		{"expired entries are reusable", []claim{
			{gh, "a", -time.Minute, nil},
			{gh, "b", time.Hour, nil},
		}, []claim{
			{gh, "a", time.Hour, nil},
			{gh, "b", time.Hour, exchange.ErrReplay},
		}},
		{"first claim of a pair in the batch wins", nil, []claim{
			{gh, "a", time.Hour, nil},
			{gh, "b", time.Hour, nil},
			{gh, "a", 2 * time.Hour, exchange.ErrReplay},
			{gh, "a", time.Hour, exchange.ErrReplay},
		}},
		{"duplicates sorted before the first claim still lose", nil, []claim{
			{gh, "z", time.Hour, nil},
			{gh, "a", time.Hour, nil},
			{gh, "z", time.Hour, exchange.ErrReplay},
			{gh, "a", time.Hour, exchange.ErrReplay},
		}},
		{"every kind at once", []claim{
			{gh, "used", time.Hour, nil},
			{gh, "old", -time.Minute, nil},
		}, []claim{
			{gh, "used", time.Hour, exchange.ErrReplay},
			{gh, "new", time.Hour, nil},
			{gh, "old", time.Hour, nil},
			{gh, "new", time.Hour, exchange.ErrReplay},
			{gh, "old", time.Hour, exchange.ErrReplay},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t, open)
			for i, c := range tt.before {
				if err := s.Claim(ctx(t), c.issuer, c.jti, time.Now().Add(c.until)); err != nil {
					t.Fatalf("before %d Claim(%q, %q): %v", i, c.issuer, c.jti, err)
				}
			}
			batch := make([]*exchange.ReplayClaim, len(tt.batch))
			for i, c := range tt.batch {
				// A stale Err must be overwritten.
				batch[i] = &exchange.ReplayClaim{Issuer: c.issuer, JTI: c.jti, Until: time.Now().Add(c.until), Err: errors.New("stale")}
			}
			if err := s.ClaimAll(ctx(t), batch); err != nil {
				t.Fatalf("ClaimAll: %v", err)
			}
			for i, c := range tt.batch {
				if got := batch[i].Err; !errors.Is(got, c.want) {
					t.Errorf("claim %d (%q, %q): Err = %v, want %v", i, c.issuer, c.jti, got, c.want)
				}
			}
			// Whatever the batch claimed, or found claimed, is now recorded.
			for _, c := range tt.batch {
				err := s.Claim(ctx(t), c.issuer, c.jti, time.Now().Add(time.Hour))
				if !errors.Is(err, exchange.ErrReplay) {
					t.Errorf("Claim(%q, %q) after the batch = %v, want ErrReplay", c.issuer, c.jti, err)
				}
			}
		})
	}
	t.Run("empty batch", func(t *testing.T) {
		s := newStore(t, open)
		if err := s.ClaimAll(ctx(t), nil); err != nil {
			t.Errorf("ClaimAll(nil) = %v, want nil", err)
		}
	})
}

// testClaimAllConcurrent runs batches that share two pairs, listed in
// opposite orders in alternate batches (a store that locked them in batch
// order could deadlock): each shared pair has exactly one winner, and every
// pair of a single batch is claimed.
func testClaimAllConcurrent(t *testing.T, open func(t *testing.T) exchange.Store) {
	s := newStore(t, open)
	const batches, ownPairs = 16, 32
	const iss = "https://ci.example"
	until := time.Now().Add(time.Hour)
	claims := make([][]*exchange.ReplayClaim, batches)
	errs := make([]error, batches)
	var wg sync.WaitGroup
	for i := range batches {
		shared := []string{"shared-a", "shared-b"}
		if i%2 == 1 {
			shared[0], shared[1] = shared[1], shared[0]
		}
		// Own pairs between the shared ones widen the window in which a
		// batch holds one shared pair and wants the other.
		claims[i] = []*exchange.ReplayClaim{{Issuer: iss, JTI: shared[0], Until: until}}
		for j := range ownPairs {
			claims[i] = append(claims[i], &exchange.ReplayClaim{Issuer: iss, JTI: fmt.Sprintf("own-%d-%d", i, j), Until: until})
		}
		claims[i] = append(claims[i], &exchange.ReplayClaim{Issuer: iss, JTI: shared[1], Until: until})
		wg.Go(func() { errs[i] = s.ClaimAll(ctx(t), claims[i]) })
	}
	wg.Wait()
	won := map[string]int{}
	for i, err := range errs {
		if err != nil {
			t.Errorf("batch %d: ClaimAll: %v", i, err)
			continue
		}
		for _, c := range claims[i] {
			switch {
			case c.Err == nil:
				won[c.JTI]++
			case !errors.Is(c.Err, exchange.ErrReplay):
				t.Errorf("batch %d claim %q: Err = %v, want nil or ErrReplay", i, c.JTI, c.Err)
			}
		}
	}
	want := map[string]int{"shared-a": 1, "shared-b": 1}
	for i := range batches {
		for j := range ownPairs {
			want[fmt.Sprintf("own-%d-%d", i, j)] = 1
		}
	}
	if diff := cmp.Diff(want, won); diff != "" {
		t.Errorf("successful claims per jti (-want +got):\n%s", diff)
	}
}

// testClaimAllInvalid checks that one invalid claim fails the whole batch
// and claims nothing.
func testClaimAllInvalid(t *testing.T, open func(t *testing.T) exchange.Store) {
	const iss = "https://ci.example"
	tests := []struct {
		name    string
		invalid exchange.ReplayClaim
	}{
		{"empty issuer", exchange.ReplayClaim{JTI: "x", Until: base}},
		{"empty jti", exchange.ReplayClaim{Issuer: iss, Until: base}},
		{"zero until", exchange.ReplayClaim{Issuer: iss, JTI: "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t, open)
			valid := &exchange.ReplayClaim{Issuer: iss, JTI: "valid", Until: time.Now().Add(time.Hour)}
			invalid := tt.invalid
			err := s.ClaimAll(ctx(t), []*exchange.ReplayClaim{valid, &invalid})
			if err == nil || errors.Is(err, exchange.ErrReplay) {
				t.Errorf("ClaimAll = %v, want an error other than ErrReplay", err)
			}
			if err := s.Claim(ctx(t), iss, "valid", time.Now().Add(time.Hour)); err != nil {
				t.Errorf("Claim of the valid pair after the failed batch = %v, want nil (nothing claimed)", err)
			}
		})
	}
}
