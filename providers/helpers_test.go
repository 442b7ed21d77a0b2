package providers

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// testKey is a signing key of a test issuer.
type testKey struct {
	kid  string
	alg  jose.SignatureAlgorithm
	priv any
}

// newRSAKey and newECKey return fresh per-test keys.
func newRSAKey(t *testing.T, kid string) *testKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &testKey{kid: kid, alg: jose.RS256, priv: k}
}

func newECKey(t *testing.T, kid string) *testKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &testKey{kid: kid, alg: jose.ES256, priv: k}
}

// public returns the key's public JWK.
func (k *testKey) public() jose.JSONWebKey {
	jwk := jose.JSONWebKey{Key: k.priv, KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"}
	return jwk.Public()
}

// sign signs payload (a claims map or raw bytes) with the key; opts may
// add headers.
func (k *testKey) sign(t *testing.T, payload any, opts *jose.SignerOptions) string {
	t.Helper()
	if opts == nil {
		opts = &jose.SignerOptions{}
	}
	opts = opts.WithType("JWT")
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.kid}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return signRaw(t, signer, payload)
}

// signRaw signs payload with signer and serialises it compactly.
func signRaw(t *testing.T, signer jose.Signer, payload any) string {
	t.Helper()
	b, ok := payload.([]byte)
	if !ok {
		var err error
		if b, err = json.Marshal(payload); err != nil {
			t.Fatal(err)
		}
	}
	jws, err := signer.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// testIssuer is an httptest OIDC issuer serving discovery and a JWKS, with
// knobs for misbehaviour and counters of the requests it gets.
type testIssuer struct {
	srv       *httptest.Server
	discovery atomic.Int64
	jwks      atomic.Int64

	mu             sync.Mutex
	keys           []*testKey
	discoveryIss   string // the issuer the discovery document claims; "" = URL
	dev            bool   // add the development-only marker
	discoveryCode  int    // non-zero: discovery answers with this status
	jwksCode       int    // non-zero: JWKS answers with this status
	jwksPadding    int    // bytes of padding added to the JWKS document
	discoveryRedir string // non-empty: discovery redirects here
	jwksMoved      bool   // the key set moved: /jwks answers 404, discovery names /moved/jwks
}

// newTestIssuer starts a test issuer publishing keys.
func newTestIssuer(t *testing.T, keys ...*testKey) *testIssuer {
	t.Helper()
	ti := &testIssuer{keys: keys}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", ti.serveDiscovery)
	mux.HandleFunc("GET /moved/.well-known/openid-configuration", ti.serveDiscoveryDoc)
	mux.HandleFunc("GET /jwks", ti.serveJWKS)
	mux.HandleFunc("GET /moved/jwks", ti.serveJWKS)
	ti.srv = httptest.NewServer(mux)
	t.Cleanup(ti.srv.Close)
	return ti
}

// URL is the issuer URL.
func (ti *testIssuer) URL() string { return ti.srv.URL }

// set changes the issuer's knobs under its lock.
func (ti *testIssuer) set(f func(ti *testIssuer)) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	f(ti)
}

func (ti *testIssuer) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	ti.mu.Lock()
	redir := ti.discoveryRedir
	ti.mu.Unlock()
	if redir != "" {
		ti.discovery.Add(1)
		http.Redirect(w, r, redir, http.StatusFound)
		return
	}
	ti.serveDiscoveryDoc(w, r)
}

func (ti *testIssuer) serveDiscoveryDoc(w http.ResponseWriter, _ *http.Request) {
	ti.discovery.Add(1)
	ti.mu.Lock()
	defer ti.mu.Unlock()
	if ti.discoveryCode != 0 {
		http.Error(w, "down", ti.discoveryCode)
		return
	}
	iss := ti.discoveryIss
	if iss == "" {
		iss = ti.srv.URL
	}
	jwksURI := ti.srv.URL + "/jwks"
	if ti.jwksMoved {
		jwksURI = ti.srv.URL + "/moved/jwks"
	}
	doc := map[string]any{
		"issuer":                                iss,
		"jwks_uri":                              jwksURI,
		"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
	}
	if ti.dev {
		doc["tokenbroker_development_only"] = true
	}
	_ = json.NewEncoder(w).Encode(doc)
}

func (ti *testIssuer) serveJWKS(w http.ResponseWriter, r *http.Request) {
	ti.jwks.Add(1)
	ti.mu.Lock()
	defer ti.mu.Unlock()
	if ti.jwksCode != 0 {
		http.Error(w, "down", ti.jwksCode)
		return
	}
	if moved := r.URL.Path == "/moved/jwks"; moved != ti.jwksMoved {
		http.NotFound(w, r)
		return
	}
	set := struct {
		Keys    []jose.JSONWebKey `json:"keys"`
		Padding string            `json:"padding,omitempty"`
	}{}
	for _, k := range ti.keys {
		set.Keys = append(set.Keys, k.public())
	}
	set.Padding = string(make([]byte, ti.jwksPadding))
	_ = json.NewEncoder(w).Encode(set)
}

// fakeClock is an injected clock that tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_750_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// claimsAt returns valid GitHub-shaped claims for iss issued at now.
func claimsAt(iss string, now time.Time) map[string]any {
	return map[string]any{
		"iss":                 iss,
		"sub":                 "repo:octo-org/app:ref:refs/heads/main",
		"aud":                 "https://broker.example.com",
		"iat":                 now.Unix(),
		"nbf":                 now.Unix(),
		"exp":                 now.Add(5 * time.Minute).Unix(),
		"jti":                 "jti-1",
		"repository":          "octo-org/app",
		"repository_owner_id": "1234567",
	}
}

// with returns a copy of m with the changes applied; a nil value deletes.
func with(m map[string]any, changes map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	for k, v := range changes {
		if v == nil {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out
}

// newTestRegistry returns a registry with one generic provider "ci" for ti.
func newTestRegistry(t *testing.T, ti *testIssuer, clock *fakeClock, opts Options) *Registry {
	t.Helper()
	opts.Now = clock.Now
	r, err := New([]Config{{Name: "ci", Issuer: ti.URL(), Algorithms: []string{"RS256", "ES256"}}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
