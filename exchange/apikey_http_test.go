package exchange_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenbroker/tokenbroker/exchange"
	"github.com/tokenbroker/tokenbroker/exchange/store/sqlite"
	"github.com/tokenbroker/tokenbroker/providers/devissuer"
)

const keyPolicies = `
policies:
  - name: deploy
    provider: github
    audience: https://broker.test
    subject: repo:octo-org/app:environment:prod
    single_use: false
    claims:
      repository_owner_id: "1234567"
    grant:
      audience: [deploy-api]
      scopes: [deploy:prod]
      ttl: 10m
  - name: artifacts
    provider: github
    audience: https://broker.test
    subject: repo:octo-org/app:environment:prod
    single_use: false
    claims:
      repository_owner_id: "1234567"
    grant:
      type: api_key
      audience: [artifact-api]
      scopes: [artifacts:write]
      ttl: 10m
      uses: %USES%
      claims:
        repository: "{{ .repository }}"
`

// flakyStore is a store whose API key and revocation calls fail while down
// is set, as a lost database does.
type flakyStore struct {
	exchange.Store
	down atomic.Bool
	// forbid, when set, fails the test on any API key access.
	forbid testing.TB
}

var errDown = errors.New("connection refused")

func (s *flakyStore) check() error {
	if s.forbid != nil {
		s.forbid.Errorf("store accessed")
	}
	if s.down.Load() {
		return errDown
	}
	return nil
}

func (s *flakyStore) InsertAPIKeys(ctx context.Context, keys []exchange.APIKey) error {
	if err := s.check(); err != nil {
		return err
	}
	return s.Store.InsertAPIKeys(ctx, keys)
}

func (s *flakyStore) UseAPIKeys(ctx context.Context, uses []*exchange.APIKeyUse) error {
	if err := s.check(); err != nil {
		return err
	}
	return s.Store.UseAPIKeys(ctx, uses)
}

func (s *flakyStore) APIKeyByHash(ctx context.Context, hash []byte) (exchange.APIKey, error) {
	if err := s.check(); err != nil {
		return exchange.APIKey{}, err
	}
	return s.Store.APIKeyByHash(ctx, hash)
}

func (s *flakyStore) TokenRevoked(ctx context.Context, jti string) (bool, error) {
	if err := s.check(); err != nil {
		return false, err
	}
	return s.Store.TokenRevoked(ctx, jti)
}

// keyBroker is an in-process broker with API keys: a real issuer over HTTP,
// real policies, a SQLite store (behind flakyStore) and the HTTP API.
type keyBroker struct {
	url      string
	issuer   *devissuer.Issuer
	store    *flakyStore
	keys     *exchange.APIKeys
	exchange *exchange.Exchanger
}

func newKeyBroker(tb testing.TB, uses string) *keyBroker {
	tb.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(tb.TempDir(), "tb.db"))
	if err != nil {
		tb.Fatal(err)
	}
	return newKeyBrokerUses(tb, db, uses)
}

// newKeyBrokerOn is newKeyBroker on db, with keys of unlimited uses.
func newKeyBrokerOn(tb testing.TB, db exchange.Store) *keyBroker {
	return newKeyBrokerUses(tb, db, "0")
}

func newKeyBrokerUses(tb testing.TB, db exchange.Store, uses string) *keyBroker {
	tb.Helper()
	tb.Cleanup(func() { _ = db.Close() })
	iss, reg, set := newTestIssuer(tb, strings.ReplaceAll(keyPolicies, "%USES%", uses))
	ctx := context.Background()
	st := &flakyStore{Store: db}
	km, err := exchange.NewKeyManager(ctx, st, "ES256", nil)
	if err != nil {
		tb.Fatal(err)
	}
	keys, err := exchange.NewAPIKeys(exchange.APIKeysConfig{Store: st})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = keys.Close() })
	x, err := exchange.NewExchanger(exchange.Config{Issuer: "https://broker.test", Verifier: reg, Policies: set, Replay: st, Signer: km, APIKeys: keys})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = x.Close() })
	rv, err := exchange.NewRevoker(exchange.RevokerConfig{Issuer: "https://broker.test", Keys: km, Tokens: st, APIKeys: keys})
	if err != nil {
		tb.Fatal(err)
	}
	api := httptest.NewServer(exchange.NewServer(exchange.ServerConfig{
		PublicURL: "https://broker.test", Exchanger: x, Keys: km, APIKeys: keys, Revoker: rv,
	}).Handler())
	tb.Cleanup(api.Close)
	return &keyBroker{url: api.URL, issuer: iss, store: st, keys: keys, exchange: x}
}

// token exchanges a fresh CI token for a credential of tokenType.
func (b *keyBroker) token(tb testing.TB, tokenType string) (int, map[string]any) {
	tb.Helper()
	ci, err := b.issuer.Mint(map[string]any{"aud": "https://broker.test", "environment": "prod", "repository": "octo-org/app"})
	if err != nil {
		tb.Fatal(err)
	}
	form := url.Values{
		"grant_type":           {exchange.GrantTypeTokenExchange},
		"subject_token":        {ci},
		"subject_token_type":   {exchange.TokenTypeIDToken},
		"requested_token_type": {tokenType},
	}
	return b.post(tb, "/token", "application/x-www-form-urlencoded", form.Encode())
}

