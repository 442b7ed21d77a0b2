package policy

import (
	"fmt"
	"time"
)

// File is one parsed policy file: its trust policies and its guardrails, in
// file order.
type File struct {
	// Name is the file name used in error messages.
	Name string `yaml:"-"`
	// Policies are the allow rules of the file.
	Policies []*Policy `yaml:"policies"`
	// Guardrails are the deny rules of the file; they win over every allow.
	Guardrails []*Guardrail `yaml:"guardrails"`
}

// Policy is one trust policy as written: declarative fields only. A Policy
// must be compiled (NewSet does it) before it can take part in a decision;
// evaluating an uncompiled policy is refused.
type Policy struct {
	// Name identifies the policy; it is unique across a Set.
	Name string `yaml:"name" schema:"required"`
	// Issuer is the exact iss the token must carry. Exactly one of Issuer and
	// Provider is set.
	Issuer string `yaml:"issuer"`
	// Provider names a configured issuer (LoadOptions.Issuers[i].Name).
	Provider string `yaml:"provider"`
	// Audience must be one of the incoming token's aud values.
	Audience string `yaml:"audience" schema:"required"`
	// Subject is the exact sub; at most one of Subject and SubjectPattern.
	Subject string `yaml:"subject"`
	// SubjectPattern is an anchored glob or, prefixed "re:", an RE2 pattern.
	SubjectPattern string `yaml:"subject_pattern"`
	// Claims maps a claim name to a plain value (exact match), a glob (the
	// value contains '*' or '?') or an RE2 pattern (prefixed "re:").
	Claims map[string]string `yaml:"claims"`
	// Condition is an optional CEL expression of type bool over `claims`.
	Condition string `yaml:"condition"`
	// SingleUse reports whether each (iss, jti) may be exchanged once only.
	// nil means true, the safe default.
	SingleUse *bool `yaml:"single_use"`
	// Allow lists the lint refusals (see the Lint* constants) and the issuer
	// guardrails (IssuerGuardrail.Allow) this policy lifts. The schema lists
	// the allow keys of the built-in provider presets' guardrails too.
	Allow []string `yaml:"allow" schema:"enum=shared_issuer_without_tenant|any_repository|wide_wildcard|pull_request_target|ssh_rerun"`
	// AllowExtraAudiences admits a token whose aud holds values other than
	// Audience. The zero value refuses such tokens.
	AllowExtraAudiences bool `yaml:"allow_extra_audiences"`
	// Grant is what the policy hands out.
	Grant GrantSpec `yaml:"grant" schema:"required"`

	// File and Line locate the policy for messages; zero when built in Go.
	File string `yaml:"-"`
	Line int    `yaml:"-"`

	lines    map[string]int // key path ("grant.ttl", "claims.ref") -> line
	compiled *compiledPolicy
}

// GrantSpec is the most a policy hands out; a request may narrow it.
type GrantSpec struct {
	// Type is GrantJWT or GrantAPIKey; empty means GrantJWT.
	Type string `yaml:"type" schema:"enum=jwt|api_key"`
	// Audience lists the audiences the credential may be minted for (required).
	Audience []string `yaml:"audience" schema:"required"`
	// Scopes lists the scopes a request may ask for.
	Scopes []string `yaml:"scopes"`
	// TTL is the longest the credential may live (required, > 0).
	TTL time.Duration `yaml:"ttl" schema:"required"`
	// Uses is the api_key's number of uses; 0 means unlimited.
	Uses int `yaml:"uses"`
	// Claims maps a claim name of the minted credential to a text/template
	// rendered over the verified token's claims, e.g. "{{ .repository }}".
	Claims map[string]string `yaml:"claims"`
}

// Guardrail is a deny rule as written. It matches when every matcher it
// lists matches; a guardrail that lists no issuer applies to every issuer.
type Guardrail struct {
	// Name identifies the guardrail in decisions and the audit trail.
	Name string `yaml:"name" schema:"required"`
	// Issuer optionally restricts the guardrail to one exact iss; with
	// neither issuer nor provider it applies to every issuer.
	Issuer string `yaml:"issuer"`
	// Provider optionally restricts the guardrail to a configured provider.
	Provider string `yaml:"provider"`
	// Subject is an exact sub the guardrail matches.
	Subject string `yaml:"subject"`
	// SubjectPattern is an anchored glob or, prefixed "re:", an RE2 pattern
	// on sub, as in Policy.
	SubjectPattern string `yaml:"subject_pattern"`
	// Claims match as in Policy: every listed claim must match.
	Claims map[string]string `yaml:"claims"`
	// Condition is an optional CEL expression of type bool over `claims`.
	Condition string `yaml:"condition"`

	// File and Line locate the guardrail for messages; zero when built in Go.
	File string `yaml:"-"`
	Line int    `yaml:"-"`

	lines    map[string]int
	compiled *compiledRule
	// lift is the allow: key that lifts an issuer guardrail for one
	// policy; empty for a file guardrail, which nothing lifts.
	lift string
	// why explains an issuer guardrail, for the lifted-guardrail warning.
	why string
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
	// Guardrails are deny rules that come with the issuer rather than with
	// a policy file (a provider preset's default guardrails). They apply to
	// every token of the issuer and win over every allow, as file
	// guardrails do, except for a policy that names the guardrail's Allow
	// key in its allow: list. nil means none.
	Guardrails []IssuerGuardrail
}

// IssuerGuardrail is a deny rule attached to a configured issuer. It
// matches a token of the issuer when every listed claim matches.
type IssuerGuardrail struct {
	// Name identifies the guardrail in decisions, the audit trail and
	// `policy explain`; qualify it by its origin, e.g.
	// "preset:github-actions:no-pull-request-target". A file guardrail may
	// not take the same name.
	Name string
	// Claims match as in Policy.Claims (exact, glob or "re:" values); at
	// least one is required.
	Claims map[string]string
	// Allow is the allow: key with which a policy opts out of the
	// guardrail, e.g. "pull_request_target"; it must not be a lint key.
	Allow string
	// Why explains the risk the guardrail closes; it is repeated in the
	// warning printed for every policy that lifts the guardrail.
	Why string
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
	// AllowUnknownIssuers accepts an issuer: that is not among Issuers, as
	// an issuer of one tenant. `tokenbroker policy` uses it when it runs
	// without the broker's configuration; serve never sets it.
	AllowUnknownIssuers bool
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
