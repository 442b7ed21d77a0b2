package policy

import (
	"fmt"
	"slices"
	"strings"
)

// Lint refusals. Each refuses a policy at load time; a policy lifts one by
// naming it in allow:, which loads with a loud warning.
const (
	// LintSharedIssuerWithoutTenant: the issuer is shared by many tenants and
	// no tenant claim (Issuer.TenantClaims) is pinned to an exact value, so
	// any tenant of the issuer could match (a recycled org name, say).
	LintSharedIssuerWithoutTenant = "shared_issuer_without_tenant"
	// LintAnyRepository: the policy admits any repository of the issuer: a
	// shared issuer with neither subject nor a repository claim, or a
	// subject_pattern whose repository part is all wildcards.
	LintAnyRepository = "any_repository"
	// LintWideWildcard: a pattern can match '/' or ':' through a wildcard
	// ("**", or a regular expression with '.' or a wide character class), so
	// it crosses org, repository or ref boundaries.
	LintWideWildcard = "wide_wildcard"
)

var lintKeys = []string{LintSharedIssuerWithoutTenant, LintAnyRepository, LintWideWildcard}

// Claims the warnings look at (GitHub Actions names).
const (
	claimRunnerEnvironment = "runner_environment"
	claimEventName         = "event_name"
	claimJTI               = "jti"
	eventPullRequestTarget = "pull_request_target"
)

// refusal is one lint finding before allow: is applied.
type refusal struct {
	lint, key, msg string
}

// lint checks a compiled policy. Refusals not lifted by allow: are errors;
// lifted ones, lifted issuer guardrails and risky-but-legal shapes are
// warnings.
func lint(p *Policy, guardrails []*Guardrail) ([]error, []Warning) {
	var errs []error
	var warns []Warning
	warn := func(key, format string, args ...any) {
		warns = append(warns, Warning{File: p.File, Line: p.lineOf(key), Policy: p.Name, Message: fmt.Sprintf(format, args...)})
	}
	fired := map[string]bool{}
	for _, r := range refusals(p) {
		fired[r.lint] = true
		if slices.Contains(p.Allow, r.lint) {
			warn(r.key, "LIFTED refusal %s: %s", r.lint, r.msg)
			continue
		}
		errs = append(errs, p.errorf(r.key, "refused (%s): %s (or lift it with allow: [%s])", r.lint, r.msg, r.lint))
	}
	for _, a := range p.Allow {
		if !fired[a] && slices.Contains(lintKeys, a) {
			warn("allow", "allow: %s lifts nothing; remove it", a)
		}
	}
	warns = append(warns, liftedGuardrailWarnings(p, guardrails)...)
	c := p.compiled
	if p.singleUse() && c.info != nil && c.info.KnownClaims != nil && !slices.Contains(c.info.KnownClaims, claimJTI) {
		warn("single_use", "single_use (the default) needs a jti, and tokens of issuer %q carry none: the broker refuses every exchange; set single_use: false", c.issuer)
	}
	if m := c.claim(claimEventName); m != nil && m.match(eventPullRequestTarget) {
		warn("claims."+claimEventName, "admits event_name %s, which runs with the base repository's privileges on pull requests from forks", eventPullRequestTarget)
	}
	if !hasDeployScope(p.Grant.Scopes) {
		return errs, warns
	}
	if hosted, ok := hostedRunner(c.info, c.issuer); ok && c.claim(claimRunnerEnvironment) == nil && !guarded(p, guardrails, claimRunnerEnvironment) {
		pin := " pinned to the provider's hosted-runner value"
		if hosted != "" {
			pin = ": " + hosted
		}
		warn("grant.scopes", "grants a deploy scope without excluding self-hosted runners: add claims.%s%s or a guardrail on %s", claimRunnerEnvironment, pin, claimRunnerEnvironment)
	}
	if sendsEventName(c.info, c.issuer) && c.claim(claimEventName) == nil && !strings.Contains(p.Condition, claimEventName) && !guarded(p, guardrails, claimEventName) {
		warn("grant.scopes", "grants a deploy scope for every event: pin claims.%s (e.g. push) or add a guardrail denying %s", claimEventName, eventPullRequestTarget)
	}
	return errs, warns
}

