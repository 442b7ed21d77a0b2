package policy

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// load parses src as test.yaml and builds a Set.
func load(t *testing.T, src string, opts LoadOptions) (*Set, error) {
	t.Helper()
	f, err := Parse("test.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return NewSet([]*File{f}, opts)
}

// policyYAML returns a file with one policy "p" (line 2) on the issuer,
// with the extra lines (indented by 4) before its grant.
func policyYAML(issuer, scopes string, extra ...string) string {
	var b strings.Builder
	b.WriteString("policies:\n  - name: p\n    " + issuer + "\n    audience: broker\n")
	for _, l := range extra {
		b.WriteString("    " + l + "\n")
	}
	b.WriteString("    grant: {audience: [api], scopes: [" + scopes + "], ttl: 5m}\n")
	return b.String()
}

func TestLintRefusals(t *testing.T) {
	const gh = "provider: github"
	const pin = "claims: {repository_owner_id: '42', repository: octo/app}"
	tests := []struct {
		name    string
		src     string
		opts    []Issuer
		wantErr string // full error text; empty means the load succeeds
	}{
		{"pinned tenant and subject", policyYAML(gh, "read", "subject: repo:octo/app:ref:refs/heads/main", pin), nil, ""},
		{"shared issuer without tenant", policyYAML(gh, "read", "subject: repo:octo/app:ref:refs/heads/main"), nil,
			`test.yaml:2: policy "p": claims: refused (shared_issuer_without_tenant): issuer "https://token.actions.githubusercontent.com" is shared by many tenants and the policy pins none: add claims.repository_owner_id with the tenant's immutable id (or lift it with allow: [shared_issuer_without_tenant])`},
		{"tenant claims name every alternative", policyYAML("issuer: https://gitlab.example", "read", "subject: project_path:g/p:ref_type:branch:ref:main"),
			[]Issuer{{URL: "https://gitlab.example", TenantClaims: []string{"namespace_id", "project_id"}}},
			`test.yaml:2: policy "p": claims: refused (shared_issuer_without_tenant): issuer "https://gitlab.example" is shared by many tenants and the policy pins none: add claims.namespace_id with the tenant's immutable id (or claims.project_id) (or lift it with allow: [shared_issuer_without_tenant])`},
		{"tenant pinned by a pattern does not count", policyYAML(gh, "read", "subject: repo:octo/app:ref:refs/heads/main", "claims: {repository_owner_id: '4*'}"), nil,
			"refused (shared_issuer_without_tenant)"},
		{"shared issuer without subject or repository", policyYAML(gh, "read", "claims: {repository_owner_id: '42'}"), nil,
			`test.yaml:5: policy "p": claims: refused (any_repository): no subject and no repository claim: any repository of the tenant matches: set subject, subject_pattern or claims.repository (or lift it with allow: [any_repository])`},
		{"repository claim pins", policyYAML(gh, "read", pin), nil, ""},
		{"wildcard repository claim does not pin", policyYAML(gh, "read", "claims: {repository_owner_id: '42', repository: '*/*'}"), nil,
			"refused (any_repository)"},
		{"subject pattern with any repository", policyYAML(gh, "read", "subject_pattern: 'repo:*/*:environment:prod'", pin), nil,
			`test.yaml:5: policy "p": subject_pattern: refused (any_repository): subject_pattern "repo:*/*:environment:prod" admits any repository: name the repository (or org) in the pattern (or lift it with allow: [any_repository])`},
		{"match-all pattern on a private issuer", policyYAML("issuer: http://ci.example", "read", "subject_pattern: '**'"), nil,
			"refused (any_repository)"},
		{"double star", policyYAML(gh, "read", "subject_pattern: 'repo:octo/**'", pin), nil,
			`test.yaml:5: policy "p": subject_pattern: refused (wide_wildcard): "repo:octo/**" can match across '/' or ':': use '*' (one segment) or a regular expression without '.' (or lift it with allow: [wide_wildcard])`},
		{"regexp dot in claim", policyYAML(gh, "read", pin[:len(pin)-1]+", ref: 're:refs/heads/.*'}", "subject: repo:octo/app:x"), nil,
			`test.yaml:5: policy "p": claims.ref: refused (wide_wildcard): "re:refs/heads/.*" can match across '/' or ':'`},
		{"narrow regexp", policyYAML(gh, "read", pin[:len(pin)-1]+", ref: 're:refs/heads/(main|dev)'}", "subject: repo:octo/app:x"), nil, ""},
		{"lifted refusal loads", policyYAML(gh, "read", "subject_pattern: 'repo:octo/**'", pin, "allow: [wide_wildcard]"), nil, ""},
		{"unknown refusal", policyYAML(gh, "read", "subject: repo:octo/app:x", pin, "allow: [everything]"), nil,
			`test.yaml:7: policy "p": allow: unknown refusal "everything" (known: [shared_issuer_without_tenant any_repository wide_wildcard])`},
		{"private issuer needs no subject", policyYAML("issuer: http://ci.example", "read"), nil, ""},
		{"unconfigured issuer", policyYAML("issuer: http://evil.example", "read"), nil,
			`test.yaml:3: policy "p": issuer: issuer "http://evil.example" is not configured`},
		{"known claims typo guard", policyYAML("issuer: http://ci.example", "read", "claims: {reff: main}"),
			[]Issuer{{URL: "http://ci.example", KnownClaims: []string{"ref"}}},
			`test.yaml:5: policy "p": claims.reff: issuer "http://ci.example" has no claim "reff" (known: [ref])`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := LoadOptions{Issuers: tt.opts}
			if tt.opts == nil {
				opts.Issuers = testIssuers
			}
			_, err := load(t, tt.src, opts)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("load failed: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("load error = %v\nwant it to contain %s", err, tt.wantErr)
			}
		})
	}
}

