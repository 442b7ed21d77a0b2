package policy

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Regression tests for the first security review of policy/.

// reviewPolicies is one GitHub policy that allows reviewReq, before any
// guardrail is added.
const reviewPolicies = `
policies:
  - name: p
    provider: github
    audience: aud
    subject: "repo:octo-org/app:ref:refs/heads/dev"
    claims:
      repository_owner_id: "1234567"
    grant: {audience: [api], ttl: 5m}
`

func reviewReq(claims map[string]any) Request {
	c := map[string]any{"repository_owner_id": json.Number("1234567")}
	for k, v := range claims {
		c[k] = v
	}
	return Request{Issuer: githubURL, Subject: "repo:octo-org/app:ref:refs/heads/dev", Audience: []string{"aud"}, Claims: c}
}

// A guardrail is a deny rule: a condition that fails to evaluate must deny
// (fail closed), not count as "not matched".
func TestGuardrailConditionErrorDenies(t *testing.T) {
	many := make([]any, 1000)
	for i := range many {
		many[i] = "x"
	}
	tests := []struct {
		name      string
		guardrail string // YAML mapping of the guardrail, without name
		claims    map[string]any
		// wantReason is part of the DenyGuardrail reason; empty: allowed.
		wantReason string
	}{
		{"absent claim denies", `{condition: 'claims.ref_protected != "true"'}`,
			map[string]any{}, `guardrail "g" (test.yaml:11) denies: its condition failed to evaluate (fail closed): no such key: ref_protected`},
		{"present claim evaluates", `{condition: 'claims.ref_protected != "true"'}`,
			map[string]any{"ref_protected": "true"}, ""},
		{"string where a number is compared denies", `{condition: 'claims.run_attempt > 1'}`,
			map[string]any{"run_attempt": "7"}, "no such overload"},
		{"number compares", `{condition: 'claims.run_attempt > 1'}`,
			map[string]any{"run_attempt": json.Number("1")}, ""},
		{"true condition denies as before", `{condition: 'claims.run_attempt > 1'}`,
			map[string]any{"run_attempt": json.Number("2")}, `guardrail "g" (test.yaml:11) matches the token`},
		{"cost limit denies", `{condition: 'claims.xs.exists(a, claims.xs.exists(b, a == "never" && b == "never"))'}`,
			map[string]any{"xs": many}, "failed to evaluate (fail closed): operation"}, // cost limit, or the deadline on a slow machine
		{"cheap list evaluates", `{condition: 'claims.xs.exists(a, claims.xs.exists(b, a == "never" && b == "never"))'}`,
			map[string]any{"xs": []any{"x"}}, ""},
		{"claims not matching: condition not reached", `{claims: {event_name: push}, condition: 'claims.ref_protected != "true"'}`,
			map[string]any{"event_name": "pull_request"}, ""},
		{"claims matching: condition error denies", `{claims: {event_name: push}, condition: 'claims.ref_protected != "true"'}`,
			map[string]any{"event_name": "push"}, "no such key: ref_protected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := reviewPolicies + "guardrails:\n  - " + strings.Replace(tt.guardrail, "{", "{name: g, ", 1) + "\n"
			s, err := load(t, src, LoadOptions{Issuers: testIssuers})
			if err != nil {
				t.Fatal(err)
			}
			d, err := s.Evaluate(reviewReq(tt.claims))
			if tt.wantReason == "" {
				if err != nil {
					t.Fatalf("Evaluate() = %v, want allowed", err)
				}
				if d.Policy != "p" {
					t.Fatalf("Evaluate() selected %q, want p", d.Policy)
				}
				return
			}
			var de *DenyError
			if !errors.As(err, &de) {
				t.Fatalf("Evaluate() = %v, %v; want a DenyGuardrail", d, err)
			}
			if de.Code != DenyGuardrail || de.Policy != "g" || !strings.Contains(de.Reason, tt.wantReason) {
				t.Fatalf("Evaluate() = %+v, want DenyGuardrail by g with reason containing %q", de, tt.wantReason)
			}
		})
	}
}

// For an allow policy an evaluation error stays "not matched".
func TestPolicyConditionErrorDoesNotMatch(t *testing.T) {
	src := strings.Replace(reviewPolicies, "    grant:", "    condition: 'claims.run_attempt > 1'\n    grant:", 1)
	s, err := load(t, src, LoadOptions{Issuers: testIssuers})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Evaluate(reviewReq(map[string]any{"run_attempt": "7"}))
	var de *DenyError
	if !errors.As(err, &de) || de.Code != DenyNoMatch || !strings.Contains(de.Reason, "evaluation error: no such overload") {
		t.Fatalf("Evaluate() = %v, want DenyNoMatch naming the evaluation error", err)
	}
}

func TestExplainGuardrailConditionError(t *testing.T) {
	src := reviewPolicies + "guardrails:\n  - {name: g, condition: 'claims.ref_protected != \"true\"'}\n"
	s, err := load(t, src, LoadOptions{Issuers: testIssuers})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		claims map[string]any
		want   Explanation
	}{
		{"error denies", map[string]any{}, Explanation{Kind: "guardrail", Name: "g", File: "test.yaml", Line: 11, Matched: true,
			Error: `condition "claims.ref_protected != \"true\"" failed to evaluate: no such key: ref_protected`}},
		{"false does not", map[string]any{"ref_protected": "true"}, Explanation{Kind: "guardrail", Name: "g", File: "test.yaml", Line: 11,
			Check: "condition", Expected: `"claims.ref_protected != \"true\"" to be true`, Actual: "false"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := s.Explain(reviewReq(tt.claims))
			if diff := cmp.Diff(tt.want, got[0]); diff != "" {
				t.Errorf("Explain()[0] (-want +got):\n%s", diff)
			}
		})
	}
}

