// Package integration_test exchanges tokens from issuers that mimic each CI
// provider preset, through the example policies in examples/.
package integration_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/tokenbroker/tokenbroker/exchange"
	"github.com/tokenbroker/tokenbroker/exchange/store/sqlite"
	"github.com/tokenbroker/tokenbroker/policy"
	"github.com/tokenbroker/tokenbroker/providers"
	"github.com/tokenbroker/tokenbroker/providers/devissuer"
)

// presetCase ties a preset to its example folder: the issuer its examples
// name, and the path of the httptest issuer that mimics that URL's shape.
type presetCase struct {
	preset string
	issuer string // as in examples/<preset>/policies.yaml
	path   string // the same shape below the httptest server
}

var presetCases = []presetCase{
	{providers.PresetGitHubActions, "https://token.actions.githubusercontent.com", ""},
	{providers.PresetGitLab, "https://gitlab.com", ""},
	{providers.PresetCircleCI, "https://oidc.circleci.com/org/8a3a5e2c-6d3b-4b5e-9c1e-0f2f4a6b8c0d", "/org/8a3a5e2c-6d3b-4b5e-9c1e-0f2f4a6b8c0d"},
	{providers.PresetBuildkite, "https://agent.buildkite.com", ""},
	{providers.PresetBitbucketPipelines, "https://api.bitbucket.org/2.0/workspaces/acme/pipelines-config/identity/oidc", "/2.0/workspaces/acme/pipelines-config/identity/oidc"},
	{providers.PresetAzureDevOps, "https://vstoken.dev.azure.com/5c2d3e4f-6a7b-4c8d-9e0f-1a2b3c4d5e6f", "/5c2d3e4f-6a7b-4c8d-9e0f-1a2b3c4d5e6f"},
	{providers.PresetGoogle, "https://accounts.google.com", ""},
	{providers.PresetTerraformCloud, "https://app.terraform.io", ""},
	{providers.PresetGeneric, "https://ci.example.com", "/ci"},
}

// exampleTests is the policy test-case format (examples/*/policies_test.yaml).
type exampleTests struct {
	Tests []struct {
		Name    string         `yaml:"name"`
		Claims  map[string]any `yaml:"claims"`
		Request struct {
			Audience  []string `yaml:"audience"`
			Scope     []string `yaml:"scope"`
			TokenType string   `yaml:"token_type"`
		} `yaml:"request"`
		Expect string `yaml:"expect"`
	} `yaml:"tests"`
}

// policyIssuers describes the registry's providers to the policy loader, as
// `serve` does.
func policyIssuers(reg *providers.Registry) []policy.Issuer {
	var out []policy.Issuer
	for _, p := range reg.Providers() {
		var known []string
		for c := range p.KnownClaims {
			known = append(known, c)
		}
		var guardrails []policy.IssuerGuardrail
		for _, g := range p.Guardrails {
			guardrails = append(guardrails, policy.IssuerGuardrail{Name: g.QualifiedName(p.Preset), Claims: g.Claims, Allow: g.Allow, Why: g.Why})
		}
		out = append(out, policy.Issuer{Name: p.Name, URL: p.Issuer, TenantClaims: p.TenantClaims,
			KnownClaims: known, RepositoryClaims: p.RepositoryClaims, Guardrails: guardrails})
	}
	return out
}

