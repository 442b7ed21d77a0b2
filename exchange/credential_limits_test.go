package exchange_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenbroker/tokenbroker/exchange"
	"github.com/tokenbroker/tokenbroker/exchange/store/sqlite"
)

// TestClientLimitKeysIPv6By64 sends requests at burst 1 from several
// addresses: one IPv6 /64 is one client, as one IPv4 address is.
func TestClientLimitKeysIPv6By64(t *testing.T) {
	tests := []struct {
		name        string
		addr        func(i int) string
		wantLimited bool
	}{
		{"many addresses of one IPv6 /64", func(i int) string { return fmt.Sprintf("[2001:db8:1:2::%x]:1234", i+1) }, true},
		{"random interface ids of one IPv6 /64", func(i int) string { return fmt.Sprintf("[2001:db8:1:2:%x:ffff:%x:1]:1", i*7919, i) }, true},
		{"one IPv6 address per /64", func(i int) string { return fmt.Sprintf("[2001:db8:%x::1]:1234", i+1) }, false},
		{"one IPv4 address", func(int) string { return "192.0.2.7:1234" }, true},
		{"neighbouring IPv4 addresses", func(i int) string { return fmt.Sprintf("192.0.2.%d:1234", i+1) }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			lim, err := exchange.NewRateLimiter(exchange.RateLimit{Rate: 1, Burst: 1, TrackedKeys: 100, Now: clk.Now})
			if err != nil {
				t.Fatal(err)
			}
			gh := newCIIssuer(t, "k1", clk.Now)
			b := newBroker(t, gh, brokerOptions{clock: clk, server: exchange.ServerConfig{ClientLimiter: lim}})
			limited := 0
			for i := range 50 {
				if rec := b.post("application/x-www-form-urlencoded", "grant_type=x", tc.addr(i)); rec.Code == http.StatusTooManyRequests {
					limited++
				}
			}
			if got := limited > 0; got != tc.wantLimited {
				t.Errorf("%d of 50 requests limited at burst 1, want limited: %v", limited, tc.wantLimited)
			}
		})
	}
}

// credentialServer is the HTTP API with only the credential services: API
// keys, revocation and introspection over SQLite.
type credentialServer struct {
	h     http.Handler
	keys  *exchange.APIKeys
	audit *syncAuditor
	reg   *prometheus.Registry
	now   func() time.Time
}