// Unquoted YAML bools and numbers compare as the JSON text of the token's
// value, so they are canonicalised (bools) or must already be canonical
// (numbers); quoted strings stay as written.
func TestParseScalarCanonicalJSON(t *testing.T) {
	tests := []struct {
		name, value string
		want        string // the claim's text; empty when refused
		wantErr     string
	}{
		{"bool True", "True", "true", ""},
		{"bool TRUE", "TRUE", "true", ""},
		{"bool False", "False", "false", ""},
		{"bool true", "true", "true", ""},
		{"quoted True stays", `"True"`, "True", ""},
		{"explicit bool tag, not a bool", "!!bool yes", "", `invalid bool "yes"`},
		{"integer", "31", "31", ""},
		{"negative integer", "-2", "-2", ""},
		{"zero", "0", "0", ""},
		{"integer past int64", "12345678901234567890", "12345678901234567890", ""},
		{"fraction", "1.5", "1.5", ""},
		{"hex refused", "0x1F", "", "number 0x1F is not in canonical JSON form"},
		{"plus sign refused", "+1", "", "number +1 is not"},
		{"leading zero refused", "0012", "", "number 0012 is not"},
		{"octal refused", "0o17", "", "number 0o17 is not"},
		{"negative zero refused", "-0", "", "number -0 is not"},
		{"trailing zero refused", "1.0", "", "number 1.0 is not"},
		{"exponent refused", "1e3", "", "number 1e3 is not"},
		{"bare fraction refused", ".5", "", "number .5 is not"},
		{"infinity refused", ".inf", "", "number .inf is not"},
		{"quoted hex stays", `"0x1F"`, "0x1F", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse("test.yaml", []byte("policies:\n  - name: a\n    claims:\n      c: "+tt.value+"\n"))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse() error = %v, want it to contain %q", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), "test.yaml:4:") {
					t.Errorf("Parse() error = %v, want it located at test.yaml:4", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Policies[0].Claims["c"]; got != tt.want {
				t.Errorf("claims.c = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseBooleanKeys(t *testing.T) {
	tests := []struct {
		value   string
		want    bool
		wantErr bool
	}{
		{"True", true, false},
		{"FALSE", false, false},
		{"!!bool yes", false, true},
		{"!!bool 1", false, true},
		{`"true"`, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			f, err := Parse("test.yaml", []byte("policies:\n  - name: a\n    single_use: "+tt.value+"\n"))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Parse() accepted single_use: %s", tt.value)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := *f.Policies[0].SingleUse; got != tt.want {
				t.Errorf("single_use = %v, want %v", got, tt.want)
			}
		})
	}
}

// The reviewer's case: a guardrail written with a YAML True denies a token
// whose claim is the JSON true.
func TestGuardrailYAMLBoolDenies(t *testing.T) {
	tests := []struct {
		name       string
		value      any
		wantDenied bool
	}{
		{"json true", true, true},
		{"json false", false, false},
		{"string True is not the bool", "True", false},
	}
	s, err := load(t, reviewPolicies+"guardrails:\n  - name: no-ssh\n    claims:\n      ssh_rerun: True\n", LoadOptions{Issuers: testIssuers})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Evaluate(reviewReq(map[string]any{"ssh_rerun": tt.value}))
			var de *DenyError
			denied := errors.As(err, &de) && de.Code == DenyGuardrail
			if denied != tt.wantDenied || (!denied && err != nil) {
				t.Fatalf("Evaluate(ssh_rerun=%#v) = %v, want denied %v", tt.value, err, tt.wantDenied)
			}
		})
	}
}