func TestLoadWithoutIssuers(t *testing.T) {
	if _, err := load(t, policyYAML("issuer: http://anything.example", "read"), LoadOptions{}); err != nil {
		t.Errorf("zero LoadOptions refused an issuer: %v", err)
	}
	_, err := load(t, policyYAML("provider: github", "read"), LoadOptions{})
	if err == nil || !strings.Contains(err.Error(), `unknown provider "github"`) {
		t.Errorf("zero LoadOptions: provider error = %v", err)
	}
}

func TestLintWarnings(t *testing.T) {
	const ci = "issuer: http://ci.example"
	const gh = "issuer: " + githubURL + "\n    subject: repo:o/a:ref:refs/heads/main\n    claims: {repository_owner_id: \"1\"}"
	runner := Warning{File: "test.yaml", Line: 0, Policy: "p", Message: "grants a deploy scope without excluding self-hosted runners: add claims.runner_environment: github-hosted or a guardrail on runner_environment"}
	event := Warning{File: "test.yaml", Line: 0, Policy: "p", Message: "grants a deploy scope for every event: pin claims.event_name (e.g. push) or add a guardrail denying pull_request_target"}
	at := func(w Warning, line int) Warning { w.Line = line; return w }
	guardrails := "guardrails:\n  - {name: g1, claims: {runner_environment: self-hosted}}\n  - {name: g2, condition: 'claims.event_name == \"pull_request_target\"'}\n"
	tests := []struct {
		name string
		src  string
		opts []Issuer
		want []Warning
	}{
		{"read scope", policyYAML(ci, "read"), nil, nil},
		{"deploy scope unguarded", policyYAML(gh, "deploy:prod"), nil, []Warning{at(runner, 7), at(event, 7)}},
		{"unknown issuer: no GitHub claims to suggest", policyYAML(ci, "deploy:prod"), nil, nil},
		{"issuer with event_name", policyYAML(ci, "deploy:prod"), []Issuer{{URL: "http://ci.example", KnownClaims: []string{"jti", "event_name"}}}, []Warning{at(event, 5)}},
		{"GitLab suggests gitlab-hosted", policyYAML("issuer: https://gitlab.example", "deploy"),
			[]Issuer{{URL: "https://gitlab.example", KnownClaims: []string{"jti", "namespace_id", "project_id", "runner_environment"}}},
			[]Warning{{File: "test.yaml", Line: 5, Policy: "p", Message: "grants a deploy scope without excluding self-hosted runners: add claims.runner_environment: gitlab-hosted or a guardrail on runner_environment"}}},
		{"gitlab.com without a claim list", policyYAML("issuer: https://gitlab.com", "deploy"), []Issuer{{URL: "https://gitlab.com"}},
			[]Warning{{File: "test.yaml", Line: 5, Policy: "p", Message: "grants a deploy scope without excluding self-hosted runners: add claims.runner_environment: gitlab-hosted or a guardrail on runner_environment"}}},
		{"Buildkite suggests buildkite-hosted", policyYAML("issuer: https://agent.buildkite.com", "deploy"),
			[]Issuer{{URL: "https://agent.buildkite.com", KnownClaims: []string{"jti", "organization_slug", "pipeline_slug", "runner_environment"}}},
			[]Warning{{File: "test.yaml", Line: 5, Policy: "p", Message: "grants a deploy scope without excluding self-hosted runners: add claims.runner_environment: buildkite-hosted or a guardrail on runner_environment"}}},
		{"another issuer with runner_environment", policyYAML(ci, "deploy"), []Issuer{{URL: "http://ci.example", KnownClaims: []string{"jti", "runner_environment"}}},
			[]Warning{{File: "test.yaml", Line: 5, Policy: "p", Message: "grants a deploy scope without excluding self-hosted runners: add claims.runner_environment pinned to the provider's hosted-runner value or a guardrail on runner_environment"}}},
		{"deploy scope pinned", policyYAML(ci, "deploy:prod", "claims: {runner_environment: github-hosted, event_name: push}"), nil, nil},
		{"deploy scope with event condition", policyYAML(gh, "Deploy", "condition: 'claims.event_name == \"push\"'"), nil, []Warning{at(runner, 8)}},
		{"deploy scope guarded", guardrails + policyYAML(ci, "deploy"), nil, nil},
		{"single use on an issuer without jti", policyYAML(ci, "read"), []Issuer{{URL: "http://ci.example", KnownClaims: []string{"ref"}}}, []Warning{
			{File: "test.yaml", Line: 2, Policy: "p", Message: `single_use (the default) needs a jti, and tokens of issuer "http://ci.example" carry none: the broker refuses every exchange; set single_use: false`}}},
		{"not single use on an issuer without jti", policyYAML(ci, "read", "single_use: false"), []Issuer{{URL: "http://ci.example", KnownClaims: []string{"ref"}}}, nil},
		{"single use on an issuer with jti", policyYAML(ci, "read"), []Issuer{{URL: "http://ci.example", KnownClaims: []string{"jti"}}}, nil},
		{"issuer without these claims", policyYAML(ci, "deploy"), []Issuer{{URL: "http://ci.example", KnownClaims: []string{"ref", "jti"}}}, nil},
		{"pull_request_target admitted", policyYAML(ci, "read", "claims: {event_name: 'pull_request*'}"), nil, []Warning{
			{File: "test.yaml", Line: 5, Policy: "p", Message: "admits event_name pull_request_target, which runs with the base repository's privileges on pull requests from forks"}}},
		{"lifted refusal is loud", policyYAML(ci, "read", "subject_pattern: 'repo:octo/**'", "allow: [wide_wildcard]"), nil, []Warning{
			{File: "test.yaml", Line: 5, Policy: "p", Message: `LIFTED refusal wide_wildcard: "repo:octo/**" can match across '/' or ':': use '*' (one segment) or a regular expression without '.'`}}},
		{"allow lifting nothing", policyYAML(ci, "read", "allow: [any_repository]"), nil, []Warning{
			{File: "test.yaml", Line: 5, Policy: "p", Message: "allow: any_repository lifts nothing; remove it"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := LoadOptions{Issuers: tt.opts}
			if tt.opts == nil {
				opts.Issuers = testIssuers
			}
			s, err := load(t, tt.src, opts)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, s.Warnings()); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
}
