package exchange_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenbroker/tokenbroker/exchange"
	"github.com/tokenbroker/tokenbroker/exchange/store/sqlite"
	"github.com/tokenbroker/tokenbroker/policy"
	"github.com/tokenbroker/tokenbroker/providers"
)

// The audience CI tokens must carry, the broker's public URL.
const brokerURL = "https://broker.test"

// clock is a settable test clock shared by the issuer, the registry, the
// exchanger and the store.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now().Truncate(time.Second)} }

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// ciIssuer is an OIDC issuer over HTTP with one RSA key, serving discovery
// and JWKS and counting requests. Unlike devissuer, it signs any header and
// any payload bytes, so hostile tokens carry real signatures.
type ciIssuer struct {
	srv   *httptest.Server
	key   *rsa.PrivateKey
	kid   string
	now   func() time.Time
	jwks  atomic.Int64 // JWKS requests served
	disco atomic.Int64 // discovery requests served
	down  atomic.Bool  // JWKS answers 503 while set
}

func newCIIssuer(t testing.TB, kid string, now func() time.Time) *ciIssuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	i := &ciIssuer{key: key, kid: kid, now: now}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		i.disco.Add(1)
		writeJSONDoc(w, map[string]any{
			"issuer":                                i.URL(),
			"jwks_uri":                              i.URL() + "/keys",
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, _ *http.Request) {
		i.jwks.Add(1)
		if i.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		pub := jose.JSONWebKey{Key: &key.PublicKey, KeyID: kid, Algorithm: "RS256", Use: "sig"}
		writeJSONDoc(w, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub}})
	})
	i.srv = httptest.NewServer(mux)
	t.Cleanup(i.srv.Close)
	return i
}

