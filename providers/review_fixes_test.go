package providers

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
)

const (
	circleOrg = "8a3a5e2c-6d3b-4b5e-9c1e-0f2f4a6b8c0d"
	azureOrg  = "5c2d3e4f-6a7b-4c8d-9e0f-1a2b3c4d5e6f"
)

// A provider configured by issuer alone takes the preset the issuer belongs
// to; generic or another preset on such an issuer is refused.
func TestIssuerWithoutPresetAdoptsItsPreset(t *testing.T) {
	tests := []struct {
		name       string
		cfg        Config
		wantPreset string
		wantErr    string // substring; "" means valid
	}{
		{"github.com", Config{Issuer: "https://token.actions.githubusercontent.com"}, PresetGitHubActions, ""},
		{"GHE.com enterprise", Config{Issuer: "https://token.actions.githubusercontent.com/acme"}, PresetGitHubActions, ""},
		{"gitlab.com", Config{Issuer: "https://gitlab.com"}, PresetGitLab, ""},
		{"circleci org", Config{Issuer: "https://oidc.circleci.com/org/" + circleOrg}, PresetCircleCI, ""},
		{"buildkite", Config{Issuer: "https://agent.buildkite.com"}, PresetBuildkite, ""},
		{"bitbucket workspace", Config{Issuer: "https://api.bitbucket.org/2.0/workspaces/acme/pipelines-config/identity/oidc"}, PresetBitbucketPipelines, ""},
		{"azure devops org", Config{Issuer: "https://vstoken.dev.azure.com/" + azureOrg}, PresetAzureDevOps, ""},
		{"google", Config{Issuer: "https://accounts.google.com"}, PresetGoogle, ""},
		{"hcp terraform", Config{Issuer: "https://app.terraform.io"}, PresetTerraformCloud, ""},
		{"explicit matching preset", Config{Preset: PresetGitHubActions, Issuer: "https://token.actions.githubusercontent.com/acme"}, PresetGitHubActions, ""},
		{"preset on a test issuer", Config{Preset: PresetGitHubActions, Issuer: "http://127.0.0.1:9000"}, PresetGitHubActions, ""},
		{"self-managed gitlab stays generic", Config{Issuer: "https://gitlab.acme.io"}, PresetGeneric, ""},
		{"look-alike host stays generic", Config{Issuer: "https://token.actions.githubusercontent.com.evil.example"}, PresetGeneric, ""},
		{"explicit generic on github.com", Config{Preset: PresetGeneric, Issuer: "https://token.actions.githubusercontent.com"}, "", `belongs to preset "github-actions": set preset: github-actions, not generic`},
		{"explicit generic on a circleci org", Config{Preset: PresetGeneric, Issuer: "https://oidc.circleci.com/org/" + circleOrg}, "", "set preset: circleci"},
		{"another preset on google", Config{Preset: PresetBuildkite, Issuer: "https://accounts.google.com"}, "", "set preset: google, not buildkite"},
		{"host parameter naming gitlab.com", Config{Preset: PresetTerraformCloud, Params: map[string]string{"host": "gitlab.com"}}, "", `belongs to preset "gitlab"`},
		{"trailing slash", Config{Issuer: "https://token.actions.githubusercontent.com/"}, "", `on the host of preset "github-actions" but has none of its issuer shapes`},
		{"upper-case host", Config{Issuer: "https://Token.Actions.GitHubusercontent.com"}, "", "set preset: github-actions"},
		{"explicit port", Config{Issuer: "https://gitlab.com:443"}, "", "set preset: gitlab"},
		{"enterprise with a path", Config{Issuer: "https://token.actions.githubusercontent.com/acme/x"}, "", "none of its issuer shapes"},
		{"circleci org not a uuid", Config{Issuer: "https://oidc.circleci.com/org/acme"}, "", "set preset: circleci"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Name = "p"
			r, err := New([]Config{tt.cfg}, Options{})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("New accepted the config as preset %q, want an error containing %q", r.Providers()[0].Preset, tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("New error = %q, want it to contain %q", err, tt.wantErr)
			case tt.wantErr != "":
				return
			}
			got := r.Providers()[0]
			p, _ := LookupPreset(tt.wantPreset)
			want := Provider{
				Name: "p", Issuer: got.Issuer, Preset: p.Name, Shared: p.Shared,
				TenantClaims: tenantClaims(p), RepositoryClaims: p.RepositoryClaims,
				KnownClaims: p.Claims, Algorithms: p.Algorithms, Guardrails: p.Guardrails,
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Providers (-want +got):\n%s", diff)
			}
			if tt.cfg.Issuer != "" && got.Issuer != tt.cfg.Issuer {
				t.Errorf("issuer = %q, want the configured %q byte for byte", got.Issuer, tt.cfg.Issuer)
			}
		})
	}
}

