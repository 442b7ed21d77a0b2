package exchange_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/exchange"
	"github.com/tokenbroker/tokenbroker/providers"
)

// TestRefusedTokenDoesNotBurnJTI: refusals of every kind that carry the
// holder's jti, before or after verification, leave it usable by the
// holder; only the successful exchange burns it.
func TestRefusedTokenDoesNotBurnJTI(t *testing.T) {
	clk := newClock()
	gh := newCIIssuer(t, "k1", clk.Now)
	b := newBroker(t, gh, brokerOptions{clock: clk})
	attacker, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jti := randomJTI()
	holder := gh.token(t, map[string]any{"jti": jti})
	refusals := []struct {
		name string
		body string
		code string
	}{
		{"forged token with the holder's jti", form(signRS256(t, attacker, gh.header(nil), mustJSON(t, gh.claims(map[string]any{"jti": jti})))), exchange.CodeInvalidRequest},
		{"issuer-signed token with the holder's jti but another subject", form(gh.token(t, map[string]any{"jti": jti, "sub": "repo:octo-org/app:environment:dev"})), exchange.CodeInvalidRequest},
		{"expired token with the holder's jti", form(gh.token(t, map[string]any{"jti": jti, "iat": clk.Now().Unix() - 900, "exp": clk.Now().Unix() - 600})), exchange.CodeInvalidRequest},
		{"holder's token asking for another audience", form(holder) + "&audience=admin-api", exchange.CodeInvalidTarget},
		{"holder's token asking for another scope", form(holder) + "&scope=admin", exchange.CodeInvalidScope},
	}
	for _, r := range refusals {
		t.Run(r.name, func(t *testing.T) {
			rec := b.post("application/x-www-form-urlencoded", r.body, "")
			if a := decode(t, rec); rec.Code != http.StatusBadRequest || a.Error != r.code {
				t.Fatalf("got %d %q, want 400 %q", rec.Code, a.Error, r.code)
			}
		})
	}
	if rec := b.exchange(holder); rec.Code != http.StatusOK {
		t.Fatalf("the holder's exchange after the refusals: %d %s", rec.Code, rec.Body)
	}
	if rec := b.exchange(holder); rec.Code != http.StatusBadRequest {
		t.Fatalf("the holder's second exchange: %d %s, want a replay refusal", rec.Code, rec.Body)
	}
}

// TestReplayEntryLivesUntilExpPlusLeeway: the (iss, jti) entry outlives
// the token's exp by the leeway within which the token still verifies,
// and no longer.
func TestReplayEntryLivesUntilExpPlusLeeway(t *testing.T) {
	clk := newClock()
	gh := newCIIssuer(t, "k1", clk.Now)
	b := newBroker(t, gh, brokerOptions{clock: clk})
	jti := randomJTI()
	exp := clk.Now().Add(5 * time.Minute)
	tok := gh.token(t, map[string]any{"jti": jti, "exp": exp.Unix()})
	if rec := b.exchange(tok); rec.Code != http.StatusOK {
		t.Fatalf("exchange: %d %s", rec.Code, rec.Body)
	}
	// Past exp but within the leeway the token still verifies: the entry
	// must still refuse it.
	clk.Advance(exp.Sub(clk.Now()) + exchange.DefaultReplayLeeway - time.Second)
	n := b.audit.len()
	if rec := b.exchange(tok); rec.Code != http.StatusBadRequest {
		t.Fatalf("replay within the leeway: %d %s", rec.Code, rec.Body)
	}
	if evs := b.audit.since(n); len(evs) != 1 || !strings.Contains(evs[0].Reason, "already used") {
		t.Fatalf("replay within the leeway refused for another reason: %+v", evs)
	}
	ctx := context.Background()
	if err := b.store.Claim(ctx, gh.URL(), jti, clk.Now().Add(time.Hour)); !errors.Is(err, exchange.ErrReplay) {
		t.Fatalf("Claim at exp+leeway-1s = %v, want ErrReplay", err)
	}
	// After exp + leeway the entry has expired (and the token no longer verifies).
	clk.Advance(2 * time.Second)
	if err := b.store.Claim(ctx, gh.URL(), jti, clk.Now().Add(time.Hour)); err != nil {
		t.Fatalf("Claim at exp+leeway+1s = %v, want the expired entry taken over", err)
	}
}

