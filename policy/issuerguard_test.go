package policy

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const presetPRT = "preset:github-actions:no-pull-request-target"

// presetIssuers is testIssuers with GitHub's preset guardrail, as serve
// passes it.
func presetIssuers() []Issuer {
	gh := Issuer{Name: "github", URL: githubURL, TenantClaims: []string{"repository_owner_id"},
		Guardrails: []IssuerGuardrail{{
			Name: presetPRT, Claims: map[string]string{"event_name": "pull_request_target"},
			Allow: "pull_request_target", Why: "runs with the base repository's privileges on code from forks",
		}}}
	return []Issuer{gh, {Name: "ci", URL: "http://ci.example"}}
}

// prtFile has two policies on the same identity: "app" (line 2) and
// "forks" (line 8) that opts out of the preset guardrail, for audience
// fork-api only.
const prtFile = `policies:
  - name: app
    provider: github
    audience: broker
    subject: repo:octo-org/app:ref:refs/heads/main
    claims: {repository_owner_id: "1"}
    grant: {audience: [api], scopes: [read], ttl: 5m}
  - name: forks
    provider: github
    audience: broker
    subject: repo:octo-org/app:ref:refs/heads/main
    claims: {repository_owner_id: "1"}
    allow: [pull_request_target]
    grant: {audience: [fork-api], scopes: [read], ttl: 5m}
`

func prtReq(event string, targets ...string) Request {
	return Request{
		Issuer: githubURL, Subject: "repo:octo-org/app:ref:refs/heads/main", Audience: []string{"broker"},
		Claims:    map[string]any{"repository_owner_id": json.Number("1"), "event_name": event},
		TokenType: GrantJWT, Targets: targets,
	}
}

func TestIssuerGuardrailDenies(t *testing.T) {
	// No file guardrail: the preset guardrail alone refuses the event.
	src := strings.Split(prtFile, "  - name: forks")[0]
	s, err := load(t, src, LoadOptions{Issuers: presetIssuers()})
	if err != nil {
		t.Fatal(err)
	}
	if d, err := s.Evaluate(prtReq("push")); err != nil || d.Policy != "app" {
		t.Fatalf("push: Evaluate = %+v, %v; want allow app", d, err)
	}
	_, err = s.Evaluate(prtReq("pull_request_target"))
	var deny *DenyError
	if !errors.As(err, &deny) || deny.Code != DenyGuardrail || deny.Policy != presetPRT {
		t.Fatalf("pull_request_target: Evaluate error = %v, want DenyGuardrail by %s", err, presetPRT)
	}
	// A token no policy matches is refused by the guardrail, too.
	req := prtReq("pull_request_target")
	req.Subject = "repo:octo-org/other:ref:refs/heads/main"
	if _, err := s.Evaluate(req); !errors.As(err, &deny) || deny.Code != DenyGuardrail {
		t.Fatalf("unmatched subject: Evaluate error = %v, want DenyGuardrail", err)
	}
	// Explain lists the preset guardrail first, as a guardrail that matches.
	got := s.Explain(prtReq("pull_request_target"))[0]
	want := Explanation{Kind: "guardrail", Name: presetPRT, File: "provider github", Matched: true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Explain[0] (-want +got):\n%s", diff)
	}
}