func newCredentialServer(t *testing.T, sc exchange.ServerConfig, wrap func(exchange.Store) exchange.Store) *credentialServer {
	t.Helper()
	clk := newClock()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "tb.db"), sqlite.WithNow(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	var st exchange.Store = db
	if wrap != nil {
		st = wrap(db)
	}
	km, err := exchange.NewKeyManager(t.Context(), st, "ES256", nil)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := exchange.NewAPIKeys(exchange.APIKeysConfig{Store: st, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = keys.Close() })
	rv, err := exchange.NewRevoker(exchange.RevokerConfig{Issuer: brokerURL, Keys: km, Tokens: st, APIKeys: keys, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	s := &credentialServer{keys: keys, audit: &syncAuditor{}, reg: prometheus.NewRegistry(), now: clk.Now}
	sc.PublicURL, sc.Keys, sc.APIKeys, sc.Revoker, sc.Audit, sc.Registry, sc.Now = brokerURL, km, keys, rv, s.audit, s.reg, clk.Now
	s.h = exchange.NewServer(sc).Handler()
	return s
}

func (s *credentialServer) post(path, body, remote string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	ct := "application/x-www-form-urlencoded"
	if path == "/v1/keys/verify" {
		ct = "application/json"
	}
	req.Header.Set("Content-Type", ct)
	req.RemoteAddr = remote
	rec := httptest.NewRecorder()
	s.h.ServeHTTP(rec, req)
	return rec
}

// issue stores a fresh API key and returns it.
func (s *credentialServer) issue(t *testing.T) (string, exchange.APIKey) {
	t.Helper()
	now := s.now()
	key, k, err := s.keys.Issue(t.Context(), exchange.APIKey{
		Subject: "repo:octo-org/app:environment:prod", Issuer: "https://ci.test", Policy: "deploy",
		Audience: []string{"deploy-api"}, CreatedAt: now, ExpiresAt: now.Add(10 * time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	return key, k
}

// counter reads the value of a counter with the given labels.
func (s *credentialServer) counter(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := s.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

var credentialBodies = map[string]string{
	"/revoke":         "token=junk",
	"/introspect":     "token=junk",
	"/v1/keys/verify": `{"key":"tbk_junk"}`,
}

// TestCredentialEndpointsRateLimited: /revoke, /introspect and
// /v1/keys/verify share a per-client bucket at the client rate; over it
// they answer 429 with Retry-After, and POST /token keeps its own bucket.
func TestCredentialEndpointsRateLimited(t *testing.T) {
	for path, body := range credentialBodies {
		t.Run(path, func(t *testing.T) {
			clk := newClock()
			lim, err := exchange.NewRateLimiter(exchange.RateLimit{Rate: 1, Burst: 2, Now: clk.Now})
			if err != nil {
				t.Fatal(err)
			}
			s := newCredentialServer(t, exchange.ServerConfig{ClientLimiter: lim}, nil)
			for i := range 2 {
				if rec := s.post(path, body, "192.0.2.1:1"); rec.Code != http.StatusOK {
					t.Fatalf("request %d within the burst: %d %s", i+1, rec.Code, rec.Body)
				}
			}
			// Over the limit, whichever credential endpoint is called.
			rec := s.post(path, body, "192.0.2.1:2")
			if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
				t.Errorf("over the limit: %d Retry-After %q, want 429 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
			}
			for other := range credentialBodies {
				if rec := s.post(other, credentialBodies[other], "192.0.2.1:3"); rec.Code != http.StatusTooManyRequests {
					t.Errorf("%s after %s spent the bucket: %d, want 429", other, path, rec.Code)
				}
			}
			if rec := s.post(path, body, "192.0.2.2:1"); rec.Code != http.StatusOK {
				t.Errorf("another client: %d, want 200", rec.Code)
			}
			if got := s.audit.len(); got != 0 {
				t.Errorf("%d audit rows for junk and refused requests, want 0", got)
			}
			if rec := s.post("/token", "grant_type=x", "192.0.2.1:4"); rec.Code == http.StatusTooManyRequests {
				t.Errorf("POST /token from the limited client: 429, want its own bucket")
			}
		})
	}
	t.Run("refusals are counted", func(t *testing.T) {
		lim, err := exchange.NewRateLimiter(exchange.RateLimit{Rate: 1, Burst: 1, Now: newClock().Now})
		if err != nil {
			t.Fatal(err)
		}
		s := newCredentialServer(t, exchange.ServerConfig{ClientLimiter: lim}, nil)
		for range 3 {
			s.post("/revoke", "token=junk", "192.0.2.1:1")
		}
		if got := s.counter(t, "tokenbroker_revocations_total", map[string]string{"result": "limited"}); got != 2 {
			t.Errorf("revocations limited = %v, want 2", got)
		}
	})
}

// blockingStore holds API key verifications until release is closed.
type blockingStore struct {
	exchange.Store
	entered chan struct{}
	release chan struct{}
}

func (s *blockingStore) APIKeyByHash(ctx context.Context, hash []byte) (exchange.APIKey, error) {
	s.entered <- struct{}{}
	<-s.release
	return s.Store.APIKeyByHash(ctx, hash)
}

// TestCredentialEndpointsInFlightCap: with every slot taken by a slow key
// verification, /revoke, /introspect and /v1/keys/verify answer 503.
func TestCredentialEndpointsInFlightCap(t *testing.T) {
	bs := &blockingStore{entered: make(chan struct{}, 1), release: make(chan struct{})}
	s := newCredentialServer(t, exchange.ServerConfig{MaxInFlight: 1, InFlightWait: time.Millisecond},
		func(st exchange.Store) exchange.Store { bs.Store = st; return bs })
	key, _ := s.issue(t)
	done := make(chan int, 1)
	go func() { done <- s.post("/v1/keys/verify", `{"key":"`+key+`"}`, "192.0.2.1:1").Code }()
	<-bs.entered // the one slot is held
	for path, body := range credentialBodies {
		if rec := s.post(path, body, "192.0.2.2:1"); rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
			t.Errorf("%s with no free slot: %d, want 503 with Retry-After", path, rec.Code)
		}
	}
	close(bs.release)
	if code := <-done; code != http.StatusOK {
		t.Errorf("the slow verification: %d, want 200", code)
	}
	if rec := s.post("/introspect", "token=junk", "192.0.2.2:1"); rec.Code != http.StatusOK {
		t.Errorf("after the slot is freed: %d, want 200", rec.Code)
	}
}

// TestRevokeAuditsOwnCredentialsOnly: anyone may call /revoke, so only the
// revocation of a credential of this broker writes an audit row; junk,
// unknown keys and foreign JWTs are counted in a metric instead.
func TestRevokeAuditsOwnCredentialsOnly(t *testing.T) {
	s := newCredentialServer(t, exchange.ServerConfig{}, nil)
	gh := newCIIssuer(t, "k1", s.now)
	unknownKey, _ := exchange.NewAPIKey()
	for _, tok := range []string{"junk", unknownKey, gh.token(t, nil)} {
		if rec := s.post("/revoke", url.Values{"token": {tok}}.Encode(), "192.0.2.1:1"); rec.Code != http.StatusOK {
			t.Fatalf("revoke(%.12s): %d %s, want 200", tok, rec.Code, rec.Body)
		}
	}
	if got := s.audit.len(); got != 0 {
		t.Errorf("%d audit rows for tokens this broker never minted, want 0", got)
	}
	if got := s.counter(t, "tokenbroker_revocations_total", map[string]string{"result": "unknown"}); got != 3 {
		t.Errorf("revocations unknown = %v, want 3", got)
	}
	key, k := s.issue(t)
	if rec := s.post("/revoke", url.Values{"token": {key}}.Encode(), "192.0.2.1:1"); rec.Code != http.StatusOK {
		t.Fatalf("revoke own key: %d %s", rec.Code, rec.Body)
	}
	evs := s.audit.since(0)
	if len(evs) != 1 || evs[0].Action != "credential.revoke" || evs[0].CredentialID != k.ID || evs[0].Outcome != exchange.OutcomeAllowed {
		t.Errorf("audit after revoking own key = %+v, want one credential.revoke of %s", evs, k.ID)
	}
	if got := s.counter(t, "tokenbroker_revocations_total", map[string]string{"result": "revoked"}); got != 1 {
		t.Errorf("revocations revoked = %v, want 1", got)
	}
}
