package policy

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestClaimRefs(t *testing.T) {
	env, err := newCELEnv()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		src  string
		want []claimRef
	}{
		{"select", `claims.ref == "main"`, []claimRef{{"ref", 1, 1}}},
		{"index with a constant", `claims["oidc.circleci.com/project-id"] == "x"`, []claimRef{{"oidc.circleci.com/project-id", 1, 1}}},
		{"has", `has(claims.ref_type)`, []claimRef{{"ref_type", 1, 5}}},
		{"in", `"ref" in claims`, []claimRef{{"ref", 1, 1}}},
		{"nested in a call and a list", `claims.ref.startsWith("refs/") && claims.event in ["push", claims.other]`,
			[]claimRef{{"ref", 1, 1}, {"event", 1, 35}, {"other", 1, 60}}},
		{"inside a macro", `claims.groups.exists(g, g == claims.team)`, []claimRef{{"groups", 1, 1}, {"team", 1, 30}}},
		{"second line", "claims.ref == \"x\" ||\nclaims.sha == \"y\"", []claimRef{{"ref", 1, 1}, {"sha", 2, 1}}},
		{"computed index is not a name", `claims[claims.key] == "x"`, []claimRef{{"key", 1, 8}}},
		{"macro variable shadowing claims", `[{"a": 1}].exists(claims, claims.a == 1)`, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := compileCondition(env, tc.src)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, c.claims, cmp.AllowUnexported(claimRef{})); diff != "" {
				t.Errorf("claimRefs(%q) (-want +got):\n%s", tc.src, diff)
			}
		})
	}
}

// TestConditionUnknownClaim: a condition naming a claim the issuer does not
// emit is a load error at the condition's line, for policies and
// guardrails; without a known-claims list any name loads.
func TestConditionUnknownClaim(t *testing.T) {
	known := []Issuer{{Name: "gh", URL: githubURL, KnownClaims: []string{"ref", "ref_type", "event_name"}}, {Name: "ci", URL: "http://ci.example"}}
	tests := []struct {
		name string
		src  string
		want []string // substrings of the error; nil means it loads
	}{
		{"policy select typo", policyYAML("provider: gh", "read", `condition: 'claims.reftype == "branch"'`),
			[]string{`test.yaml:5: policy "p": condition: claims.reftype at 1:1: issuer "` + githubURL + `" has no claim "reftype"`}},
		{"policy has typo", policyYAML("provider: gh", "read", `condition: 'has(claims.evnt) && claims.ref == "x"'`),
			[]string{`has no claim "evnt"`}},
		{"policy index typo", policyYAML("provider: gh", "read", `condition: 'claims["reff"] == "x"'`),
			[]string{`has no claim "reff"`}},
		{"two typos, one error each", policyYAML("provider: gh", "read", `condition: 'claims.a == "x" || claims.a == "y" || claims.b == "z"'`),
			[]string{`has no claim "a"`, `has no claim "b"`}},
		{"guardrail typo", "guardrails:\n  - name: g\n    provider: gh\n    condition: 'claims.event == \"x\"'\n",
			[]string{`test.yaml:4: guardrail "g": condition: claims.event at 1:1: issuer "` + githubURL + `" has no claim "event"`}},
		{"known claims load", policyYAML("provider: gh", "read", `condition: 'has(claims.ref_type) && claims["ref"] == "x"'`), nil},
		{"issuer without known claims", policyYAML("provider: ci", "read", `condition: 'claims.anything == "x"'`), nil},
		{"guardrail on every issuer", "guardrails:\n  - {name: g, condition: 'claims.anything == \"x\"'}\n", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, tc.src, LoadOptions{Issuers: known})
			if tc.want == nil {
				if err != nil {
					t.Fatalf("load: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("load succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if n := len(flattenErrs(err)); n != len(tc.want) {
				t.Errorf("got %d errors, want %d: %v", n, len(tc.want), err)
			}
		})
	}
}

func flattenErrs(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flattenErrs(e)...)
		}
		return out
	}
	return []error{err}
}

// FuzzClaimRefs: whatever condition compiles, walking it neither panics nor
// returns a reference without a position in the source.
func FuzzClaimRefs(f *testing.F) {
	for _, s := range []string{`claims.ref == "x"`, `has(claims.a) && claims["b"] == 1`, `"c" in claims`,
		`claims.l.exists(x, x == claims.d)`, `[1].all(claims, claims > 0)`, "claims.a == 1 ||\nclaims.b == 2"} {
		f.Add(s)
	}
	env, err := newCELEnv()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, src string) {
		c, err := compileCondition(env, src)
		if err != nil {
			return
		}
		for _, r := range c.claims {
			if r.line < 1 || r.column < 1 {
				t.Errorf("claimRefs(%q): %v has no position", src, r)
			}
		}
	})
}
