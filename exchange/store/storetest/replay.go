package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

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
