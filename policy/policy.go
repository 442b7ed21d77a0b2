package policy

import (
	"fmt"
	"time"
)

// File is one parsed policy file: its trust policies and its guardrails, in
// file order.
type File struct {
	// Name is the file name used in error messages.
	Name string
	// Policies are the allow rules of the file.
	Policies []*Policy
	// Guardrails are the deny rules of the file; they win over every allow.
	Guardrails []*Guardrail
}

// Policy is one trust policy as written: declarative fields only. A Policy
// must be compiled (NewSet does it) before it can take part in a decision;
// evaluating an uncompiled policy is refused.
type Policy struct {
	// Name identifies the policy; it is unique across a Set.
	Name string
	// Issuer is the exact iss the token must carry. Exactly one of Issuer and
	// Provider is set.
	Issuer string
	// Provider names a configured issuer (LoadOptions.Issuers[i].Name).
	Provider string
	// Audience must be one of the incoming token's aud values.
	Audience string
	// Subject is the exact sub; at most one of Subject and SubjectPattern.
	Subject string
	// SubjectPattern is an anchored glob or, prefixed "re:", an RE2 pattern.
	SubjectPattern string
	// Claims maps a claim name to a plain value (exact match), a glob (the
	// value contains '*' or '?') or an RE2 pattern (prefixed "re:").
	Claims map[string]string
	// Condition is an optional CEL expression of type bool over `claims`.
	Condition string
	// SingleUse reports whether each (iss, jti) may be exchanged once only.
	// nil means true, the safe default.
	SingleUse *bool
	// Allow lists the lint refusals this policy lifts (see the Lint* constants).
	Allow []string
	// AllowExtraAudiences admits a token whose aud holds values other than
	// Audience. The zero value refuses such tokens.
	AllowExtraAudiences bool
	// Grant is what the policy hands out.
	Grant GrantSpec

	// File and Line locate the policy for messages; zero when built in Go.
	File string
	Line int

	lines    map[string]int // key path ("grant.ttl", "claims.ref") -> line
	compiled *compiledPolicy
}

// GrantSpec is the most a policy hands out; a request may narrow it.
type GrantSpec struct {
	// Type is GrantJWT or GrantAPIKey; empty means GrantJWT.
	Type string
	// Audience lists the audiences the credential may be minted for (required).
	Audience []string
	// Scopes lists the scopes a request may ask for.
	Scopes []string
	// TTL is the longest the credential may live (required, > 0).
	TTL time.Duration
	// Uses is the api_key's number of uses; 0 means unlimited.
	Uses int
	// Claims maps a claim name of the minted credential to a text/template
	// rendered over the verified token's claims, e.g. "{{ .repository }}".
	Claims map[string]string
}

// Guardrail is a deny rule as written. It matches when every matcher it
// lists matches; a guardrail that lists no issuer applies to every issuer.
type Guardrail struct {
	// Name identifies the guardrail in decisions and the audit trail.
	Name string
	// Issuer or Provider optionally restrict the guardrail to one issuer.
	Issuer   string
	Provider string
	// Subject and SubjectPattern match sub as in Policy.
	Subject        string
	SubjectPattern string
	// Claims match as in Policy.
	Claims map[string]string
	// Condition is an optional CEL expression as in Policy.
	Condition string

	// File and Line locate the guardrail for messages; zero when built in Go.
	File string
	Line int

	lines    map[string]int
	compiled *compiledRule
}

// Issuer describes one configured token issuer to the policy loader.
type Issuer struct {
	// Name is the provider name that `provider:` refers to.
	Name string
	// URL is the exact issuer (iss) URL.
	URL string
	// TenantClaims, when non-empty, marks the issuer as shared by many
	// tenants: every policy on it must pin one of these claims to an exact
	// value (e.g. repository_owner_id), or lint refuses it.
	TenantClaims []string
	// KnownClaims, when non-nil, lists every claim name the issuer emits; a
	// claim matcher on any other name is a load error (typo guard).
	KnownClaims []string
	// RepositoryClaims lists the claims that pin a repository or project
	// (checked by the any_repository lint on shared issuers). nil means
	// DefaultRepositoryClaims.
	RepositoryClaims []string
}

// DefaultRepositoryClaims are the claims of the common CI providers that name
// one repository or project.
var DefaultRepositoryClaims = []string{
	"repository", "repository_id", // GitHub Actions
	"project_path", "project_id", // GitLab CI
	"pipeline_slug", "pipeline_id", // Buildkite
	"oidc.circleci.com/project-id", // CircleCI
}

// LoadOptions configures loading and linting. The zero value loads with no
// issuer table: any issuer: is accepted, provider: is refused, and no issuer
// counts as shared.
type LoadOptions struct {
	// Issuers are the configured issuers. When non-nil, an issuer: that is
	// not among them is a load error.
	Issuers []Issuer
}

// Warning is a finding of the load that does not refuse the policy.
type Warning struct {
	File    string
	Line    int
	Policy  string
	Message string
}

// String formats the warning as "file:line: policy "name": message".
func (w Warning) String() string {
	return fmt.Sprintf("%s: %s", location(w.File, w.Line), withRule(w.Policy, w.Message))
}

// Error is one load error, located at a file line and naming the policy (or
// guardrail) and key at fault. LoadPath and NewSet return every Error of a
// load joined with errors.Join.
type Error struct {
	File string
	Line int
	// Rule is `policy "name"` or `guardrail "name"`; empty for file-level errors.
	Rule string
	// Key is the key path at fault, e.g. "grant.ttl"; may be empty.
	Key string
	Err error
}

// Error formats as `file:line: policy "name": key: message`.
func (e *Error) Error() string {
	msg := e.Err.Error()
	if e.Key != "" {
		msg = e.Key + ": " + msg
	}
	if e.Rule != "" {
		msg = e.Rule + ": " + msg
	}
	return location(e.File, e.Line) + ": " + msg
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

func location(file string, line int) string {
	if file == "" {
		file = "<policy>"
	}
	if line <= 0 {
		return file
	}
	return fmt.Sprintf("%s:%d", file, line)
}

func withRule(name, msg string) string {
	if name == "" {
		return msg
	}
	return fmt.Sprintf("policy %q: %s", name, msg)
}

// singleUse resolves the SingleUse default.
func (p *Policy) singleUse() bool { return p.SingleUse == nil || *p.SingleUse }

// lineOf returns the line of a key path, falling back to the policy line.
func (p *Policy) lineOf(key string) int {
	if l, ok := p.lines[key]; ok {
		return l
	}
	return p.Line
}

func (p *Policy) errorf(key, format string, args ...any) *Error {
	return &Error{File: p.File, Line: p.lineOf(key), Rule: fmt.Sprintf("policy %q", p.Name), Key: key, Err: fmt.Errorf(format, args...)}
}

func (g *Guardrail) lineOf(key string) int {
	if l, ok := g.lines[key]; ok {
		return l
	}
	return g.Line
}

func (g *Guardrail) errorf(key, format string, args ...any) *Error {
	return &Error{File: g.File, Line: g.lineOf(key), Rule: fmt.Sprintf("guardrail %q", g.Name), Key: key, Err: fmt.Errorf(format, args...)}
}