// TestPresetGuardrailAllowKeysInSchema: the policy schema's allow enum
// lists every preset guardrail's allow key, so editors accept the opt-out.
func TestPresetGuardrailAllowKeysInSchema(t *testing.T) {
	var s struct {
		Defs map[string]struct {
			Properties map[string]struct {
				Items struct {
					Enum []string `json:"enum"`
				} `json:"items"`
			} `json:"properties"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(policy.Schema(), &s); err != nil {
		t.Fatal(err)
	}
	enum := s.Defs["Policy"].Properties["allow"].Items.Enum
	for _, p := range providers.Presets() {
		for _, g := range p.Guardrails {
			if !slices.Contains(enum, g.Allow) {
				t.Errorf("preset %s guardrail %s: allow key %q is not in the schema's allow enum %q", p.Name, g.Name, g.Allow, enum)
			}
		}
	}
}

// mimic starts an httptest issuer with the preset's URL shape and signing
// algorithm, and a registry configured with the preset.
func mimic(t *testing.T, pc presetCase) (*devissuer.Issuer, *providers.Registry) {
	t.Helper()
	p, ok := providers.LookupPreset(pc.preset)
	if !ok {
		t.Fatalf("no preset %q", pc.preset)
	}
	srv := httptest.NewServer(nil)
	t.Cleanup(srv.Close)
	iss, err := devissuer.New(devissuer.Options{URL: srv.URL + pc.path, Algorithm: p.Algorithms[0], ProductionLike: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = iss.Handler()
	reg, err := providers.New([]providers.Config{{Name: pc.preset, Preset: pc.preset, Issuer: iss.URL()}}, providers.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return iss, reg
}

// localPolicies writes the example's policies with the real issuer replaced
// by the mimic's, and loads them.
func localPolicies(t *testing.T, pc presetCase, localIssuer string, reg *providers.Registry) *policy.Set {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("..", "..", "examples", pc.preset, "policies.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "policies.yaml")
	if err := os.WriteFile(file, []byte(strings.ReplaceAll(string(src), pc.issuer, localIssuer)), 0o600); err != nil {
		t.Fatal(err)
	}
	set, err := policy.LoadPath(file, policy.LoadOptions{Issuers: policyIssuers(reg)})
	if err != nil {
		t.Fatalf("example policies do not load: %v", err)
	}
	return set
}

// TestPresetExchanges runs every example test case of every preset as a real
// exchange: a token signed by an issuer that mimics the provider (URL shape,
// claims, algorithm), verified by the preset-based registry, authorized by
// the example policies and minted by the Exchanger.
func TestPresetExchanges(t *testing.T) {
	for _, pc := range presetCases {
		t.Run(pc.preset, func(t *testing.T) {
			iss, reg := mimic(t, pc)
			set := localPolicies(t, pc, iss.URL(), reg)
			ctx := context.Background()
			st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "tb.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = st.Close() })
			keys, err := exchange.NewKeyManager(ctx, st, "ES256", nil)
			if err != nil {
				t.Fatal(err)
			}
			x, err := exchange.NewExchanger(exchange.Config{Issuer: "https://broker.example.com", Verifier: reg, Policies: set, Replay: st, Signer: keys})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = x.Close() })
			raw, err := os.ReadFile(filepath.Join("..", "..", "examples", pc.preset, "policies_test.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			var cases exampleTests
			if err := yaml.Unmarshal(raw, &cases); err != nil {
				t.Fatal(err)
			}
			if len(cases.Tests) < 2 {
				t.Fatalf("examples/%s/policies_test.yaml has %d cases; want an allow and a deny at least", pc.preset, len(cases.Tests))
			}
			for _, tc := range cases.Tests {
				t.Run(tc.Name, func(t *testing.T) {
					claims := tc.Claims
					if claims["iss"] != pc.issuer {
						t.Fatalf("iss %v, want the example issuer %s", claims["iss"], pc.issuer)
					}
					claims["iss"] = iss.URL()
					tok, err := iss.MintClaims(claims)
					if err != nil {
						t.Fatal(err)
					}
					req := &exchange.Request{
						GrantType:        exchange.GrantTypeTokenExchange,
						SubjectToken:     tok,
						SubjectTokenType: exchange.TokenTypeIDToken,
						Audiences:        tc.Request.Audience,
						Scopes:           tc.Request.Scope,
					}
					if tc.Request.TokenType == policy.GrantAPIKey {
						req.RequestedTokenType = exchange.TokenTypeAPIKey
					}
					_, out, err := x.Exchange(ctx, req)
					checkExpect(t, tc.Expect, out, err)
				})
			}
		})
	}
}

// checkExpect checks an exchange against `expect: allow NAME | deny [code]`.
func checkExpect(t *testing.T, expect string, out *exchange.Outcome, err error) {
	t.Helper()
	verdict, arg, _ := strings.Cut(expect, " ")
	switch verdict {
	case "allow":
		if err != nil {
			t.Fatalf("want allow %s, got %v", arg, err)
		}
		if out.Decision.Policy != arg {
			t.Errorf("allowed by %q, want %q", out.Decision.Policy, arg)
		}
	case "deny":
		if err == nil {
			t.Fatalf("want deny, allowed by %q", out.Decision.Policy)
		}
		var xe *exchange.Error
		if !errors.As(err, &xe) {
			t.Fatalf("error %v is not an *exchange.Error", err)
		}
		if arg != "" && xe.Code != arg {
			t.Errorf("code %q, want %q (%v)", xe.Code, arg, err)
		}
	default:
		t.Fatalf("bad expect %q", expect)
	}
}

// TestPresetTenantPinLint shows lint refusing, for every shared preset, a
// policy that pins no tenant, and accepting the same policy with the pin.
func TestPresetTenantPinLint(t *testing.T) {
	const tmpl = `
policies:
  - name: p
    issuer: ISSUER
    audience: https://broker.example.com
    subject: some-subject
CLAIMS    grant:
      audience: [api]
      scopes: [read]
      ttl: 5m
`
	for _, pc := range presetCases {
		t.Run(pc.preset, func(t *testing.T) {
			p, _ := providers.LookupPreset(pc.preset)
			reg, err := providers.New([]providers.Config{{Name: pc.preset, Preset: pc.preset, Issuer: "http://127.0.0.1:9" + pc.path}}, providers.Options{})
			if err != nil {
				t.Fatal(err)
			}
			load := func(claims string) error {
				src := strings.NewReplacer("ISSUER", "http://127.0.0.1:9"+pc.path, "CLAIMS", claims).Replace(tmpl)
				file := filepath.Join(t.TempDir(), "p.yaml")
				if err := os.WriteFile(file, []byte(src), 0o600); err != nil {
					t.Fatal(err)
				}
				_, err := policy.LoadPath(file, policy.LoadOptions{Issuers: policyIssuers(reg)})
				return err
			}
			err = load("")
			if !p.Shared {
				if err != nil {
					t.Fatalf("a policy on an unshared issuer was refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), policy.LintSharedIssuerWithoutTenant) || !strings.Contains(err.Error(), p.TenantClaims[0]) {
				t.Fatalf("policy without %s: got %v, want a %s refusal naming it", p.TenantClaims[0], err, policy.LintSharedIssuerWithoutTenant)
			}
			pin := "    claims:\n      \"" + p.TenantClaims[0] + "\": \"42\"\n"
			if err := load(pin); err != nil {
				t.Fatalf("policy pinning %s was refused: %v", p.TenantClaims[0], err)
			}
		})
	}
}

// TestPresetClaimTypos shows that a claim matcher on a name the preset never
// issues is a load error, so a typo cannot silently never match.
func TestPresetClaimTypos(t *testing.T) {
	reg, err := providers.New([]providers.Config{{Name: "github", Preset: providers.PresetGitHubActions}}, providers.Options{})
	if err != nil {
		t.Fatal(err)
	}
	src := `
policies:
  - name: p
    provider: github
    audience: https://broker.example.com
    subject: repo:octo-org/app:ref:refs/heads/main
    claims:
      repository_ownerid: "1234567"
    grant:
      audience: [api]
      scopes: [read]
      ttl: 5m
`
	file := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(file, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = policy.LoadPath(file, policy.LoadOptions{Issuers: policyIssuers(reg)})
	if err == nil || !strings.Contains(err.Error(), "repository_ownerid") {
		t.Fatalf("got %v, want a load error naming repository_ownerid", err)
	}
}