// TestFloodCostsBoundedFetches floods the broker with tokens it cannot
// verify and counts the requests it sends to issuers.
func TestFloodCostsBoundedFetches(t *testing.T) {
	const n = 300
	clk := newClock()
	gh := newCIIssuer(t, "k1", clk.Now)
	b := newBroker(t, gh, brokerOptions{clock: clk}) // default cooldown
	if rec := b.exchange(gh.token(t, nil)); rec.Code != http.StatusOK {
		t.Fatalf("warm-up exchange: %d %s", rec.Code, rec.Body)
	}
	cooldown := providers.DefaultRefreshCooldown

	t.Run("random kids, sequential over 30s", func(t *testing.T) {
		before := gh.jwks.Load()
		start := clk.Now()
		for i := range n {
			tok := gh.signed(t, gh.header(map[string]any{"kid": randomJTI()}), mustJSON(t, gh.claims(nil)))
			if rec := b.exchange(tok); rec.Code != http.StatusBadRequest {
				t.Fatalf("random kid %d: %d %s", i, rec.Code, rec.Body)
			}
			if i%10 == 9 {
				clk.Advance(time.Second)
			}
		}
		windows := int64(clk.Now().Sub(start)/cooldown) + 1
		fetches := gh.jwks.Load() - before
		t.Logf("%d random-kid tokens over %s: %d JWKS fetches (cooldown %s, at most %d allowed)", n, clk.Now().Sub(start), fetches, cooldown, windows)
		if fetches > windows {
			t.Errorf("%d JWKS fetches, want at most one per %s window (%d)", fetches, cooldown, windows)
		}
	})
	t.Run("random kids, concurrent", func(t *testing.T) {
		clk.Advance(cooldown)
		before := gh.jwks.Load()
		toks := make([]string, n)
		for i := range toks {
			toks[i] = gh.signed(t, gh.header(map[string]any{"kid": randomJTI()}), mustJSON(t, gh.claims(nil)))
		}
		var wg sync.WaitGroup
		codes := make([]int, n)
		for i, tok := range toks {
			wg.Go(func() { codes[i] = b.exchange(tok).Code })
		}
		wg.Wait()
		for i, c := range codes {
			if c != http.StatusBadRequest {
				t.Fatalf("token %d: status %d", i, c)
			}
		}
		fetches := gh.jwks.Load() - before
		t.Logf("%d concurrent random-kid tokens within one window: %d JWKS fetches", n, fetches)
		if fetches > 1 {
			t.Errorf("%d JWKS fetches, want at most 1", fetches)
		}
	})
	t.Run("unknown issuers", func(t *testing.T) {
		before := b.outbound.Total()
		for i := range n {
			tok := gh.token(t, map[string]any{"iss": fmt.Sprintf("https://issuer-%d.example.com", i)})
			if rec := b.exchange(tok); rec.Code != http.StatusBadRequest {
				t.Fatalf("unknown issuer %d: %d %s", i, rec.Code, rec.Body)
			}
		}
		fetches := b.outbound.Total() - before
		t.Logf("%d tokens of unknown issuers: %d outbound requests", n, fetches)
		if fetches != 0 {
			t.Errorf("%d outbound requests, want 0", fetches)
		}
	})
}