// refusals lists the lint refusals that apply to a compiled policy.
func refusals(p *Policy) []refusal {
	c := p.compiled
	var out []refusal
	shared := c.info != nil && len(c.info.TenantClaims) > 0
	if shared && !pinsExactly(c, c.info.TenantClaims) {
		out = append(out, refusal{LintSharedIssuerWithoutTenant, "claims", fmt.Sprintf(
			"issuer %q is shared by many tenants and the policy pins none: add claims.%s with the tenant's immutable id%s",
			c.issuer, c.info.TenantClaims[0], alternatives(c.info.TenantClaims[1:]))})
	}
	switch {
	case c.subject != nil && c.subject.anyRepository():
		out = append(out, refusal{LintAnyRepository, "subject_pattern", fmt.Sprintf(
			"subject_pattern %q admits any repository: name the repository (or org) in the pattern", p.SubjectPattern)})
	case shared && c.subject == nil && !pinsRepository(c):
		out = append(out, refusal{LintAnyRepository, "claims", fmt.Sprintf(
			"no subject and no repository claim: any repository of the tenant matches: set subject, subject_pattern or claims.%s",
			repositoryClaims(c.info)[0])})
	}
	if c.subject != nil && c.subject.wide() {
		out = append(out, refusal{LintWideWildcard, "subject_pattern", wideMessage(p.SubjectPattern)})
	}
	for _, cm := range c.claims {
		if cm.m.wide() {
			out = append(out, refusal{LintWideWildcard, "claims." + cm.name, wideMessage(cm.m.raw)})
		}
	}
	return out
}

func wideMessage(v string) string {
	return fmt.Sprintf("%q can match across '/' or ':': use '*' (one segment) or a regular expression without '.'", v)
}

func pinsExactly(c *compiledPolicy, names []string) bool {
	for _, n := range names {
		if m := c.claim(n); m != nil && m.kind == matchExact {
			return true
		}
	}
	return false
}

func pinsRepository(c *compiledPolicy) bool {
	for _, n := range repositoryClaims(c.info) {
		if m := c.claim(n); m != nil && !m.anyRepository() {
			return true
		}
	}
	return false
}

func repositoryClaims(is *Issuer) []string {
	if is != nil && is.RepositoryClaims != nil {
		return is.RepositoryClaims
	}
	return DefaultRepositoryClaims
}

// hostedRunners are the runner_environment values of the hosted runners of
// the providers that send the claim, told apart by a claim only that
// provider sends, or by its issuer URL when the issuer's claims are unknown.
var hostedRunners = []struct {
	claim, value string
	isURL        func(string) bool
}{
	{"repository_owner_id", "github-hosted", isGitHubURL},
	{"namespace_id", "gitlab-hosted", func(u string) bool { return u == "https://gitlab.com" }},
	{"organization_slug", "buildkite-hosted", func(u string) bool { return u == "https://agent.buildkite.com" }},
}

// isGitHubURL reports whether u is a GitHub Actions issuer: github.com's,
// a GHE.com enterprise's, or a GitHub Enterprise Server's.
func isGitHubURL(u string) bool {
	return strings.HasPrefix(u, "https://token.actions.githubusercontent.com") || strings.HasSuffix(u, "/_services/token")
}

// sendsEventName reports whether tokens of the issuer carry event_name (a
// GitHub Actions claim): its known claims say so or, without a claim
// list, its URL is GitHub's.
func sendsEventName(is *Issuer, issuerURL string) bool {
	if is != nil && is.KnownClaims != nil {
		return slices.Contains(is.KnownClaims, claimEventName)
	}
	return isGitHubURL(issuerURL)
}

// hostedRunner reports whether tokens of the issuer say where the job ran
// (runner_environment), and the value of a hosted runner, when known. An
// issuer whose known claims lack runner_environment does not; one without
// a claim list does only if its URL is a known provider's.
func hostedRunner(is *Issuer, issuerURL string) (string, bool) {
	if is != nil && is.KnownClaims != nil {
		if !slices.Contains(is.KnownClaims, claimRunnerEnvironment) {
			return "", false
		}
		for _, h := range hostedRunners {
			if slices.Contains(is.KnownClaims, h.claim) {
				return h.value, true
			}
		}
		return "", true
	}
	for _, h := range hostedRunners {
		if h.isURL(issuerURL) {
			return h.value, true
		}
	}
	return "", false
}

// guarded reports whether a guardrail on the policy's issuer, and not
// lifted by the policy, constrains the claim.
func guarded(p *Policy, guardrails []*Guardrail, claim string) bool {
	for _, g := range guardrails {
		gc := g.compiled
		if gc == nil || (gc.issuer != "" && gc.issuer != p.compiled.issuer) || lifts(p, g) {
			continue
		}
		if gc.claim(claim) != nil || strings.Contains(g.Condition, claim) {
			return true
		}
	}
	return false
}

func hasDeployScope(scopes []string) bool {
	for _, s := range scopes {
		if strings.Contains(strings.ToLower(s), "deploy") {
			return true
		}
	}
	return false
}

func alternatives(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return " (or claims." + strings.Join(names, ", claims.") + ")"
}
