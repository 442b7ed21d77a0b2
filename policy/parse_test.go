package policy

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

const githubURL = "https://token.actions.githubusercontent.com"

// testIssuers is a GitHub-like shared issuer and a private one.
var testIssuers = []Issuer{
	{Name: "github", URL: githubURL, TenantClaims: []string{"repository_owner_id"}},
	{Name: "ci", URL: "http://ci.example"},
}

func TestLoadPathDirectory(t *testing.T) {
	s, err := LoadPath("testdata/valid", LoadOptions{Issuers: testIssuers})
	if err != nil {
		t.Fatal(err)
	}
	no := false
	want := []*Policy{
		{
			Name: "deploy-prod", Provider: "github", Audience: "https://broker.example.com",
			Subject:   "repo:octo-org/app:environment:prod",
			Claims:    map[string]string{"repository_owner_id": "1234567", "ref": "refs/heads/main"},
			Condition: `claims.ref_type == "branch"`,
			Grant: GrantSpec{Type: "jwt", Audience: []string{"deploy-api"}, Scopes: []string{"deploy:prod", "deploy:read"},
				TTL: 10 * time.Minute, Claims: map[string]string{"repository": "{{ .repository }}"}},
			File: "testdata/valid/github.yaml", Line: 11,
		},
		{
			Name: "ci-read", Provider: "github", Audience: "https://broker.example.com",
			SubjectPattern: "repo:octo-org/*:ref:refs/heads/main",
			Claims:         map[string]string{"repository_owner_id": "1234567"},
			SingleUse:      &no,
			Grant:          GrantSpec{Type: "api_key", Audience: []string{"artifacts"}, Scopes: []string{"read"}, TTL: time.Hour, Uses: 5},
			File:           "testdata/valid/github.yaml", Line: 27,
		},
		{
			Name: "local-any", Issuer: "http://ci.example", Audience: "broker",
			Grant: GrantSpec{Audience: []string{"api"}, TTL: 5 * time.Minute},
			File:  "testdata/valid/local.yml", Line: 3,
		},
	}
	if diff := cmp.Diff(want, s.Policies(), cmpopts.IgnoreUnexported(Policy{})); diff != "" {
		t.Errorf("policies (-want +got):\n%s", diff)
	}
	if s.Len() != 3 || len(s.Guardrails()) != 2 {
		t.Errorf("Len() = %d, guardrails = %d; want 3 and 2", s.Len(), len(s.Guardrails()))
	}
	if w := s.Warnings(); len(w) != 0 {
		t.Errorf("unexpected warnings: %v", w)
	}
	for _, p := range s.Policies() {
		if !p.Compiled() {
			t.Errorf("policy %q is not compiled", p.Name)
		}
	}
}