func TestMatchKnownIssuerParams(t *testing.T) {
	tests := []struct {
		issuer string
		want   knownIssuer
	}{
		{"https://token.actions.githubusercontent.com", knownIssuer{preset: PresetGitHubActions, exact: true}},
		{"https://token.actions.githubusercontent.com/acme", knownIssuer{preset: PresetGitHubActions, exact: true, params: map[string]string{"enterprise": "acme"}}},
		{"https://oidc.circleci.com/org/" + circleOrg, knownIssuer{preset: PresetCircleCI, exact: true, params: map[string]string{"org_id": circleOrg}}},
		{"https://api.bitbucket.org/2.0/workspaces/acme/pipelines-config/identity/oidc", knownIssuer{preset: PresetBitbucketPipelines, exact: true, params: map[string]string{"workspace": "acme"}}},
		{"https://vstoken.dev.azure.com/" + azureOrg, knownIssuer{preset: PresetAzureDevOps, exact: true, params: map[string]string{"org_id": azureOrg}}},
		{"https://oidc.circleci.com/org/" + circleOrg + "/", knownIssuer{preset: PresetCircleCI}},
	}
	for _, tt := range tests {
		t.Run(tt.issuer, func(t *testing.T) {
			got, ok := matchKnownIssuer(tt.issuer)
			if !ok {
				t.Fatal("not recognised")
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(knownIssuer{})); diff != "" {
				t.Errorf("matchKnownIssuer (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzMatchKnownIssuer(f *testing.F) {
	f.Add("https://token.actions.githubusercontent.com/acme")
	f.Add("https://oidc.circleci.com/org/" + circleOrg)
	f.Add("https://api.bitbucket.org/2.0/workspaces/a/b/pipelines-config/identity/oidc")
	f.Add("https://gitlab.com@evil.example")
	f.Fuzz(func(t *testing.T, issuer string) {
		got, ok := matchKnownIssuer(issuer)
		if !ok || !got.exact {
			return
		}
		// An exact match rebuilds the very issuer from its preset's table.
		p, _ := LookupPreset(got.preset)
		if again, err := resolveIssuer(p, got.params); err != nil || again != issuer {
			t.Fatalf("%q matched %s with %v, which resolves to %q, %v", issuer, got.preset, got.params, again, err)
		}
	})
}

// Every preset's tenant claims are immutable ids; Google's email is not one
// (a deleted service account's email can be recreated).
func TestPresetTenantClaims(t *testing.T) {
	want := map[string][]string{
		PresetGitHubActions:      {"repository_owner_id", "repository_id"},
		PresetGitLab:             {"namespace_id", "project_id"},
		PresetCircleCI:           {"oidc.circleci.com/org-id"},
		PresetBuildkite:          {"organization_id"},
		PresetBitbucketPipelines: {"workspaceUuid"},
		PresetAzureDevOps:        {"org_id"},
		PresetGoogle:             {"sub"},
		PresetTerraformCloud:     {"terraform_organization_id"},
		PresetGeneric:            nil,
	}
	got := map[string][]string{}
	for _, p := range Presets() {
		got[p.Name] = p.TenantClaims
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tenant claims (-want +got):\n%s", diff)
	}
	google, _ := LookupPreset(PresetGoogle)
	if _, ok := google.Claims["email"]; !ok {
		t.Error("google preset no longer knows the email claim")
	}
}

func TestValidateJWKSURL(t *testing.T) {
	public := &url.URL{Scheme: "https", Host: "issuer.example"}
	loopback := &url.URL{Scheme: "http", Host: "127.0.0.1:9000"}
	tests := []struct {
		name    string
		issuer  *url.URL
		jwks    string
		want    string // origin; "" when refused
		wantErr string
	}{
		{"same host", public, "https://issuer.example/keys", "https://issuer.example", ""},
		{"another https host", public, "https://www.googleapis.com/oauth2/v3/certs", "https://www.googleapis.com", ""},
		{"loopback issuer, loopback http", loopback, "http://localhost:9001/jwks", "http://localhost:9001", ""},
		{"downgrade to http on loopback", public, "http://localhost:8080/admin/flush", "", "scheme http differs from the issuer's https"},
		{"downgrade to http on a public host", public, "http://keys.example/jwks", "", "http is only allowed for loopback"},
		{"https on loopback from a public issuer", public, "https://127.0.0.1:8443/jwks", "", "loopback host but the issuer"},
		{"https on localhost from a public issuer", public, "https://localhost/jwks", "", "loopback host"},
		{"loopback issuer, https elsewhere", loopback, "https://keys.example/jwks", "", "scheme https differs"},
		{"another scheme", public, "file:///etc/passwd", "", "not an absolute URL"},
		{"userinfo", public, "https://u:p@issuer.example/jwks", "", "jwks_uri \"https://u:p@issuer.example/jwks\" must not carry userinfo"},
		{"empty", public, "", "", "not an absolute URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := validateJWKSURL(tt.jwks, tt.issuer)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("validateJWKSURL = %v, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got.String() != tt.want {
				t.Fatalf("validateJWKSURL = %v, %v; want %s", got, err, tt.want)
			}
		})
	}
}

// tlsIssuer is an https issuer whose discovery document names jwksURI(self).
func tlsIssuer(t *testing.T, jwksURI func(self string) string) *httptest.Server {
	t.Helper()
	var srv *httptest.Server
	srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": srv.URL, "jwks_uri": jwksURI(srv.URL)})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// keyServer serves key's JWKS at /jwks and redirects /to-jwks there, and
// /away to elsewhere+"/jwks"; hits counts its requests.
func keyServer(t *testing.T, key *testKey, elsewhere func() string, hits *atomic.Int64) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		switch r.URL.Path {
		case "/jwks":
			_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{key.public()}})
		case "/to-jwks":
			http.Redirect(w, r, "/jwks", http.StatusFound)
		case "/away":
			http.Redirect(w, r, elsewhere()+"/jwks", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	})
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// The key set is fetched only from a jwks_uri on the issuer's scheme, with
// redirects bounded to the jwks_uri's origin.
func TestJWKSURIFetches(t *testing.T) {
	key := newRSAKey(t, "k1")
	tests := []struct {
		name     string
		path     string // on the key server; "" = plain http on the internal server
		wantErr  error
		wantKeys int64 // requests the key server gets
	}{
		{"https issuer, http jwks_uri on loopback", "", ErrUnavailable, 0},
		{"jwks_uri on another https host", "/jwks", nil, 1},
		{"redirect within the jwks_uri's origin", "/to-jwks", nil, 2},
		{"redirect out of the jwks_uri's origin", "/away", ErrUnavailable, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var internalHits, keyHits, otherHits atomic.Int64
			internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				internalHits.Add(1)
				http.Error(w, "internal admin", http.StatusInternalServerError)
			}))
			t.Cleanup(internal.Close)
			other := keyServer(t, key, nil, &otherHits)
			keys := keyServer(t, key, func() string { return other.URL }, &keyHits)
			iss := tlsIssuer(t, func(string) string {
				if tt.path == "" {
					return "http://localhost:" + internal.URL[strings.LastIndex(internal.URL, ":")+1:] + "/admin/flush"
				}
				return keys.URL + tt.path
			})
			clock := newFakeClock()
			r, err := New([]Config{{Name: "ci", Issuer: iss.URL}}, Options{HTTPClient: iss.Client(), Now: clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			_, err = r.Verify(context.Background(), key.sign(t, claimsAt(iss.URL, clock.Now()), nil))
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Verify error = %v, want %v", err, tt.wantErr)
			}
			if n := internalHits.Load() + otherHits.Load(); n != 0 {
				t.Errorf("the broker sent %d requests outside the jwks_uri's origin", n)
			}
			if got := keyHits.Load(); got != tt.wantKeys {
				t.Errorf("key server requests = %d, want %d", got, tt.wantKeys)
			}
		})
	}
}

