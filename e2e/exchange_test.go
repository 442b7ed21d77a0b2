package e2e

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/tokenbroker/tokenbroker/providers/devissuer"
)

// ciIssuer is a GitHub Actions-shaped issuer over real HTTP that counts the
// requests it receives.
type ciIssuer struct {
	*devissuer.Issuer
	srv      *httptest.Server
	requests atomic.Int64
}

func newCIIssuer(t *testing.T) *ciIssuer {
	t.Helper()
	c := &ciIssuer{}
	var h atomic.Pointer[http.Handler]
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.requests.Add(1)
		(*h.Load()).ServeHTTP(w, r)
	}))
	t.Cleanup(c.srv.Close)
	iss, err := devissuer.New(devissuer.Options{URL: c.srv.URL, ProductionLike: true})
	if err != nil {
		t.Fatal(err)
	}
	c.Issuer = iss
	handler := iss.Handler()
	h.Store(&handler)
	return c
}

func (c *ciIssuer) mint(t *testing.T, claims map[string]any) string {
	t.Helper()
	tok, err := c.Mint(claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

const e2ePolicies = `
policies:
  - name: deploy-prod
    provider: github
    audience: %BROKER%
    subject: repo:octo-org/app:environment:prod
    claims:
      repository_owner_id: "1234567"
      ref: refs/heads/main
    grant:
      type: jwt
      audience: [deploy-api]
      scopes: [deploy:prod, deploy:read]
      ttl: 10m
      claims:
        repository: "{{ .repository }}"
  - name: artifacts-key
    provider: github
    audience: %BROKER%
    subject: repo:octo-org/app:environment:prod
    claims:
      repository_owner_id: "1234567"
    grant:
      type: api_key
      audience: [artifact-api]
      scopes: [artifacts:write]
      ttl: 10m
      claims:
        repository: "{{ .repository }}"
        run_id: "{{ .run_id }}"
`

// brokerSetup writes a config for a broker trusting issuer and returns the
// broker URL and the config path.
func brokerSetup(t *testing.T, dir string, issuer *ciIssuer) (string, string) {
	t.Helper()
	return brokerSetupStore(t, dir, issuer, "sqlite://"+filepath.Join(dir, "tokenbroker.db"), "")
}

// brokerSetupStore is brokerSetup with a given store DSN and public URL
// (empty: the listen URL). It returns the URL the broker listens on.
func brokerSetupStore(t *testing.T, dir string, issuer *ciIssuer, storeDSN, publicURL string) (string, string) {
	t.Helper()
	addr := freeAddr(t)
	brokerURL := "http://" + addr
	if publicURL == "" {
		publicURL = brokerURL
	}
	pol := strings.ReplaceAll(e2ePolicies, "%BROKER%", publicURL)
	if err := os.WriteFile(filepath.Join(dir, "policies.yaml"), []byte(pol), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := "listen: " + addr + "\n" +
		"public_url: " + publicURL + "\n" +
		"store: " + storeDSN + "\n" +
		"policies: " + filepath.Join(dir, "policies.yaml") + "\n" +
		"providers:\n  - name: github\n    preset: github-actions\n    issuer: " + issuer.URL() + "\n" +
		// The streams of these tests come from one address and one subject;
		// the rate limits have their own tests in package exchange.
		"rate_limits:\n  client_ip: {rate: -1}\n  subject: {rate: -1}\n"
	path := filepath.Join(dir, "tokenbroker.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return brokerURL, path
}

// TestExchangeEndToEnd runs the real binary against a real issuer: a token
// is exchanged, a stock go-oidc verifier accepts the minted JWT (also after
// a restart), and each kind of refusal gets its RFC error code.
func TestExchangeEndToEnd(t *testing.T) {
	dir := t.TempDir()
	ci := newCIIssuer(t)
	untrusted := newCIIssuer(t)
	brokerURL, cfgPath := brokerSetup(t, dir, ci)
	broker := start(t, brokerURL, nil, "serve", "--config", cfgPath)

	prod := map[string]any{"aud": brokerURL, "environment": "prod"}
	res := exchangeToken(t, brokerURL, ci.mint(t, prod), url.Values{"audience": {"deploy-api"}, "scope": {"deploy:read"}})
	if res.Status != http.StatusOK {
		t.Fatalf("exchange: status %d %v", res.Status, res.Body)
	}
	minted, _ := res.Body["access_token"].(string)
	if res.Body["token_type"] != "Bearer" || res.Body["scope"] != "deploy:read" ||
		res.Body["issued_token_type"] != "urn:ietf:params:oauth:token-type:jwt" || res.Body["expires_in"] != float64(600) {
		t.Errorf("exchange response = %v", res.Body)
	}
	claims := verifyStock(t, brokerURL, minted)
	if claims["sub"] != "repo:octo-org/app:environment:prod" || claims["client_id"] != "deploy-prod" ||
		claims["scope"] != "deploy:read" || claims["repository"] != "octo-org/app" || claims["iss"] != brokerURL {
		t.Errorf("minted claims = %v", claims)
	}

	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		token     string
		extra     url.Values
		wantCode  string
		wantState int
	}{
		{"wrong audience", ci.mint(t, map[string]any{"aud": "https://elsewhere.example", "environment": "prod"}), nil, "invalid_request", 400},
		{"expired token", ci.mint(t, map[string]any{"aud": brokerURL, "environment": "prod",
			"iat": time.Now().Add(-20 * time.Minute).Unix(), "nbf": time.Now().Add(-20 * time.Minute).Unix(), "exp": time.Now().Add(-10 * time.Minute).Unix()}), nil, "invalid_request", 400},
		{"unconfigured issuer", untrusted.mint(t, prod), nil, "invalid_request", 400},
		{"subject no policy allows", ci.mint(t, map[string]any{"aud": brokerURL, "environment": "staging"}), nil, "invalid_request", 400},
		{"disallowed target audience", ci.mint(t, prod), url.Values{"audience": {"billing-api"}}, "invalid_target", 400},
		{"disallowed scope", ci.mint(t, prod), url.Values{"scope": {"deploy:prod admin"}}, "invalid_scope", 400},
		{"HS256 token", signed(t, jose.HS256, []byte("public-key-as-secret-0123456789ab"), "", ci.URL(), brokerURL), nil, "invalid_request", 400},
		{"unknown kid", signed(t, jose.RS256, otherKey, "unknown-kid", ci.URL(), brokerURL), nil, "invalid_request", 400},
		{"wrong grant type", ci.mint(t, prod), url.Values{"grant_type": {"client_credentials"}}, "unsupported_grant_type", 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := exchangeToken(t, brokerURL, tc.token, tc.extra)
			if res.Status != tc.wantState || res.Body["error"] != tc.wantCode {
				t.Fatalf("status %d body %v, want %d %s", res.Status, res.Body, tc.wantState, tc.wantCode)
			}
			if _, ok := res.Body["access_token"]; ok {
				t.Fatal("a refusal carried an access_token")
			}
			if strings.Contains(res.Raw, tc.token) {
				t.Fatal("the response echoes the subject token")
			}
		})
	}
	if n := untrusted.requests.Load(); n != 0 {
		t.Errorf("the unconfigured issuer received %d requests, want 0", n)
	}

	// The same token again: single_use is the default.
	replayTok := ci.mint(t, prod)
	if res := exchangeToken(t, brokerURL, replayTok, nil); res.Status != 200 {
		t.Fatalf("first use: %d %v", res.Status, res.Body)
	}
	if res := exchangeToken(t, brokerURL, replayTok, nil); res.Status != 400 || res.Body["error"] != "invalid_request" {
		t.Fatalf("replay: %d %v", res.Status, res.Body)
	}

	// A restart keeps the signing keys: the JWT minted before still verifies
	// against the JWKS of the new process.
	broker.stop()
	start(t, brokerURL, nil, "serve", "--config", cfgPath)
	verifyStock(t, brokerURL, minted)
}

// verifyStock verifies a minted JWT exactly as a downstream API would with
// stock go-oidc: discovery at the broker's URL, its JWKS, audience deploy-api.
func verifyStock(t *testing.T, brokerURL, raw string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	provider, err := oidc.NewProvider(ctx, brokerURL)
	if err != nil {
		t.Fatalf("stock go-oidc discovery: %v", err)
	}
	tok, err := provider.Verifier(&oidc.Config{ClientID: "deploy-api"}).Verify(ctx, raw)
	if err != nil {
		t.Fatalf("stock go-oidc verify: %v", err)
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	if typ := jws.Signatures[0].Header.ExtraHeaders["typ"]; typ != "at+jwt" {
		t.Errorf("typ = %v, want at+jwt", typ)
	}
	if jws.Signatures[0].Header.KeyID == "" {
		t.Error("no kid")
	}
	return claims
}

// signed makes a GitHub-shaped token signed with an arbitrary key and alg.
func signed(t *testing.T, alg jose.SignatureAlgorithm, key any, kid, iss, aud string) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	raw, err := jwt.Signed(s).Claims(map[string]any{
		"iss": iss, "aud": aud, "sub": "repo:octo-org/app:environment:prod",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "jti": "j-" + kid + string(alg),
		"repository_owner_id": "1234567", "ref": "refs/heads/main", "environment": "prod",
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
