package policy

import (
	"fmt"
	"slices"
	"strings"
)

// Issuer guardrails are the deny rules a configured issuer brings with it
// (a provider preset's defaults, e.g. no pull_request_target on GitHub).
// They compile into ordinary Guardrails bound to the issuer, so that they
// are indexed, evaluated, explained and named in deny reasons exactly as
// file guardrails are. The one difference: a policy may opt out of one by
// naming its Allow key in allow:, which loads with a loud warning.

// issuerGuardrails compiles the guardrails of every configured issuer, in
// issuer order.
func (c *compiler) issuerGuardrails(issuers []Issuer) ([]*Guardrail, []error) {
	var out []*Guardrail
	var errs []error
	for i := range issuers {
		is := &issuers[i]
		names := map[string]bool{}
		for _, ig := range is.Guardrails {
			g := &Guardrail{Name: ig.Name, Issuer: is.URL, Claims: ig.Claims, File: issuerSource(is), lift: ig.Allow, why: ig.Why}
			var gerrs []error
			add := func(key, format string, args ...any) { gerrs = append(gerrs, g.errorf(key, format, args...)) }
			switch {
			case is.URL == "":
				add("issuer", "an issuer guardrail needs the issuer's URL")
			case names[ig.Name]:
				add("name", "duplicate guardrail name for issuer %q", is.URL)
			case len(ig.Claims) == 0:
				add("claims", "required: an issuer guardrail matches on at least one claim")
			case slices.Contains(lintKeys, ig.Allow):
				add("allow", "%q is a lint refusal, not a guardrail's allow key", ig.Allow)
			}
			names[ig.Name] = true
			if len(gerrs) == 0 {
				if err := c.guardrail(g); err != nil {
					gerrs = append(gerrs, err)
				}
			}
			if len(gerrs) > 0 {
				errs = append(errs, gerrs...)
				continue
			}
			out = append(out, g)
		}
	}
	return out, errs
}

// issuerSource names where an issuer guardrail comes from, in place of a
// file name.
func issuerSource(is *Issuer) string {
	if is.Name != "" {
		return "provider " + is.Name
	}
	return "issuer " + is.URL
}

// liftKeys returns the allow: keys of an issuer's guardrails.
func liftKeys(is *Issuer) []string {
	if is == nil {
		return nil
	}
	var out []string
	for _, g := range is.Guardrails {
		if g.Allow != "" && !slices.Contains(out, g.Allow) {
			out = append(out, g.Allow)
		}
	}
	return out
}

// lifts reports whether policy p opts out of guardrail g.
func lifts(p *Policy, g *Guardrail) bool {
	return g.lift != "" && slices.Contains(p.Allow, g.lift)
}

// liftedGuardrailWarnings warns, for each issuer guardrail on p's issuer
// that p lifts, that the tokens the guardrail denies reach p.
func liftedGuardrailWarnings(p *Policy, guardrails []*Guardrail) []Warning {
	var warns []Warning
	for _, g := range guardrails {
		if g.compiled == nil || g.compiled.issuer != p.compiled.issuer || !lifts(p, g) {
			continue
		}
		warns = append(warns, Warning{File: p.File, Line: p.lineOf("allow"), Policy: p.Name, Message: fmt.Sprintf(
			"LIFTED guardrail %s (allow: %s): tokens with %s are admitted by this policy: %s",
			g.Name, g.lift, describeClaims(g.compiled), g.why)})
	}
	return warns
}

func describeClaims(r *compiledRule) string {
	parts := make([]string, len(r.claims))
	for i, cm := range r.claims {
		parts[i] = cm.name + " " + cm.m.describe()
	}
	return strings.Join(parts, " and ")
}

// liftedGuardrailDeny filters candidates by the liftable guardrails that
// matched the token: a candidate stays only if it lifts every one of them.
// When none stays, the first such guardrail denies.
func liftedGuardrailDeny(matched []*Policy, denying []*Guardrail) ([]*Policy, error) {
	if len(denying) == 0 {
		return matched, nil
	}
	var keep []*Policy
	for _, p := range matched {
		if !slices.ContainsFunc(denying, func(g *Guardrail) bool { return !lifts(p, g) }) {
			keep = append(keep, p)
		}
	}
	if len(keep) > 0 {
		return keep, nil
	}
	g := denying[0]
	return nil, &DenyError{Code: DenyGuardrail, Policy: g.Name, Reason: fmt.Sprintf(
		"guardrail %q (%s) matches the token and no matching policy lifts it with allow: [%s]",
		g.Name, location(g.File, g.Line), g.lift)}
}
