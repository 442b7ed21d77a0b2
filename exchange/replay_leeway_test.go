package exchange_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/providers"
)

// TestReplayEntryOutlivesVerification replays a single-use token while it
// still verifies thanks to the providers' clock leeway: every replay must be
// refused, whether the leeways match (serve passes limits.leeway to both) or
// the token was first accepted past its exp (the entry then lives at least
// ReplayLeeway from now, not from exp, so it is not born expired).
func TestReplayEntryOutlivesVerification(t *testing.T) {
	for _, tc := range []struct {
		name         string
		verifyLeeway time.Duration
		replayLeeway time.Duration
		firstAt      time.Duration // relative to exp
		replaysAt    []time.Duration
	}{
		{
			name:         "replay leeway equal to the verifier's, replays within it",
			verifyLeeway: 5 * time.Minute, replayLeeway: 5 * time.Minute,
			firstAt:   -time.Minute,
			replaysAt: []time.Duration{2 * time.Minute, 2*time.Minute + time.Second, 4 * time.Minute},
		},
		{
			// An Exchanger left on the default replay leeway takes the
			// verifier's longer one (providers.Registry.Leeway).
			name:         "replay leeway unset, verifier leeway 5m, replays after exp",
			verifyLeeway: 5 * time.Minute,
			firstAt:      -time.Minute,
			replaysAt:    []time.Duration{2 * time.Minute, 4*time.Minute + 30*time.Second},
		},
		{
			name:         "first accepted past exp with the default replay leeway",
			verifyLeeway: 5 * time.Minute,
			firstAt:      2 * time.Minute,
			replaysAt:    []time.Duration{2 * time.Minute, 2*time.Minute + 20*time.Second},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			gh := newCIIssuer(t, "k1", clk.Now)
			b := newBroker(t, gh, brokerOptions{clock: clk, regOpts: providers.Options{Leeway: tc.verifyLeeway}, replayLeeway: tc.replayLeeway})
			exp := clk.Now().Add(5 * time.Minute)
			tok := gh.token(t, map[string]any{"jti": randomJTI(), "iat": clk.Now().Unix(), "nbf": clk.Now().Unix(), "exp": exp.Unix()})
			clk.Advance(exp.Add(tc.firstAt).Sub(clk.Now()))
			if rec := b.exchange(tok); rec.Code != http.StatusOK {
				t.Fatalf("first exchange at exp%+v: %d %s", tc.firstAt, rec.Code, rec.Body)
			}
			for _, at := range tc.replaysAt {
				clk.Advance(exp.Add(at).Sub(clk.Now()))
				rec := b.exchange(tok)
				if rec.Code == http.StatusOK {
					t.Errorf("replay at exp+%v of a single-use token accepted", at)
				} else if a := decode(t, rec); a.Error != "invalid_request" {
					t.Errorf("replay at exp+%v: %d %s, want invalid_request (already used)", at, rec.Code, rec.Body)
				}
			}
		})
	}
}