func writeJSONDoc(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// URL is the issuer, the iss of its tokens.
func (i *ciIssuer) URL() string { return i.srv.URL }

// claims returns a valid claim set for the deploy policy, changed by over:
// a nil value removes the claim.
func (i *ciIssuer) claims(over map[string]any) map[string]any {
	now := i.now().Unix()
	c := map[string]any{
		"iss": i.URL(), "sub": "repo:octo-org/app:environment:prod", "aud": brokerURL,
		"iat": now, "nbf": now, "exp": now + 300, "jti": randomJTI(),
		"repository_owner_id": "1234567", "repository": "octo-org/app",
	}
	for k, v := range over {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// token signs a valid token, with claims changed by over.
func (i *ciIssuer) token(t testing.TB, over map[string]any) string {
	t.Helper()
	return signRS256(t, i.key, map[string]any{"alg": "RS256", "typ": "JWT", "kid": i.kid}, mustJSON(t, i.claims(over)))
}

// signed signs payload under header with the issuer's key.
func (i *ciIssuer) signed(t testing.TB, header map[string]any, payload []byte) string {
	t.Helper()
	return signRS256(t, i.key, header, payload)
}

// header is the issuer's usual header with extra parameters.
func (i *ciIssuer) header(extra map[string]any) map[string]any {
	h := map[string]any{"alg": "RS256", "typ": "JWT", "kid": i.kid}
	for k, v := range extra {
		h[k] = v
	}
	return h
}

// signRS256 builds a compact JWS by hand (RFC 7515 §5.1), so the header can
// carry anything, signed with RSASSA-PKCS1-v1_5 SHA-256.
func signRS256(t testing.TB, key *rsa.PrivateKey, header map[string]any, payload []byte) string {
	t.Helper()
	input := b64(mustJSON(t, header)) + "." + b64(payload)
	digest := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + b64(sig)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func randomJTI() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return b64(b[:])
}

// countingTransport counts every outbound request the registry makes, by host.
type countingTransport struct {
	mu    sync.Mutex
	hosts map[string]int
	total int
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.total++
	if c.hosts == nil {
		c.hosts = map[string]int{}
	}
	c.hosts[r.URL.Host]++
	c.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

func (c *countingTransport) Total() int { c.mu.Lock(); defer c.mu.Unlock(); return c.total }

// syncAuditor keeps audit events for assertions; safe for concurrent use.
type syncAuditor struct {
	mu     sync.Mutex
	events []exchange.AuditEvent
}

func (a *syncAuditor) Record(ev exchange.AuditEvent) {
	a.mu.Lock()
	a.events = append(a.events, ev)
	a.mu.Unlock()
}

func (a *syncAuditor) since(n int) []exchange.AuditEvent {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]exchange.AuditEvent(nil), a.events[n:]...)
}

func (a *syncAuditor) len() int { a.mu.Lock(); defer a.mu.Unlock(); return len(a.events) }

// brokerOptions changes the broker a test builds.
type brokerOptions struct {
	clock     *clock
	providers []providers.Config // extra providers
	regOpts   providers.Options
	server    exchange.ServerConfig // limits only
	subject   *exchange.RateLimiter
	// replayLeeway is the Exchanger's ReplayLeeway (zero: its default).
	replayLeeway time.Duration
}

// broker is the real broker in-process: providers.Registry, a policy set
// loaded from YAML, a SQLite store and exchange.NewServer.
type broker struct {
	h        http.Handler
	reg      *providers.Registry
	store    *sqlite.Store
	audit    *syncAuditor
	outbound *countingTransport
	issuer   *ciIssuer
}

// securityPolicy allows the issuer's prod deploy, single use; the pinned
// tenant claim is required on a shared issuer (github preset).
const securityPolicy = `
policies:
  - name: deploy-prod
    provider: github
    audience: https://broker.test
    subject: repo:octo-org/app:environment:prod
    claims:
      repository_owner_id: "1234567"
    grant:
      audience: [deploy-api]
      scopes: [deploy:prod]
      ttl: 10m
`

func newBroker(t testing.TB, iss *ciIssuer, o brokerOptions) *broker {
	t.Helper()
	if o.clock == nil {
		o.clock = newClock()
	}
	out := &countingTransport{}
	ropts := o.regOpts
	ropts.HTTPClient = &http.Client{Transport: out}
	ropts.Now = o.clock.Now
	cfgs := append([]providers.Config{{Name: "github", Preset: providers.PresetGitHubActions, Issuer: iss.URL()}}, o.providers...)
	reg, err := providers.New(cfgs, ropts)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	polFile := filepath.Join(dir, "policies.yaml")
	if err := os.WriteFile(polFile, []byte(securityPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	var issuers []policy.Issuer
	for _, p := range reg.Providers() {
		issuers = append(issuers, policy.Issuer{Name: p.Name, URL: p.Issuer, TenantClaims: p.TenantClaims})
	}
	set, err := policy.LoadPath(polFile, policy.LoadOptions{Issuers: issuers})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "tb.db"), sqlite.WithNow(o.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	keys, err := exchange.NewKeyManager(ctx, st, "ES256", nil)
	if err != nil {
		t.Fatal(err)
	}
	x, err := exchange.NewExchanger(exchange.Config{
		Issuer: brokerURL, Verifier: reg, Policies: set, Replay: st, Signer: keys,
		Now: o.clock.Now, SubjectLimiter: o.subject, ReplayLeeway: o.replayLeeway,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = x.Close() })
	audit := &syncAuditor{}
	sc := o.server
	sc.PublicURL, sc.Exchanger, sc.Keys, sc.Audit, sc.Registry, sc.Now = brokerURL, x, keys, audit, prometheus.NewRegistry(), o.clock.Now
	srv := exchange.NewServer(sc)
	return &broker{h: srv.Handler(), reg: reg, store: st, audit: audit, outbound: out, issuer: iss}
}

// form is a valid exchange request for tok.
func form(tok string) string {
	return "grant_type=" + exchange.GrantTypeTokenExchange +
		"&subject_token_type=" + exchange.TokenTypeIDToken +
		"&subject_token=" + url.QueryEscape(tok)
}

// post sends body to POST /token from the given client address.
func (b *broker) post(ctype, body, remote string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(body))
	req.Header.Set("Content-Type", ctype)
	if remote != "" {
		req.RemoteAddr = remote
	}
	rec := httptest.NewRecorder()
	b.h.ServeHTTP(rec, req)
	return rec
}

// exchange posts a form exchange of tok.
func (b *broker) exchange(tok string) *httptest.ResponseRecorder {
	return b.post("application/x-www-form-urlencoded", form(tok), "")
}

// answer is a decoded /token response.
type answer struct {
	Error       string `json:"error"`
	AccessToken string `json:"access_token"`
}

func decode(t testing.TB, rec *httptest.ResponseRecorder) answer {
	t.Helper()
	var a answer
	if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil {
		t.Fatalf("body is not JSON: %q", rec.Body)
	}
	return a
}
