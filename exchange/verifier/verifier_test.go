package verifier

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"
)

// fakeBroker serves discovery, JWKS and /v1/keys/verify like the broker,
// signing with a per-test ES256 key.
type fakeBroker struct {
	srv     *httptest.Server
	key     *ecdsa.PrivateKey
	kid     string
	mu      sync.Mutex
	keys    map[string]keyVerifyResponse // API key -> answer
	verifyN atomic.Int64
	noKeys  bool // answer 404 on /v1/keys/verify
	// discoveries counts discovery requests; while down is set they get
	// 503; a non-nil gate holds each one until it is closed.
	discoveries atomic.Int64
	down        atomic.Bool
	gate        chan struct{}
}

func newFakeBroker(t *testing.T) *fakeBroker {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b := &fakeBroker{key: key, kid: "k1", keys: map[string]keyVerifyResponse{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		b.discoveries.Add(1)
		if b.gate != nil {
			<-b.gate
		}
		if b.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": b.srv.URL, "jwks_uri": b.srv.URL + "/.well-known/jwks.json",
			"id_token_signing_alg_values_supported": []string{"ES256"},
		})
	})
	mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: b.kid, Algorithm: "ES256", Use: "sig"}}})
	})
	mux.HandleFunc("POST /v1/keys/verify", func(w http.ResponseWriter, r *http.Request) {
		if b.noKeys {
			http.NotFound(w, r)
			return
		}
		b.verifyN.Add(1)
		var req struct {
			Key string `json:"key"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, "bad", 400)
			return
		}
		b.mu.Lock()
		res, ok := b.keys[req.Key]
		b.mu.Unlock()
		if !ok {
			res = keyVerifyResponse{Valid: false, Code: KeyNotFound}
		}
		_ = json.NewEncoder(w).Encode(res)
	})
	b.srv = httptest.NewServer(mux)
	t.Cleanup(b.srv.Close)
	return b
}

func (b *fakeBroker) setKey(key string, res keyVerifyResponse) {
	b.mu.Lock()
	b.keys[key] = res
	b.mu.Unlock()
}

// mint signs claims over the broker's defaults with header typ.
func (b *fakeBroker) mint(t *testing.T, typ string, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithHeader("kid", b.kid)
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: b.key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c := map[string]any{
		"iss": b.srv.URL, "sub": "repo:octo-org/app:environment:prod", "aud": []string{"deploy-api"},
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(), "jti": "jti-1",
		"scope": "deploy:read deploy:prod", "client_id": "deploy-prod",
		"src": map[string]any{"iss": "https://token.actions.githubusercontent.com", "repository": "octo-org/app"},
	}
	for k, v := range claims {
		c[k] = v
	}
	raw, err := jwt.Signed(s).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func newVerifier(t *testing.T, b *fakeBroker, mod func(*Config)) *Verifier {
	t.Helper()
	cfg := Config{Issuer: b.srv.URL, Audience: "deploy-api"}
	if mod != nil {
		mod(&cfg)
	}
	v, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerifyJWT(t *testing.T) {
	b := newFakeBroker(t)
	other := newFakeBroker(t)
	v := newVerifier(t, b, nil)
	past := time.Now().Add(-time.Hour)
	tests := []struct {
		name     string
		token    string
		wantDesc string // "" = accepted
	}{
		{"valid", b.mint(t, "at+jwt", nil), ""},
		{"media type form of typ", b.mint(t, "application/at+jwt", nil), ""},
		{"ID token typ", b.mint(t, "JWT", nil), "not an access token"},
		{"no typ", b.mint(t, "", nil), "not an access token"},
		{"other audience", b.mint(t, "at+jwt", map[string]any{"aud": []string{"billing-api"}}), "the credential is invalid"},
		{"expired", b.mint(t, "at+jwt", map[string]any{"iat": past.Unix(), "nbf": past.Unix(), "exp": past.Add(time.Minute).Unix()}), "the credential expired"},
		{"other issuer", b.mint(t, "at+jwt", map[string]any{"iss": "https://evil.example"}), "the credential is invalid"},
		{"signed by another key", other.mint(t, "at+jwt", map[string]any{"iss": b.srv.URL}), "the credential is invalid"},
		{"garbage", "not.a.jwt", "malformed token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := v.VerifyJWT(t.Context(), tc.token)
			if tc.wantDesc == "" {
				if err != nil {
					t.Fatal(err)
				}
				want := &Identity{Kind: KindJWT, ID: "jti-1", Subject: "repo:octo-org/app:environment:prod", Audience: []string{"deploy-api"},
					Scopes: []string{"deploy:read", "deploy:prod"}, Policy: "deploy-prod", Repository: "octo-org/app"}
				got := *id
				got.Source, got.Claims, got.ExpiresAt = nil, nil, time.Time{}
				if diff := cmp.Diff(want, &got); diff != "" {
					t.Errorf("identity (-want +got):\n%s", diff)
				}
				return
			}
			var ite *InvalidTokenError
			if !errors.As(err, &ite) || !errors.Is(err, ErrInvalidToken) || ite.Description != tc.wantDesc {
				t.Fatalf("err = %v, want invalid token %q", err, tc.wantDesc)
			}
		})
	}
}

func TestVerifyJWTBrokerDown(t *testing.T) {
	b := newFakeBroker(t)
	tok := b.mint(t, "at+jwt", nil)
	v := newVerifier(t, b, nil)
	b.srv.Close()
	if _, err := v.VerifyJWT(t.Context(), tok); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
}

func validKey(expires time.Time, remaining *int) keyVerifyResponse {
	return keyVerifyResponse{Valid: true, Code: KeyValid, KeyID: "key-1", Subject: "repo:octo-org/app:environment:prod", Policy: "deploy-keys",
		Audience: []string{"deploy-api"}, Scopes: []string{"deploy:read"}, Metadata: map[string]string{"repository": "octo-org/app"},
		ExpiresAt: expires, Remaining: remaining}
}

func TestVerifyAPIKey(t *testing.T) {
	now := time.Now()
	three := 3
	tests := []struct {
		name     string
		answer   keyVerifyResponse
		wantDesc string
	}{
		{"valid", validKey(now.Add(time.Hour), nil), ""},
		{"revoked", keyVerifyResponse{Code: KeyRevoked}, "the credential was revoked"},
		{"expired", keyVerifyResponse{Code: KeyExpired}, "the credential expired"},
		{"usage exceeded", keyVerifyResponse{Code: KeyUsageExceeded}, "the credential has no uses left"},
		{"for another API", func() keyVerifyResponse {
			r := validKey(now.Add(time.Hour), &three)
			r.Audience = []string{"billing-api"}
			return r
		}(), "the credential is not for this API"},
		{"valid but past expires_at", validKey(now.Add(-time.Second), nil), "the credential expired"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newFakeBroker(t)
			b.setKey("tbk_key", tc.answer)
			v := newVerifier(t, b, nil)
			id, err := v.VerifyAPIKey(t.Context(), "tbk_key")
			if tc.wantDesc == "" {
				if err != nil {
					t.Fatal(err)
				}
				if id.Kind != KindAPIKey || id.Repository != "octo-org/app" || id.Policy != "deploy-keys" || !id.HasScope("deploy:read") {
					t.Errorf("identity = %+v", id)
				}
				return
			}
			var ite *InvalidTokenError
			if !errors.As(err, &ite) || ite.Description != tc.wantDesc {
				t.Fatalf("err = %v, want %q", err, tc.wantDesc)
			}
		})
	}
	if _, err := newVerifier(t, newFakeBroker(t), nil).VerifyAPIKey(t.Context(), "tbk_unknown"); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("unknown key: %v", err)
	}
}

func TestAPIKeyCache(t *testing.T) {
	two := 2
	start := time.Now()
	tests := []struct {
		name      string
		answer    keyVerifyResponse
		cacheTTL  time.Duration
		advance   time.Duration // between the two checks
		wantCalls int64
	}{
		{"cached while fresh", validKey(start.Add(time.Hour), nil), 0, time.Second, 1},
		{"never past the key's expiry", validKey(start.Add(5*time.Second), nil), time.Minute, 6 * time.Second, 2},
		{"keys with remaining uses are not cached", validKey(start.Add(time.Hour), &two), 0, 0, 2},
		{"cache disabled", validKey(start.Add(time.Hour), nil), -1, 0, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newFakeBroker(t)
			b.setKey("tbk_k", tc.answer)
			now := start
			v := newVerifier(t, b, func(c *Config) { c.KeyCacheTTL = tc.cacheTTL; c.Now = func() time.Time { return now } })
			if _, err := v.VerifyAPIKey(t.Context(), "tbk_k"); err != nil {
				t.Fatal(err)
			}
			now = now.Add(tc.advance)
			_, _ = v.VerifyAPIKey(t.Context(), "tbk_k")
			if got := b.verifyN.Load(); got != tc.wantCalls {
				t.Errorf("%d calls to /v1/keys/verify, want %d", got, tc.wantCalls)
			}
		})
	}
}

func TestVerifyEndpointMissing(t *testing.T) {
	b := newFakeBroker(t)
	b.noKeys = true
	if _, err := newVerifier(t, b, nil).VerifyAPIKey(t.Context(), "tbk_x"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no audience":                            {Issuer: "https://broker.example"},
		"issuer not a URL":                       {Issuer: "broker.example", Audience: "a"},
		"plain http issuer off loopback":         {Issuer: "http://broker.example.com", Audience: "a"},
		"plain http key verify URL off loopback": {Issuer: "https://broker.example.com", Audience: "a", KeyVerifyURL: "http://keys.example.com/v1/keys/verify"},
		"key verify URL not a URL":               {Issuer: "https://broker.example.com", Audience: "a", KeyVerifyURL: "/v1/keys/verify"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestNewAcceptsBrokerURL(t *testing.T) {
	for name, cfg := range map[string]Config{
		"https":                                {Issuer: "https://broker.example.com", Audience: "a"},
		"http on 127.0.0.1":                    {Issuer: "http://127.0.0.1:8080", Audience: "a"},
		"http on ::1":                          {Issuer: "http://[::1]:8080", Audience: "a"},
		"http on localhost":                    {Issuer: "http://localhost:8080", Audience: "a"},
		"http off loopback, InsecureAllowHTTP": {Issuer: "http://broker.internal", Audience: "a", KeyVerifyURL: "http://keys.internal/verify", InsecureAllowHTTP: true},
	} {
		if _, err := New(cfg); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzParseKeyVerify(f *testing.F) {
	f.Add([]byte(`{"valid":true,"code":"VALID","key_id":"k","audience":["a"],"scopes":["s"],"expires_at":"2030-01-01T00:00:00Z","remaining":2}`))
	f.Add([]byte(`{"valid":false,"code":"REVOKED"}`))
	f.Add([]byte(`{"valid":true,"code":"REVOKED"}`))
	f.Add([]byte(`{} {}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		res, err := parseKeyVerify(raw)
		if err != nil {
			return
		}
		if res.Valid != (res.Code == KeyValid) {
			t.Fatalf("inconsistent answer accepted: %+v", res)
		}
		if res.Remaining != nil && *res.Remaining < 0 {
			t.Fatal("negative remaining accepted")
		}
	})
}

func FuzzCheckTyp(f *testing.F) {
	f.Add("eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCJ9.e30.sig")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, raw string) {
		if err := checkTyp(raw); err != nil && !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("error %v is not an invalid token", err)
		}
	})
}
