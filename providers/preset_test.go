package providers

import (
	"slices"
	"strings"
	"testing"
)

func TestResolveIssuer(t *testing.T) {
	tests := []struct {
		name   string
		preset string
		params map[string]string
		want   string
		errHas string
	}{
		{"github.com", PresetGitHubActions, nil, "https://token.actions.githubusercontent.com", ""},
		{"ghe.com enterprise", PresetGitHubActions, map[string]string{"enterprise": "acme"}, "https://token.actions.githubusercontent.com/acme", ""},
		{"github enterprise server", PresetGitHubActions, map[string]string{"host": "github.acme.internal"}, "https://github.acme.internal/_services/token", ""},
		{"gitlab self-managed", PresetGitLab, map[string]string{"host": "gitlab.acme.io:8443"}, "https://gitlab.acme.io:8443", ""},
		{"circleci org", PresetCircleCI, map[string]string{"org_id": "8a3a5e2c-6d3b-4b5e-9c1e-0f2f4a6b8c0d"}, "https://oidc.circleci.com/org/8a3a5e2c-6d3b-4b5e-9c1e-0f2f4a6b8c0d", ""},
		{"bitbucket workspace", PresetBitbucketPipelines, map[string]string{"workspace": "acme"}, "https://api.bitbucket.org/2.0/workspaces/acme/pipelines-config/identity/oidc", ""},
		{"azure devops org", PresetAzureDevOps, map[string]string{"org_id": "5c2d3e4f-6a7b-4c8d-9e0f-1a2b3c4d5e6f"}, "https://vstoken.dev.azure.com/5c2d3e4f-6a7b-4c8d-9e0f-1a2b3c4d5e6f", ""},
		{"terraform enterprise", PresetTerraformCloud, map[string]string{"host": "tfe.acme.io"}, "https://tfe.acme.io", ""},
		{"circleci without org_id", PresetCircleCI, nil, "", "match no issuer shape"},
		{"circleci org_id not a uuid", PresetCircleCI, map[string]string{"org_id": "acme"}, "", "must match"},
		{"host smuggling a path", PresetGitLab, map[string]string{"host": "evil.example/x"}, "", "must match"},
		{"host smuggling userinfo", PresetGitLab, map[string]string{"host": "gitlab.com@evil.example"}, "", "must match"},
		{"enterprise smuggling a path", PresetGitHubActions, map[string]string{"enterprise": "../evil"}, "", "must match"},
		{"unknown parameter", PresetGoogle, map[string]string{"project": "x"}, "", "unknown parameter"},
		{"two shapes at once", PresetGitHubActions, map[string]string{"enterprise": "acme", "host": "github.acme.io"}, "", "match no issuer shape"},
		{"generic has no issuer", PresetGeneric, nil, "", "needs an issuer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := LookupPreset(tc.preset)
			got, err := resolveIssuer(p, tc.params)
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("got %q, %v; want error containing %q", got, err, tc.errHas)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
			if _, err := validateIssuerURL(got); err != nil {
				t.Errorf("resolved issuer is invalid: %v", err)
			}
		})
	}
}

func TestConfigParams(t *testing.T) {
	_, err := New([]Config{{Name: "c", Preset: PresetCircleCI, Issuer: "https://oidc.circleci.com/org/x",
		Params: map[string]string{"org_id": "8a3a5e2c-6d3b-4b5e-9c1e-0f2f4a6b8c0d"}}}, Options{})
	if err == nil || !strings.Contains(err.Error(), "not both") {
		t.Fatalf("issuer and params: got %v", err)
	}
	r, err := New([]Config{{Name: "c", Preset: PresetCircleCI, Params: map[string]string{"org_id": "8a3a5e2c-6d3b-4b5e-9c1e-0f2f4a6b8c0d"}}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Providers()[0].Issuer; got != "https://oidc.circleci.com/org/8a3a5e2c-6d3b-4b5e-9c1e-0f2f4a6b8c0d" {
		t.Errorf("issuer %q", got)
	}
}

// TestPresetTable checks the invariants every row must keep.
func TestPresetTable(t *testing.T) {
	for _, p := range Presets() {
		t.Run(p.Name, func(t *testing.T) {
			for _, a := range p.Algorithms {
				if !slices.Contains(allowedAlgorithms, a) {
					t.Errorf("algorithm %q not allowed", a)
				}
			}
			if p.Name == PresetGeneric {
				return
			}
			if len(p.Issuers) == 0 || p.TokenSource == "" || len(p.SubjectFormats) == 0 || p.Audience == "" {
				t.Error("issuers, token source, subject formats and audience are required")
			}
			if p.Shared && len(p.TenantClaims) == 0 {
				t.Error("a shared preset needs tenant claims")
			}
			names := slices.Concat(p.TenantClaims, p.RepositoryClaims)
			for _, g := range p.Guardrails {
				if g.Name == "" || g.Allow == "" || g.Why == "" || len(g.Claims) == 0 {
					t.Errorf("guardrail %+v: name, allow key, why and claims are required", g)
				}
				for c := range g.Claims {
					names = append(names, c)
				}
			}
			for _, c := range names {
				if _, ok := p.Claims[c]; !ok {
					t.Errorf("claim %q is not among the preset's claims", c)
				}
			}
			for _, it := range p.Issuers {
				for _, param := range it.Params() {
					if _, ok := paramPatterns[param]; !ok {
						t.Errorf("template %q: parameter %q has no pattern", it.Template, param)
					}
				}
			}
		})
	}
}

func FuzzResolveIssuer(f *testing.F) {
	f.Add("host", "gitlab.acme.io")
	f.Add("org_id", "8a3a5e2c-6d3b-4b5e-9c1e-0f2f4a6b8c0d")
	f.Add("enterprise", "acme")
	f.Add("workspace", "acme")
	f.Add("host", "a.b@c/d?e#f")
	f.Fuzz(func(t *testing.T, name, value string) {
		for _, p := range Presets() {
			got, err := resolveIssuer(p, map[string]string{name: value})
			if err != nil {
				continue
			}
			// A resolved issuer is always a valid issuer URL, and the
			// parameter never changes the template's fixed parts.
			if _, err := validateIssuerURL(got); err != nil {
				t.Fatalf("%s: %s=%q gave invalid issuer %q: %v", p.Name, name, value, got, err)
			}
			if strings.ContainsAny(value, "/?#@ ") {
				t.Fatalf("%s: %s=%q was accepted", p.Name, name, value)
			}
		}
	})
}