func (b *keyBroker) post(tb testing.TB, path, contentType, body string) (int, map[string]any) {
	tb.Helper()
	resp, err := http.Post(b.url+path, contentType, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &m); err != nil {
			tb.Fatalf("POST %s: %d %q: %v", path, resp.StatusCode, raw, err)
		}
	}
	return resp.StatusCode, m
}

func (b *keyBroker) verify(tb testing.TB, key string) (int, map[string]any) {
	body, _ := json.Marshal(map[string]string{"key": key})
	return b.post(tb, "/v1/keys/verify", "application/json", string(body))
}

func (b *keyBroker) form(tb testing.TB, path, token string) (int, map[string]any) {
	return b.post(tb, path, "application/x-www-form-urlencoded", url.Values{"token": {token}}.Encode())
}

func TestAPIKeyGrantAndVerify(t *testing.T) {
	b := newKeyBroker(t, "2")
	st, res := b.token(t, exchange.TokenTypeAPIKey)
	if st != http.StatusOK {
		t.Fatalf("exchange: %d %v", st, res)
	}
	key, _ := res["access_token"].(string)
	want := map[string]any{"access_token": key, "issued_token_type": exchange.TokenTypeAPIKey, "token_type": "Bearer", "expires_in": 600.0, "scope": "artifacts:write"}
	if d := cmp.Diff(want, res); d != "" {
		t.Errorf("exchange response (-want +got):\n%s", d)
	}
	hash, err := exchange.ParseAPIKey(key)
	if err != nil {
		t.Fatalf("minted key %q: %v", key, err)
	}
	valid := func(remaining float64) map[string]any {
		k, err := b.store.Store.APIKeyByHash(context.Background(), hash)
		if err != nil {
			t.Fatal(err)
		}
		return map[string]any{
			"valid": true, "code": "VALID", "key_id": exchange.APIKeyID(hash),
			"subject": "repo:octo-org/app:environment:prod", "policy": "artifacts",
			"audience": []any{"artifact-api"}, "scopes": []any{"artifacts:write"},
			"metadata": map[string]any{"repository": "octo-org/app"}, "remaining": remaining,
			"expires_at": k.ExpiresAt.UTC().Format(time.RFC3339Nano),
		}
	}
	steps := []struct {
		name string
		key  string
		want map[string]any
	}{
		{"first use", key, valid(1)},
		{"second use", key, valid(0)},
		{"uses spent", key, map[string]any{"valid": false, "code": "USAGE_EXCEEDED"}},
		{"unknown well-formed key", mustNewKey(), map[string]any{"valid": false, "code": "NOT_FOUND"}},
	}
	for _, s := range steps {
		st, got := b.verify(t, s.key)
		if st != http.StatusOK {
			t.Fatalf("%s: status %d", s.name, st)
		}
		if d := cmp.Diff(s.want, got); d != "" {
			t.Errorf("%s (-want +got):\n%s", s.name, d)
		}
	}
}

func mustNewKey() string { k, _ := exchange.NewAPIKey(); return k }

func TestAPIKeyVerifyConcurrentUses(t *testing.T) {
	b := newKeyBroker(t, "5")
	_, res := b.token(t, exchange.TokenTypeAPIKey)
	key := res["access_token"].(string)
	var valid atomic.Int32
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, got := b.verify(t, key); got["valid"] == true {
				valid.Add(1)
			}
		})
	}
	wg.Wait()
	if valid.Load() != 5 {
		t.Errorf("20 concurrent verifies of a key with 5 uses: %d VALID, want 5", valid.Load())
	}
}

func TestAPIKeyVerifyMalformedSkipsStore(t *testing.T) {
	b := newKeyBroker(t, "0")
	b.store.forbid = t
	good := mustNewKey()
	// A changed last character breaks the checksum ("x" unless it was one).
	last := "x"
	if strings.HasSuffix(good, last) {
		last = "y"
	}
	for _, key := range []string{"", "nope", good[:len(good)-1] + last, strings.ToUpper(good), "tbk_" + strings.Repeat("0", 49)} {
		st, got := b.verify(t, key)
		if st != http.StatusOK || got["code"] != "NOT_FOUND" || got["valid"] != false || len(got) != 2 {
			t.Errorf("verify(%q) = %d %v, want 200 NOT_FOUND only", key, st, got)
		}
	}
	b.store.forbid = nil
	for _, body := range []string{`{}`, `not json`, `{"key": 5}`} {
		if st, got := b.post(t, "/v1/keys/verify", "application/json", body); st != http.StatusBadRequest || got["error"] != "invalid_request" {
			t.Errorf("verify body %q = %d %v, want 400 invalid_request", body, st, got)
		}
	}
}