func TestLoadPathSingleFile(t *testing.T) {
	s, err := LoadPath("testdata/valid/local.yml", LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 1 {
		t.Errorf("Len() = %d, want 1", s.Len())
	}
	if _, err := LoadPath("testdata/missing.yaml", LoadOptions{}); err == nil {
		t.Error("LoadPath(missing) succeeded")
	}
}

// TestLoadErrors checks that a load reports every error, each naming file,
// line, policy and key.
func TestLoadErrors(t *testing.T) {
	_, err := LoadPath("testdata/errors", LoadOptions{Issuers: testIssuers})
	if err == nil {
		t.Fatal("LoadPath succeeded, want errors")
	}
	want := []string{
		`testdata/errors/compile.yaml:5: policy "cel-not-bool": condition: must be a bool expression, not dyn (compare explicitly, e.g. claims.x == true)`,
		`testdata/errors/compile.yaml:10: policy "cel-type-error": condition: invalid CEL at 1:17: found no matching overload for '_+_' applied to '(int, string)'`,
		`testdata/errors/compile.yaml:16: policy "both-subjects": subject_pattern: set subject or subject_pattern, not both`,
		`testdata/errors/compile.yaml:18: policy "grant-problems": audience: required: the audience the incoming token must carry`,
		`testdata/errors/compile.yaml:19: policy "grant-problems": provider: unknown provider "nope"`,
		`testdata/errors/compile.yaml:20: policy "grant-problems": grant.type: must be "jwt" or "api_key", not "token"`,
		`testdata/errors/compile.yaml:20: policy "grant-problems": grant.audience: required: at least one audience`,
		`testdata/errors/compile.yaml:20: policy "grant-problems": grant.ttl: required: a duration > 0, e.g. 10m`,
		`testdata/errors/compile.yaml:20: policy "grant-problems": grant.uses: only an api_key grant has uses`,
		`testdata/errors/compile.yaml:28: policy "bad-template": grant.claims.repo: invalid template: template: repo:1: unclosed action`,
		`testdata/errors/compile.yaml:29: policy "bad-template": grant.claims.sub: claim "sub" is set by the broker and cannot be granted`,
		`testdata/errors/compile.yaml:30: policy "cel-not-bool": name: duplicate policy name, first defined at testdata/errors/compile.yaml:2`,
		`testdata/errors/parse.yaml:7: policy "deploy-prod": grant.ttl: invalid duration "10x"`,
		`testdata/errors/parse.yaml:10: policy "typo": audiance: unknown key`,
		`testdata/errors/parse.yaml:13: policy "bad-bool": single_use: must be true or false, not "maybe"`,
		`testdata/errors/parse.yaml:14: extra: unknown key (want policies or guardrails)`,
	}
	got := strings.Split(err.Error(), "\n")
	less := func(a, b string) bool { return a < b }
	if diff := cmp.Diff(want, got, cmpopts.SortSlices(less)); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
	var e *Error
	if !errors.As(err, &e) || e.File == "" || e.Line == 0 {
		t.Errorf("errors.As(*Error) = %+v, want a located *Error", e)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name, yaml string
		wantErr    string // substring; empty means success
		policies   int
	}{
		{"empty file", "", "", 0},
		{"comment only", "# nothing\n", "", 0},
		{"empty lists", "policies: []\nguardrails: []\n", "", 0},
		{"top level list", "- a\n", "test.yaml:1: must be a mapping", 0},
		{"two documents", "policies: []\n---\npolicies: []\n", "test.yaml:2: only one YAML document", 0},
		{"invalid yaml", "policies: [\n", "test.yaml: invalid YAML", 0},
		{"duplicate key", "policies:\n  - name: a\n    name: b\n", `test.yaml:3: policy "a": name: duplicate key`, 0},
		{"claims must be scalars", "policies:\n  - name: a\n    claims:\n      ref: [x]\n", `test.yaml:4: policy "a": claims.ref: must be a string`, 0},
		{"claim null", "policies:\n  - name: a\n    claims:\n      ref:\n", `test.yaml:4: policy "a": claims.ref: must be a string`, 0},
		{"audience list", "policies:\n  - name: a\n    grant:\n      audience: x\n", `test.yaml:4: policy "a": grant.audience: must be a list`, 0},
		{"uses not a number", "policies:\n  - name: a\n    grant:\n      uses: many\n", `grant.uses: invalid number "many"`, 0},
		{"unknown grant key", "policies:\n  - name: a\n    grant:\n      scope: [x]\n", `test.yaml:4: policy "a": grant.scope: unknown key`, 0},
		{"unknown guardrail key", "guardrails:\n  - name: g\n    audience: x\n", `test.yaml:3: guardrail "g": audience: unknown key`, 0},
		{"policy not a mapping", "policies:\n  - x\n", `test.yaml:2: policy "": must be a mapping`, 0},
		{"anchors resolve", "x: &c {ref: main}\n", "x: unknown key", 0},
		{"numbers and bools as claim text", "policies:\n  - name: a\n    claims: {id: 12, ok: True, f: 1.5}\n", "", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse("test.yaml", []byte(tt.yaml))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse() error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(f.Policies) != tt.policies {
				t.Errorf("got %d policies, want %d", len(f.Policies), tt.policies)
			}
		})
	}
}

func TestParseClaimText(t *testing.T) {
	f, err := Parse("test.yaml", []byte("policies:\n  - name: a\n    claims: {id: 12, ok: True, f: 1.5, s: \"0012\"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"id": "12", "ok": "true", "f": "1.5", "s": "0012"}
	if diff := cmp.Diff(want, f.Policies[0].Claims); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}
}

// FuzzParse checks that parsing, and compiling what parses, never panics
// and that every error is located in the file.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"testdata/valid/github.yaml", "testdata/errors/parse.yaml", "testdata/errors/compile.yaml"} {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("policies:\n  - &a {name: x}\n  - *a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse("fuzz.yaml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Fatalf("error not located: %v", err)
			}
			return
		}
		s, err := NewSet([]*File{file}, LoadOptions{})
		if err != nil {
			return
		}
		_, _ = s.Evaluate(Request{Issuer: "http://ci.example", Subject: "x", Audience: []string{"broker"}})
	})
}
