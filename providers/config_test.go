package providers

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestNewValidatesConfig(t *testing.T) {
	gh := Config{Name: "github", Preset: PresetGitHubActions}
	tests := []struct {
		name    string
		cfgs    []Config
		wantErr string // substring; "" means valid
	}{
		{"github preset", []Config{gh}, ""},
		{"generic on localhost http", []Config{{Name: "ci", Issuer: "http://localhost:9000"}}, ""},
		{"generic on IPv6 loopback", []Config{{Name: "ci", Issuer: "http://[::1]:9000/path"}}, ""},
		{"github enterprise issuer override", []Config{{Name: "ghe", Preset: PresetGitHubActions, Issuer: "https://token.actions.githubusercontent.com/acme"}}, ""},
		{"no providers", nil, "no provider configured"},
		{"empty name", []Config{{Issuer: "https://a.example"}}, "name"},
		{"name with a space", []Config{{Name: "a b", Issuer: "https://a.example"}}, `"a b"`},
		{"duplicate name", []Config{gh, {Name: "github", Issuer: "https://a.example"}}, `provider "github": name used twice`},
		{"duplicate issuer", []Config{gh, {Name: "gh2", Issuer: "https://token.actions.githubusercontent.com"}}, `provider "gh2": issuer "https://token.actions.githubusercontent.com" is already configured by provider "github"`},
		{"unknown preset", []Config{{Name: "x", Preset: "jenkins"}}, `provider "x": unknown preset "jenkins"`},
		{"generic without issuer", []Config{{Name: "x"}}, `provider "x": preset "generic" needs an issuer`},
		{"http on a public host", []Config{{Name: "x", Issuer: "http://ci.example.com"}}, `provider "x": issuer "http://ci.example.com": http is only allowed for loopback`},
		{"http on a name resolving to loopback", []Config{{Name: "x", Issuer: "http://127.0.0.1.nip.io"}}, "http is only allowed"},
		{"other scheme", []Config{{Name: "x", Issuer: "ftp://ci.example.com"}}, "scheme must be https"},
		{"relative", []Config{{Name: "x", Issuer: "/issuer"}}, "not an absolute URL"},
		{"userinfo", []Config{{Name: "x", Issuer: "https://user:pw@ci.example.com"}}, "userinfo"},
		{"query", []Config{{Name: "x", Issuer: "https://ci.example.com?tenant=1"}}, "query"},
		{"empty query", []Config{{Name: "x", Issuer: "https://ci.example.com?"}}, "query"},
		{"fragment", []Config{{Name: "x", Issuer: "https://ci.example.com#a"}}, "fragment"},
		{"HS256", []Config{{Name: "x", Issuer: "https://ci.example.com", Algorithms: []string{"HS256"}}}, `provider "x": algorithm "HS256" is not allowed`},
		{"none", []Config{{Name: "x", Issuer: "https://ci.example.com", Algorithms: []string{"RS256", "none"}}}, `algorithm "none" is not allowed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfgs, Options{})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("New accepted the config, want an error containing %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("New error = %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestOptionsDefaults(t *testing.T) {
	o := Options{}.withDefaults()
	o.Now = nil
	want := Options{
		FetchTimeout:     DefaultFetchTimeout,
		MaxResponseBytes: DefaultMaxResponseBytes,
		RefreshCooldown:  DefaultRefreshCooldown,
		MaxStaleness:     DefaultMaxStaleness,
		KeySetTTL:        DefaultKeySetTTL,
		DiscoveryTTL:     DefaultDiscoveryTTL,
		Leeway:           DefaultLeeway,
		MaxLifetime:      DefaultMaxLifetime,
		MaxTokenBytes:    DefaultMaxTokenBytes,
		CacheSize:        DefaultCacheSize,
	}
	if diff := cmp.Diff(want, o); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}

// TestOptionsNoLeeway: a negative leeway means none (limits.leeway: 0),
// while zero keeps meaning the default.
func TestOptionsNoLeeway(t *testing.T) {
	if got := (Options{Leeway: -1}).withDefaults().Leeway; got != 0 {
		t.Errorf("Leeway -1 -> %v, want 0", got)
	}
	if got := (Options{Leeway: 5 * time.Second}).withDefaults().Leeway; got != 5*time.Second {
		t.Errorf("Leeway 5s -> %v, want 5s", got)
	}
}

func TestPresets(t *testing.T) {
	gh, ok := LookupPreset(PresetGitHubActions)
	if !ok {
		t.Fatal("github-actions preset missing")
	}
	for _, c := range []string{
		"sub", "aud", "iss", "exp", "iat", "nbf", "jti", "ref", "ref_type", "ref_protected", "sha",
		"repository", "repository_id", "repository_owner", "repository_owner_id", "repository_visibility",
		"run_id", "run_number", "run_attempt", "runner_environment", "actor", "actor_id", "workflow",
		"workflow_ref", "workflow_sha", "head_ref", "base_ref", "event_name", "environment",
		"environment_node_id", "job_workflow_ref", "job_workflow_sha", "enterprise", "enterprise_id",
	} {
		if _, ok := gh.Claims[c]; !ok {
			t.Errorf("github-actions preset lacks claim %q", c)
		}
	}
	if gh.Claims["repository_owner_id"] != ClaimString || gh.Claims["exp"] != ClaimNumber {
		t.Errorf("claim types: repository_owner_id %v, exp %v", gh.Claims["repository_owner_id"], gh.Claims["exp"])
	}
	gh.Claims["sub"] = ClaimBool
	gh.TenantClaims[0] = "mutated"
	again, _ := LookupPreset(PresetGitHubActions)
	if again.Claims["sub"] != ClaimString || again.TenantClaims[0] != "repository_owner_id" {
		t.Error("editing a returned preset changed the table")
	}
	if _, ok := LookupPreset("nope"); ok {
		t.Error("LookupPreset found an unknown preset")
	}
	var names []string
	for _, p := range Presets() {
		names = append(names, p.Name)
	}
	want := []string{"github-actions", "gitlab", "circleci", "buildkite", "bitbucket-pipelines",
		"azure-devops", "google", "terraform-cloud", "generic"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("Presets names (-want +got):\n%s", diff)
	}
}

func TestProviders(t *testing.T) {
	r, err := New([]Config{
		{Name: "github", Preset: PresetGitHubActions},
		{Name: "ci", Issuer: "http://127.0.0.1:9000", Algorithms: []string{"ES256"}},
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	gh, _ := LookupPreset(PresetGitHubActions)
	want := []Provider{
		{
			Name: "github", Issuer: "https://token.actions.githubusercontent.com", Preset: "github-actions",
			Shared: true, TenantClaims: []string{"repository_owner_id", "repository_id"},
			RepositoryClaims: []string{"repository_id", "repository"},
			KnownClaims:      gh.Claims, Algorithms: []string{"RS256"},
			Guardrails: gh.Guardrails,
		},
		{Name: "ci", Issuer: "http://127.0.0.1:9000", Preset: "generic", Algorithms: []string{"ES256"}},
	}
	if diff := cmp.Diff(want, r.Providers()); diff != "" {
		t.Errorf("Providers (-want +got):\n%s", diff)
	}
}