func TestAPIKeyStoreDownThenBack(t *testing.T) {
	b := newKeyBroker(t, "0")
	_, res := b.token(t, exchange.TokenTypeAPIKey)
	key := res["access_token"].(string)
	b.store.down.Store(true)
	if st, got := b.token(t, exchange.TokenTypeAPIKey); st != http.StatusServiceUnavailable || got["error"] != "temporarily_unavailable" {
		t.Errorf("grant while the store is down = %d %v, want 503 temporarily_unavailable", st, got)
	}
	if st, got := b.verify(t, key); st != http.StatusServiceUnavailable || got["error"] != "temporarily_unavailable" {
		t.Errorf("verify while the store is down = %d %v, want 503 temporarily_unavailable", st, got)
	}
	b.store.down.Store(false)
	if st, got := b.verify(t, key); st != http.StatusOK || got["code"] != "VALID" {
		t.Errorf("verify after the store is back = %d %v, want VALID", st, got)
	}
	if st, got := b.token(t, exchange.TokenTypeAPIKey); st != http.StatusOK {
		t.Errorf("grant after the store is back = %d %v", st, got)
	}
}

func TestRevokeAndIntrospect(t *testing.T) {
	b := newKeyBroker(t, "0")
	credential := func(tokenType string) string {
		st, res := b.token(t, tokenType)
		if st != http.StatusOK {
			t.Fatalf("exchange %s: %d %v", tokenType, st, res)
		}
		return res["access_token"].(string)
	}
	tests := []struct {
		name, tokenType string
		wantType        string
	}{
		{"api key", exchange.TokenTypeAPIKey, "api_key"},
		{"jwt", exchange.TokenTypeJWT, "jwt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := credential(tt.tokenType)
			st, in := b.form(t, "/introspect", tok)
			if st != http.StatusOK || in["active"] != true || in["credential_type"] != tt.wantType ||
				in["client_id"] == "" || in["sub"] != "repo:octo-org/app:environment:prod" || in["iss"] != "https://broker.test" {
				t.Fatalf("introspect before revoke = %d %v", st, in)
			}
			if st, _ := b.form(t, "/revoke", tok); st != http.StatusOK {
				t.Fatalf("revoke = %d", st)
			}
			if st, in := b.form(t, "/introspect", tok); st != http.StatusOK || cmp.Diff(map[string]any{"active": false}, in) != "" {
				t.Errorf("introspect after revoke = %d %v, want {active:false}", st, in)
			}
			if st, _ := b.form(t, "/revoke", tok); st != http.StatusOK {
				t.Errorf("second revoke = %d, want 200", st)
			}
		})
	}
	t.Run("revoked key verifies REVOKED", func(t *testing.T) {
		tok := credential(exchange.TokenTypeAPIKey)
		b.form(t, "/revoke", tok)
		if _, got := b.verify(t, tok); got["code"] != "REVOKED" {
			t.Errorf("verify = %v, want REVOKED", got)
		}
	})
	t.Run("foreign and unknown tokens", func(t *testing.T) {
		ci, _ := b.issuer.Mint(map[string]any{"aud": "https://broker.test"})
		for _, tok := range []string{ci, mustNewKey(), "garbage"} {
			if st, _ := b.form(t, "/revoke", tok); st != http.StatusOK {
				t.Errorf("revoke(%.20s) = %d, want 200", tok, st)
			}
			if st, in := b.form(t, "/introspect", tok); st != http.StatusOK || in["active"] != false || len(in) != 1 {
				t.Errorf("introspect(%.20s) = %d %v, want {active:false}", tok, st, in)
			}
		}
	})
	t.Run("bad requests", func(t *testing.T) {
		for _, c := range []struct{ ct, body string }{
			{"application/x-www-form-urlencoded", ""},
			{"application/json", `{"token":"x"}`},
			{"application/x-www-form-urlencoded", "token=a&token=b"},
		} {
			if st, got := b.post(t, "/revoke", c.ct, c.body); st != http.StatusBadRequest || got["error"] != "invalid_request" {
				t.Errorf("revoke %s %q = %d %v, want 400 invalid_request", c.ct, c.body, st, got)
			}
		}
	})
}

func TestAPIKeyRefusedByJWTOnlyPolicy(t *testing.T) {
	b := newKeyBroker(t, "0")
	// The artifacts policy is the only api_key grant: asking it for its
	// audience as a JWT is refused by the policy's type.
	ci, _ := b.issuer.Mint(map[string]any{"aud": "https://broker.test", "environment": "prod"})
	form := url.Values{
		"grant_type": {exchange.GrantTypeTokenExchange}, "subject_token": {ci},
		"subject_token_type": {exchange.TokenTypeIDToken}, "audience": {"artifact-api"},
	}
	if st, got := b.post(t, "/token", "application/x-www-form-urlencoded", form.Encode()); st != http.StatusBadRequest {
		t.Errorf("JWT for an api_key-only audience = %d %v, want 400", st, got)
	}
}