// Discovery is repeated when it is DiscoveryTTL old or the key set has
// failed for KeySetTTL, de-duplicated and cooldown-bounded; while it fails
// the old keys keep serving.
func TestRediscovery(t *testing.T) {
	key := newRSAKey(t, "k1")
	type step struct {
		advance       time.Duration
		set           func(ti *testIssuer)
		wantErr       error
		wantDiscovery int64 // discovery requests so far
	}
	move := func(ti *testIssuer) { ti.jwksMoved = true }
	down := func(ti *testIssuer) { ti.discoveryCode = http.StatusServiceUnavailable }
	up := func(ti *testIssuer) { ti.discoveryCode = 0 }
	const ttl = 3 * time.Hour
	tests := []struct {
		name  string
		steps []step
	}{
		{"fresh discovery is reused", []step{
			{advance: ttl - time.Second, wantDiscovery: 1},
		}},
		{"moved jwks_uri followed after DiscoveryTTL", []step{
			{set: move, advance: ttl, wantDiscovery: 2},
			{advance: DefaultRefreshCooldown, wantDiscovery: 2},
		}},
		{"moved jwks_uri followed once the key set fails for KeySetTTL", []step{
			{set: move, advance: DefaultKeySetTTL, wantDiscovery: 1}, // refetch fails, stale keys serve
			{advance: DefaultKeySetTTL - time.Second, wantDiscovery: 1},
			{advance: time.Second, wantDiscovery: 2},
		}},
		{"failed rediscovery keeps the old keys, retried after the cooldown", []step{
			{set: down, advance: ttl, wantDiscovery: 2},
			{advance: DefaultRefreshCooldown - time.Second, wantDiscovery: 2},
			{advance: time.Second, wantDiscovery: 3},
			{set: up, advance: DefaultRefreshCooldown, wantDiscovery: 4},
			{advance: DefaultRefreshCooldown, wantDiscovery: 4},
		}},
		{"moved jwks_uri down: old keys serve until MaxStaleness", []step{
			{set: func(ti *testIssuer) { ti.jwksMoved, ti.jwksCode = true, http.StatusInternalServerError }, advance: ttl, wantDiscovery: 2},
			{advance: DefaultMaxStaleness - ttl - time.Second, wantDiscovery: 3},
			{advance: 2 * time.Second, wantErr: ErrUnavailable, wantDiscovery: 3},
		}},
		{"issuer turned development-only is dropped", []step{
			{set: func(ti *testIssuer) { ti.dev = true }, advance: ttl, wantErr: ErrDevIssuer, wantDiscovery: 2},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ti := newTestIssuer(t, key)
			clock := newFakeClock()
			r := newTestRegistry(t, ti, clock, Options{DiscoveryTTL: ttl})
			warm(t, r)
			for i, s := range tt.steps {
				if s.set != nil {
					ti.set(s.set)
				}
				clock.Advance(s.advance)
				// Concurrent tokens share one rediscovery.
				var wg sync.WaitGroup
				errs := make([]error, 8)
				for j := range errs {
					wg.Go(func() {
						_, errs[j] = r.Verify(context.Background(), key.sign(t, claimsAt(ti.URL(), clock.Now()), nil))
					})
				}
				wg.Wait()
				for _, err := range errs {
					if !errors.Is(err, s.wantErr) || (s.wantErr == nil && err != nil) {
						t.Fatalf("step %d: Verify error = %v, want %v", i+1, err, s.wantErr)
					}
				}
				if got := ti.discovery.Load(); got != s.wantDiscovery {
					t.Errorf("step %d: discovery requests = %d, want %d", i+1, got, s.wantDiscovery)
				}
			}
		})
	}
}

// An unchanged jwks_uri keeps the key set, its cached keys included.
func TestRediscoveryKeepsUnchangedKeySet(t *testing.T) {
	key := newRSAKey(t, "k1")
	ti := newTestIssuer(t, key)
	clock := newFakeClock()
	r := newTestRegistry(t, ti, clock, Options{DiscoveryTTL: 30 * time.Minute})
	warm(t, r)
	clock.Advance(31 * time.Minute)
	if _, err := r.Verify(context.Background(), key.sign(t, claimsAt(ti.URL(), clock.Now()), nil)); err != nil {
		t.Fatal(err)
	}
	want := map[string]IssuerStats{"ci": {DiscoveryFetches: 2, JWKSFetches: 1}}
	if diff := cmp.Diff(want, r.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}