func TestIssuerGuardrailOptOut(t *testing.T) {
	s, err := load(t, prtFile, LoadOptions{Issuers: presetIssuers()})
	if err != nil {
		t.Fatal(err)
	}
	lifted := Warning{File: "test.yaml", Line: 13, Policy: "forks", Message: "LIFTED guardrail " + presetPRT +
		` (allow: pull_request_target): tokens with event_name "pull_request_target" are admitted by this policy: runs with the base repository's privileges on code from forks`}
	if !slices.Contains(s.Warnings(), lifted) {
		t.Errorf("Warnings() = %q, want it to contain %q", s.Warnings(), lifted)
	}
	tests := []struct {
		name   string
		req    Request
		want   string   // the allowed policy; "" for a refusal
		lifted []string // Decision.Lifted
		deny   DenyCode
	}{
		{"push selects the first policy by name", prtReq("push"), "app", nil, 0},
		{"push for fork-api selects forks", prtReq("push", "fork-api"), "forks", []string{"pull_request_target"}, 0},
		{"push for api selects app", prtReq("push", "api"), "app", nil, 0},
		{"pull_request_target reaches only the opting-out policy", prtReq("pull_request_target"), "forks", []string{"pull_request_target"}, 0},
		{"pull_request_target for api: forks does not grant api", prtReq("pull_request_target", "api"), "", nil, DenyTarget},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := s.Evaluate(tc.req)
			if tc.want == "" {
				var deny *DenyError
				if !errors.As(err, &deny) || deny.Code != tc.deny || deny.Policy != "forks" {
					t.Fatalf("Evaluate = %+v, %v; want deny code %d naming forks", d, err, tc.deny)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.Policy != tc.want || !slices.Equal(d.Lifted, tc.lifted) {
				t.Errorf("Evaluate = policy %q lifted %q, want %q lifted %q", d.Policy, d.Lifted, tc.want, tc.lifted)
			}
		})
	}
}

func TestIssuerGuardrailLoadErrors(t *testing.T) {
	gh := func(gs ...IssuerGuardrail) []Issuer {
		is := presetIssuers()
		is[0].KnownClaims = []string{"event_name", "ref", "repository_owner_id"}
		is[0].Guardrails = append(is[0].Guardrails, gs...)
		return is
	}
	tests := []struct {
		name    string
		src     string
		issuers []Issuer
		want    string
	}{
		{"allow key of another issuer", policyYAML("provider: ci", "read", "allow: [pull_request_target]"), presetIssuers(),
			`test.yaml:5: policy "p": allow: unknown refusal "pull_request_target"`},
		{"file guardrail takes a preset name", "guardrails:\n  - {name: " + presetPRT + ", claims: {ref: x}}\n", presetIssuers(),
			`guardrail "` + presetPRT + `": name: duplicate guardrail name, first defined by provider github`},
		{"unknown claim", "", gh(IssuerGuardrail{Name: "g", Claims: map[string]string{"evnt": "x"}, Allow: "x"}),
			`provider github: guardrail "g": claims.evnt: issuer "` + githubURL + `" has no claim "evnt"`},
		{"no claims", "", gh(IssuerGuardrail{Name: "g", Allow: "x"}), `claims: required`},
		{"lint key as allow key", "", gh(IssuerGuardrail{Name: "g", Claims: map[string]string{"ref": "x"}, Allow: LintWideWildcard}),
			`allow: "wide_wildcard" is a lint refusal`},
		{"same name twice", "", gh(IssuerGuardrail{Name: presetPRT, Claims: map[string]string{"ref": "x"}, Allow: "x"}),
			`name: duplicate guardrail name for issuer`},
		{"issuer without URL", "", []Issuer{{Name: "x", Guardrails: []IssuerGuardrail{{Name: "g", Claims: map[string]string{"ref": "x"}}}}},
			`needs the issuer's URL`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, tc.src, LoadOptions{Issuers: tc.issuers})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("load error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestLiftedGuardrailNoLongerGuards: a policy that lifts the preset
// guardrail on event_name is warned about deploying for every event, as
// if the guardrail did not exist; one that keeps it is not.
func TestLiftedGuardrailNoLongerGuards(t *testing.T) {
	is := presetIssuers()
	is[0].KnownClaims = []string{"event_name", "repository_owner_id", "repository"}
	base := []string{"subject: repo:o/a:ref:refs/heads/main", `claims: {repository_owner_id: "1"}`}
	everyEvent := "grants a deploy scope for every event"
	for _, tc := range []struct {
		name  string
		extra []string
		want  bool
	}{
		{"guarded by the preset", base, false},
		{"guardrail lifted", append(slices.Clone(base), "allow: [pull_request_target]"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := load(t, policyYAML("provider: github", "deploy", tc.extra...), LoadOptions{Issuers: is})
			if err != nil {
				t.Fatal(err)
			}
			got := slices.ContainsFunc(s.Warnings(), func(w Warning) bool { return strings.Contains(w.Message, everyEvent) })
			if got != tc.want {
				t.Errorf("warned %q = %t, want %t: %q", everyEvent, got, tc.want, s.Warnings())
			}
		})
	}
}
