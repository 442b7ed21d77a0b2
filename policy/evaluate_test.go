package policy

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func loadValid(t *testing.T) *Set {
	t.Helper()
	s, err := LoadPath("testdata/valid", LoadOptions{Issuers: testIssuers})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// deployReq is a request that deploy-prod in testdata/valid allows.
func deployReq() Request {
	return Request{
		Issuer:   githubURL,
		Subject:  "repo:octo-org/app:environment:prod",
		Audience: []string{"https://broker.example.com"},
		Claims: map[string]any{
			"repository_owner_id": json.Number("1234567"),
			"repository":          "octo-org/app",
			"ref":                 "refs/heads/main",
			"ref_type":            "branch",
			"runner_environment":  "github-hosted",
			"event_name":          "push",
		},
		TokenType: GrantJWT,
	}
}

func TestEvaluateAllows(t *testing.T) {
	s := loadValid(t)
	tests := []struct {
		name   string
		modify func(*Request)
		want   *Decision
	}{
		{"whole grant", func(*Request) {}, &Decision{
			Policy: "deploy-prod", SingleUse: true, Candidates: []string{"deploy-prod"},
			Grant: Grant{Type: GrantJWT, Audience: []string{"deploy-api"}, Scopes: []string{"deploy:prod", "deploy:read"},
				TTL: 10 * time.Minute, Claims: map[string]string{"repository": "octo-org/app"}},
		}},
		{"narrowed to the request", func(r *Request) { r.Targets = []string{"deploy-api"}; r.Scopes = []string{"deploy:read"} }, &Decision{
			Policy: "deploy-prod", SingleUse: true, Candidates: []string{"deploy-prod"},
			Grant: Grant{Type: GrantJWT, Audience: []string{"deploy-api"}, Scopes: []string{"deploy:read"},
				TTL: 10 * time.Minute, Claims: map[string]string{"repository": "octo-org/app"}},
		}},
		{"empty token type means jwt", func(r *Request) { r.TokenType = "" }, &Decision{
			Policy: "deploy-prod", SingleUse: true, Candidates: []string{"deploy-prod"},
			Grant: Grant{Type: GrantJWT, Audience: []string{"deploy-api"}, Scopes: []string{"deploy:prod", "deploy:read"},
				TTL: 10 * time.Minute, Claims: map[string]string{"repository": "octo-org/app"}},
		}},
		{"api key through a subject pattern", func(r *Request) {
			r.Subject, r.TokenType = "repo:octo-org/lib:ref:refs/heads/main", GrantAPIKey
		}, &Decision{
			Policy: "ci-read", SingleUse: false, Candidates: []string{"ci-read"},
			Grant: Grant{Type: GrantAPIKey, Audience: []string{"artifacts"}, Scopes: []string{"read"}, TTL: time.Hour, Uses: 5},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := deployReq()
			tt.modify(&req)
			got, err := s.Evaluate(req)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("decision (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEvaluateDenies(t *testing.T) {
	s := loadValid(t)
	tests := []struct {
		name       string
		modify     func(*Request)
		code       DenyCode
		policy     string
		reasonPart string
	}{
		{"guardrail beats allow", func(r *Request) { r.Claims["runner_environment"] = "self-hosted" },
			DenyGuardrail, "no-self-hosted", `guardrail "no-self-hosted" (testdata/valid/github.yaml:2) matches the token`},
		{"guardrail on any issuer", func(r *Request) { r.Claims["event_name"] = "pull_request_target" },
			DenyGuardrail, "no-pull-request-target", `guardrail "no-pull-request-target"`},
		{"unknown issuer", func(r *Request) { r.Issuer = "https://evil.example" },
			DenyNoMatch, "", `no policy for issuer "https://evil.example"`},
		{"subject without policy", func(r *Request) { r.Subject = "repo:other/app:ref:refs/heads/main" },
			DenyNoMatch, "", `no policy for issuer "https://token.actions.githubusercontent.com" admits subject "repo:other/app:ref:refs/heads/main"`},
		{"subject pattern fails", func(r *Request) { r.Subject = "repo:octo-org/app:environment:dev" },
			DenyNoMatch, "ci-read", `subject: expected pattern "repo:octo-org/*:ref:refs/heads/main", got "repo:octo-org/app:environment:dev"`},
		{"claim differs", func(r *Request) { r.Claims["ref"] = "refs/heads/dev" },
			DenyNoMatch, "deploy-prod", `closest is policy "deploy-prod" (testdata/valid/github.yaml:11): claims.ref: expected "refs/heads/main", got "refs/heads/dev"`},
		{"claim absent", func(r *Request) { delete(r.Claims, "ref") },
			DenyNoMatch, "deploy-prod", `claims.ref: expected "refs/heads/main", got <absent>`},
		{"tenant id differs", func(r *Request) { r.Claims["repository_owner_id"] = json.Number("7") },
			DenyNoMatch, "deploy-prod", `claims.repository_owner_id: expected "1234567", got 7`},
		{"condition false", func(r *Request) { r.Claims["ref_type"] = "tag" },
			DenyNoMatch, "deploy-prod", `condition: expected "claims.ref_type == \"branch\"" to be true, got false`},
		{"condition error is no match", func(r *Request) { delete(r.Claims, "ref_type") },
			DenyNoMatch, "deploy-prod", `condition: expected "claims.ref_type == \"branch\"" to be true, got evaluation error: no such key: ref_type`},
		{"audience missing", func(r *Request) { r.Audience = []string{"https://other.example"} },
			DenyNoMatch, "deploy-prod", `audience: expected aud containing "https://broker.example.com", got ["https://other.example"]`},
		{"extra audience", func(r *Request) { r.Audience = append(r.Audience, "https://other.example") },
			DenyNoMatch, "deploy-prod", `allow_extra_audiences is false`},
		{"token type", func(r *Request) { r.TokenType = GrantAPIKey },
			DenyTokenType, "deploy-prod", `policy "deploy-prod" matches the token but grant.type: expected "jwt", got requested "api_key"`},
		{"target", func(r *Request) { r.Targets = []string{"deploy-api", "billing-api"} },
			DenyTarget, "deploy-prod", `grant.audience: expected one of ["deploy-api"], got requested "billing-api"`},
		{"scope", func(r *Request) { r.Scopes = []string{"deploy:prod", "admin"} },
			DenyScope, "deploy-prod", `grant.scopes: expected one of ["deploy:prod" "deploy:read"], got requested "admin"`},
		{"template fails", func(r *Request) { delete(r.Claims, "repository") },
			DenyNoMatch, "deploy-prod", `policy "deploy-prod": grant.claims.repository: expected a template that renders, got error: template: repository:1:3: executing "repository" at <.repository>: map has no entry for key "repository"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := deployReq()
			tt.modify(&req)
			d, err := s.Evaluate(req)
			var de *DenyError
			if !errors.As(err, &de) {
				t.Fatalf("Evaluate() = %+v, %v; want a *DenyError", d, err)
			}
			if de.Code != tt.code || de.Policy != tt.policy {
				t.Errorf("code, policy = %d, %q; want %d, %q (reason %s)", de.Code, de.Policy, tt.code, tt.policy, de.Reason)
			}
			if !strings.Contains(de.Reason, tt.reasonPart) {
				t.Errorf("reason = %s\nwant it to contain %s", de.Reason, tt.reasonPart)
			}
		})
	}
}

func TestSelectionOrder(t *testing.T) {
	src := `policies:
  - {name: x-none, issuer: http://ci.example, audience: b, grant: {audience: [api], ttl: 1m}}
  - {name: t-none, issuer: http://ci.example, audience: b, grant: {audience: [api], ttl: 1m}}
  - {name: v-cond, issuer: http://ci.example, audience: b, condition: 'claims.ref == "main"', grant: {audience: [api], ttl: 1m}}
  - {name: w-claims, issuer: http://ci.example, audience: b, claims: {ref: main}, grant: {audience: [api], ttl: 1m}}
  - {name: u-claims-cond, issuer: http://ci.example, audience: b, claims: {ref: main}, condition: 'true', grant: {audience: [api], ttl: 1m}}
  - {name: s-two-claims, issuer: http://ci.example, audience: b, claims: {ref: main, id: '1'}, grant: {audience: [api], ttl: 1m}}
  - {name: y-pattern, issuer: http://ci.example, audience: b, subject_pattern: 'a:*', allow: [any_repository], grant: {audience: [api], ttl: 1m}}
  - {name: z-exact, issuer: http://ci.example, audience: b, subject: 'a:b', allow: [any_repository], grant: {audience: [api], ttl: 1m}}
  - {name: r-other-type, issuer: http://ci.example, audience: b, subject: 'a:b', grant: {type: api_key, audience: [api], ttl: 1m}}
`
	s, err := load(t, src, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	req := Request{Issuer: "http://ci.example", Subject: "a:b", Audience: []string{"b"}, Claims: map[string]any{"ref": "main", "id": json.Number("1")}}
	d, err := s.Evaluate(req)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"z-exact", "y-pattern", "s-two-claims", "u-claims-cond", "w-claims", "v-cond", "t-none", "x-none"}
	if diff := cmp.Diff(want, d.Candidates); diff != "" {
		t.Errorf("candidates (-want +got):\n%s", diff)
	}
	if d.Policy != "z-exact" || !cmp.Equal(d.Lifted, []string{"any_repository"}) {
		t.Errorf("Policy, Lifted = %q, %q; want z-exact, [any_repository]", d.Policy, d.Lifted)
	}
}

func TestCELConditions(t *testing.T) {
	items := make([]any, 2000)
	for i := range items {
		items[i] = json.Number("1")
	}
	tests := []struct {
		name, condition string
		claims          map[string]any
		wantMatch       bool
		reasonPart      string
	}{
		{"json integer is int", "claims.run_attempt < 3", map[string]any{"run_attempt": json.Number("2")}, true, ""},
		{"json float is double", "claims.ratio > 0.5", map[string]any{"ratio": json.Number("0.75")}, true, ""},
		{"has on absent claim", "!has(claims.actor)", map[string]any{}, true, ""},
		{"list membership", `"admins" in claims.groups`, map[string]any{"groups": []any{"dev", "admins"}}, true, ""},
		{"wrong type at runtime", "claims.run_attempt < 3", map[string]any{"run_attempt": "two"}, false, "evaluation error"},
		{"cost limit", "claims.items.all(x, claims.items.all(y, x == y))", map[string]any{"items": items}, false, "evaluation error: operation"}, // cost limit, or the deadline on a slow machine,
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "policies:\n  - {name: p, issuer: http://ci.example, audience: b, condition: '" + strings.ReplaceAll(tt.condition, "'", "''") + "', grant: {audience: [api], ttl: 1m}}\n"
			s, err := load(t, src, LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Evaluate(Request{Issuer: "http://ci.example", Subject: "s", Audience: []string{"b"}, Claims: tt.claims})
			if tt.wantMatch {
				if err != nil {
					t.Fatalf("Evaluate() = %v, want a match", err)
				}
				return
			}
			var de *DenyError
			if !errors.As(err, &de) || de.Code != DenyNoMatch || !strings.Contains(de.Reason, tt.reasonPart) {
				t.Fatalf("Evaluate() = %v, want DenyNoMatch with %q", err, tt.reasonPart)
			}
		})
	}
}

func TestUncompiledPolicyIsRefused(t *testing.T) {
	p := &Policy{Name: "p", Issuer: "http://ci.example", Audience: "b", Grant: GrantSpec{Audience: []string{"api"}, TTL: time.Minute}}
	st := &reqState{req: Request{Issuer: "http://ci.example", Subject: "s", Audience: []string{"b"}}}
	if m := identity(p, st); m == nil || m.stage != stageCompiled {
		t.Fatalf("identity(uncompiled) = %v, want a refusal", m)
	}
	if err := p.Compile(LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	if m := identity(p, st); m != nil {
		t.Fatalf("identity(compiled) = %v, want a match", m)
	}
	p.Provider = "github" // now both issuer and provider: recompiling fails and un-compiles
	if err := p.Compile(LoadOptions{Issuers: testIssuers}); err == nil {
		t.Fatal("Compile() with issuer and provider succeeded")
	}
	if m := identity(p, st); m == nil || m.stage != stageCompiled {
		t.Fatalf("identity(failed compile) = %v, want a refusal", m)
	}
}

func TestExplain(t *testing.T) {
	s := loadValid(t)
	req := deployReq()
	req.Claims["ref"] = "refs/heads/dev"
	want := []Explanation{
		{Kind: "guardrail", Name: "no-self-hosted", File: "testdata/valid/github.yaml", Line: 2, Check: "claims.runner_environment", Expected: `"self-hosted"`, Actual: `"github-hosted"`},
		{Kind: "guardrail", Name: "no-pull-request-target", File: "testdata/valid/github.yaml", Line: 6, Check: "claims.event_name", Expected: `"pull_request_target"`, Actual: `"push"`},
		{Kind: "policy", Name: "deploy-prod", File: "testdata/valid/github.yaml", Line: 11, Check: "claims.ref", Expected: `"refs/heads/main"`, Actual: `"refs/heads/dev"`},
		{Kind: "policy", Name: "ci-read", File: "testdata/valid/github.yaml", Line: 27, Check: "subject", Expected: `pattern "repo:octo-org/*:ref:refs/heads/main"`, Actual: `"repo:octo-org/app:environment:prod"`},
		{Kind: "policy", Name: "local-any", File: "testdata/valid/local.yml", Line: 3, Check: "issuer", Expected: `"http://ci.example"`, Actual: `"https://token.actions.githubusercontent.com"`},
	}
	if diff := cmp.Diff(want, s.Explain(req)); diff != "" {
		t.Errorf("explain (-want +got):\n%s", diff)
	}
	got := s.Explain(deployReq())
	if !got[2].Matched || got[2].Check != "" {
		t.Errorf("deploy-prod explanation = %+v, want matched", got[2])
	}
}

func TestHolder(t *testing.T) {
	var h Holder
	if _, err := h.Evaluate(deployReq()); !errors.Is(err, ErrNoSet) {
		t.Fatalf("empty Holder: Evaluate() = %v, want ErrNoSet", err)
	}
	s := loadValid(t)
	h.Store(s)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				if _, err := h.Evaluate(deployReq()); err != nil {
					t.Error(err)
					return
				}
				h.Store(s)
			}
		}()
	}
	wg.Wait()
	if NewHolder(s).Load() != s {
		t.Error("NewHolder(s).Load() != s")
	}
}