// A "re:" body must be a whole expression on its own, so that an
// unbalanced ')' cannot close the anchoring group early.
func TestRegexpAnchoringCannotBeEscaped(t *testing.T) {
	tests := []struct {
		name, pattern string
		wantErr       string
		match         map[string]bool
	}{
		{"unbalanced close paren", "re:refs/heads/main)|(refs/tags/v1", "unexpected )", nil},
		{"close paren at end", "re:main)", "unexpected )", nil},
		{"open paren", "re:(main", "missing closing )", nil},
		{"trailing backslash", `re:main\`, "trailing backslash", nil},
		{"unterminated quote swallows the anchor", `re:\Qmain`, "missing closing )", nil},
		{"balanced alternation stays anchored", "re:(refs/heads/main)|(refs/tags/v1)", "", map[string]bool{
			"refs/heads/main": true, "refs/tags/v1": true, "refs/heads/main-evil": false, "evil/refs/tags/v1": false}},
		{"flags stay inside", "re:(?i)main", "", map[string]bool{"MAIN": true, "xmain": false, "main-evil": false}},
		{"terminated quote", `re:\Qa.b\E`, "", map[string]bool{"a.b": true, "axb": false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := compilePattern(tt.pattern)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("compilePattern(%q) = %v, %v; want error containing %q", tt.pattern, m, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for s, want := range tt.match {
				if got := m.match(s); got != want {
					t.Errorf("%q matches %q = %v, want %v", tt.pattern, s, got, want)
				}
			}
		})
	}
}

func TestAnyRepositoryAfterRepositoryKey(t *testing.T) {
	tests := []struct {
		value         string
		wide, anyRepo bool
	}{
		// Buildkite: the org is segment 1, the pipeline is after "pipeline:".
		{"organization:acme:pipeline:*:ref:main:commit:*:step:*", false, true},
		{"organization:acme:pipeline:deploy:ref:main:commit:*:step:*", false, false},
		{"organization:acme:pipeline:deploy-*:ref:main", false, false},
		// Terraform Cloud.
		{"organization:acme:project:*:workspace:prod:run_phase:apply", false, true},
		{"organization:acme:project:infra:workspace:*:run_phase:apply", false, true},
		{"organization:acme:project:infra:workspace:prod:run_phase:*", false, false},
		// GitLab.
		{"project_path:group/*:ref_type:branch:ref:main", false, false},
		{"project_path:*/*:ref_type:branch:ref:main", false, true},
		// CircleCI's '/'-separated form.
		{"org/0b8d7f3a/project/*/user/*", false, true},
		{"org/0b8d7f3a/project/5c1e9a00/user/*", false, false},
		// A claim value naming an org is not any repository.
		{"octo-org/*", false, false},
		// Regular expressions, cut on their parse tree.
		{"re:organization:acme:pipeline:[a-z-]+:ref:main", false, true},
		{"re:organization:acme:pipeline:(deploy|build):ref:main", false, false},
		{"re:repo:[^:]+:ref:main", true, true},
		{"re:^repo:.*$", true, true},
		{"re:repo:a|repo:b", false, false},
		{"re:repo:octo/app|organization:acme:pipeline:\\w+", false, true},
		{"re:(?i)repo:octo/app", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			m, err := compilePattern(tt.value)
			if err != nil {
				t.Fatal(err)
			}
			if got := m.wide(); got != tt.wide {
				t.Errorf("wide(%q) = %v, want %v", tt.value, got, tt.wide)
			}
			if got := m.anyRepository(); got != tt.anyRepo {
				t.Errorf("anyRepository(%q) = %v, want %v", tt.value, got, tt.anyRepo)
			}
		})
	}
}

// The Buildkite shape is refused at load, naming the lint.
func TestLintRefusesBuildkiteAnyPipeline(t *testing.T) {
	src := "policies:\n  - name: p\n    issuer: http://ci.example\n    audience: b\n" +
		"    subject_pattern: 'organization:acme:pipeline:*:ref:main:commit:*:step:*'\n" +
		"    grant: {audience: [api], ttl: 1m}\n"
	_, err := load(t, src, LoadOptions{Issuers: testIssuers})
	if err == nil || !strings.Contains(err.Error(), "refused (any_repository)") {
		t.Fatalf("NewSet() = %v, want an any_repository refusal", err)
	}
}

// FuzzCompileRegexp checks that a "re:" pattern that compiles matches a
// string exactly when the body alone, leftmost-longest, matches all of it:
// the anchors wrap the whole body and nothing escapes them.
func FuzzCompileRegexp(f *testing.F) {
	f.Add("refs/heads/main)|(refs/tags/v1", "refs/heads/main-evil")
	f.Add("(a)|(b)", "a")
	f.Add(`\Qa)|(b`, "a)|(b")
	f.Add("(?i)main|dev", "MAIN")
	f.Add("a*?", "aaa")
	f.Fuzz(func(t *testing.T, body, s string) {
		m, err := compilePattern(regexpPrefix + body)
		if err != nil {
			return
		}
		alone, err := regexp.Compile(body)
		if err != nil {
			t.Fatalf("re:%q compiled, but its body alone does not: %v", body, err)
		}
		alone.Longest()
		loc := alone.FindStringIndex(s)
		whole := loc != nil && loc[0] == 0 && loc[1] == len(s)
		if got := m.match(s); got != whole {
			t.Fatalf("re:%q matches %q = %v, but the body alone matches all of it = %v", body, s, got, whole)
		}
	})
}