// TestRateLimits: per client IP before anything is read, per subject after
// verification, and the in-flight cap.
func TestRateLimits(t *testing.T) {
	t.Run("per client IP", func(t *testing.T) {
		clk := newClock()
		gh := newCIIssuer(t, "k1", clk.Now)
		lim, err := exchange.NewRateLimiter(exchange.RateLimit{Rate: 1, Burst: 3, Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		b := newBroker(t, gh, brokerOptions{clock: clk, server: exchange.ServerConfig{ClientLimiter: lim}})
		send := func(ip string) *httptest.ResponseRecorder {
			return b.post("application/x-www-form-urlencoded", form("not.a.jwt"), ip+":40000")
		}
		for i := range 3 {
			if rec := send("192.0.2.1"); rec.Code != http.StatusBadRequest {
				t.Fatalf("request %d within the burst: %d", i, rec.Code)
			}
		}
		rec := send("192.0.2.1")
		wantLimited(t, rec, "1")
		if rec := send("192.0.2.2"); rec.Code != http.StatusBadRequest {
			t.Errorf("another client was limited: %d", rec.Code)
		}
		clk.Advance(time.Second)
		if rec := send("192.0.2.1"); rec.Code != http.StatusBadRequest {
			t.Errorf("after a second: %d, want the request let through", rec.Code)
		}
	})
	t.Run("per subject, after verification", func(t *testing.T) {
		clk := newClock()
		gh := newCIIssuer(t, "k1", clk.Now)
		lim, err := exchange.NewRateLimiter(exchange.RateLimit{Rate: 0.5, Burst: 2, Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		b := newBroker(t, gh, brokerOptions{clock: clk, subject: lim})
		attacker, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		// Forged tokens naming the subject do not spend its budget.
		for range 5 {
			forged := signRS256(t, attacker, gh.header(nil), mustJSON(t, gh.claims(nil)))
			if rec := b.exchange(forged); rec.Code != http.StatusBadRequest {
				t.Fatalf("forged: %d", rec.Code)
			}
		}
		for i := range 2 {
			if rec := b.exchange(gh.token(t, nil)); rec.Code != http.StatusOK {
				t.Fatalf("exchange %d within the burst: %d %s", i, rec.Code, rec.Body)
			}
		}
		held := gh.token(t, nil)
		n := b.audit.len()
		wantLimited(t, b.exchange(held), "2")
		if evs := b.audit.since(n); len(evs) != 1 || evs[0].ErrorCode != exchange.CodeRateLimited || evs[0].Subject == "" {
			t.Errorf("the limited exchange's audit event: %+v", evs)
		}
		if rec := b.exchange(gh.token(t, map[string]any{"sub": "repo:octo-org/other:environment:prod"})); rec.Code == http.StatusTooManyRequests {
			t.Error("another subject was limited")
		}
		clk.Advance(2 * time.Second)
		// The limited token's jti was not burnt.
		if rec := b.exchange(held); rec.Code != http.StatusOK {
			t.Errorf("the limited token after the wait: %d %s", rec.Code, rec.Body)
		}
	})
	t.Run("in-flight cap", func(t *testing.T) {
		gh := newCIIssuer(t, "k1", time.Now)
		b := newBroker(t, gh, brokerOptions{server: exchange.ServerConfig{MaxInFlight: 1, InFlightWait: 10 * time.Millisecond}})
		pr, pw := io.Pipe()
		req := httptest.NewRequest(http.MethodPost, "/token", pr)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		done := make(chan int)
		go func() {
			rec := httptest.NewRecorder()
			b.h.ServeHTTP(rec, req)
			done <- rec.Code
		}()
		// Once the handler reads the body it holds the only slot.
		if _, err := pw.Write([]byte("grant_type=x")); err != nil {
			t.Fatal(err)
		}
		rec := b.exchange(gh.token(t, nil))
		if a := decode(t, rec); rec.Code != http.StatusServiceUnavailable || a.Error != exchange.CodeTemporarilyUnavailable || rec.Header().Get("Retry-After") == "" {
			t.Errorf("with the cap reached: %d %q Retry-After %q", rec.Code, a.Error, rec.Header().Get("Retry-After"))
		}
		_ = pw.Close()
		if code := <-done; code != http.StatusBadRequest {
			t.Errorf("the slow request: %d", code)
		}
		if rec := b.exchange(gh.token(t, nil)); rec.Code != http.StatusOK {
			t.Errorf("after the slot was freed: %d %s", rec.Code, rec.Body)
		}
	})
}

func wantLimited(t *testing.T, rec *httptest.ResponseRecorder, retryAfter string) {
	t.Helper()
	if a := decode(t, rec); rec.Code != http.StatusTooManyRequests || a.Error != exchange.CodeTemporarilyUnavailable || a.AccessToken != "" {
		t.Errorf("got %d %q, want 429 temporarily_unavailable", rec.Code, a.Error)
	}
	if got := rec.Header().Get("Retry-After"); got != retryAfter {
		t.Errorf("Retry-After = %q, want %q", got, retryAfter)
	}
}

// TestIssuerOutageKeepsServing: while the issuer's JWKS is down, fetched
// keys keep verifying up to the maximum staleness, and the broker recovers
// when the issuer does.
func TestIssuerOutageKeepsServing(t *testing.T) {
	clk := newClock()
	gh := newCIIssuer(t, "k1", clk.Now)
	b := newBroker(t, gh, brokerOptions{clock: clk, regOpts: providers.Options{KeySetTTL: time.Hour, MaxStaleness: 3 * time.Hour}})
	if rec := b.exchange(gh.token(t, nil)); rec.Code != http.StatusOK {
		t.Fatalf("before the outage: %d %s", rec.Code, rec.Body)
	}
	gh.down.Store(true)
	steps := []struct {
		name    string
		advance time.Duration
		status  int
	}{
		{"keys past their TTL, issuer down", 2 * time.Hour, http.StatusOK},
		{"still within the maximum staleness", 30 * time.Minute, http.StatusOK},
		{"keys older than the maximum staleness", time.Hour, http.StatusServiceUnavailable},
	}
	for _, s := range steps {
		clk.Advance(s.advance)
		before := gh.jwks.Load()
		rec := b.exchange(gh.token(t, nil))
		if rec.Code != s.status {
			t.Fatalf("%s: %d %s, want %d", s.name, rec.Code, rec.Body, s.status)
		}
		if gh.jwks.Load() == before {
			t.Fatalf("%s: the broker did not try the issuer", s.name)
		}
	}
	gh.down.Store(false)
	clk.Advance(providers.DefaultRefreshCooldown)
	if rec := b.exchange(gh.token(t, nil)); rec.Code != http.StatusOK {
		t.Fatalf("after the issuer recovered: %d %s", rec.Code, rec.Body)
	}
}
