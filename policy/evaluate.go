package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Stages of a policy check, in the order they run; a mismatch at a later
// stage is "closer" to matching.
const (
	stageCompiled = iota
	stageIssuer
	stageAudience
	stageSubject
	stageClaims
	stageCondition
	stageGrantType
	stageGrantAudience
	stageGrantScopes
	stageGrantClaims
)

// mismatch is the first failing condition of a rule.
type mismatch struct {
	stage    int
	check    string // "subject", "claims.ref", "grant.scopes", ...
	expected string
	actual   string
}

func (m *mismatch) String() string {
	return fmt.Sprintf("%s: expected %s, got %s", m.check, m.expected, m.actual)
}

// reqState carries one request and what is derived from it lazily.
type reqState struct {
	req     Request
	celVars map[string]any
}

func (st *reqState) activation() map[string]any {
	if st.celVars == nil {
		st.celVars = map[string]any{"claims": celClaims(st.req.Claims)}
	}
	return st.celVars
}

func (st *reqState) tokenType() string {
	if st.req.TokenType == "" {
		return GrantJWT
	}
	return st.req.TokenType
}

// Evaluate decides a request:
//  1. a matching guardrail denies (DenyGuardrail), except an issuer
//     guardrail (Issuer.Guardrails) that a policy may lift: it is noted;
//  2. the policies whose identity matchers match are the candidates
//     (none: DenyNoMatch, naming the closest policy and why it failed);
//     when an issuer guardrail of step 1 matched, only the candidates
//     that lift it with allow: remain (none: DenyGuardrail);
//  3. candidates granting another credential type drop (DenyTokenType);
//  4. candidates not granting every requested target drop (DenyTarget);
//  5. candidates not granting every requested scope drop (DenyScope);
//  6. candidates whose grant claims do not render drop (DenyNoMatch);
//  7. the most specific candidate is selected: exact subject, then subject
//     pattern, then none; then more claim matchers; then having a
//     condition; then by name.
//
// A refusal is returned as a *DenyError.
func (s *Set) Evaluate(req Request) (*Decision, error) {
	st := &reqState{req: req}
	liftable, err := s.checkGuardrails(st)
	if err != nil {
		return nil, err
	}
	matched, err := s.candidates(st)
	if err == nil {
		matched, err = liftedGuardrailDeny(matched, liftable)
	} else if len(liftable) > 0 {
		_, err = liftedGuardrailDeny(nil, liftable) // the guardrail is the reason
	}
	if err != nil {
		return nil, err
	}
	steps := []struct {
		code  DenyCode
		stage int
		check func(*Policy, *reqState) *mismatch
	}{
		{DenyTokenType, stageGrantType, checkType},
		{DenyTarget, stageGrantAudience, checkTargets},
		{DenyScope, stageGrantScopes, checkScopes},
	}
	for _, step := range steps {
		var keep []*Policy
		var first *mismatch
		for _, p := range matched {
			if m := step.check(p, st); m == nil {
				keep = append(keep, p)
			} else if first == nil {
				first = m
			}
		}
		if len(keep) == 0 {
			return nil, &DenyError{Code: step.code, Policy: matched[0].Name, Reason: fmt.Sprintf(
				"%s %s", describeMatch(matched), first)}
		}
		matched = keep
	}
	return decide(matched, st)
}

// decide renders the grants of the remaining candidates, in selection
// order, and returns the decision of the first that renders.
func decide(matched []*Policy, st *reqState) (*Decision, error) {
	var d *Decision
	var failed []string
	for _, p := range matched {
		claims, m := render(p, st)
		if m != nil {
			failed = append(failed, fmt.Sprintf("policy %q: %s", p.Name, m))
			continue
		}
		if d == nil {
			d = newDecision(p, st, claims)
		}
		d.Candidates = append(d.Candidates, p.Name)
	}
	if d == nil {
		return nil, &DenyError{Code: DenyNoMatch, Policy: matched[0].Name, Reason: strings.Join(failed, "; ")}
	}
	return d, nil
}

func newDecision(p *Policy, st *reqState, claims map[string]string) *Decision {
	g := p.Grant
	aud, scopes := st.req.Targets, st.req.Scopes
	if len(aud) == 0 {
		aud = g.Audience
	}
	if len(scopes) == 0 {
		scopes = g.Scopes
	}
	return &Decision{
		Policy:    p.Name,
		SingleUse: p.singleUse(),
		Grant: Grant{
			Type:     p.compiled.grantType,
			Audience: slices.Clone(aud),
			Scopes:   slices.Clone(scopes),
			TTL:      g.TTL,
			Uses:     g.Uses,
			Claims:   claims,
		},
		Lifted: slices.Clone(p.Allow),
	}
}

// checkGuardrails denies when a guardrail that nothing lifts matches the
// token, and returns the matching guardrails that a policy may lift.
func (s *Set) checkGuardrails(st *reqState) ([]*Guardrail, error) {
	var liftable []*Guardrail
	for _, i := range s.gindex.lookup(st.req.Issuer, st.req.Subject, nil) {
		g := s.guardrails[i]
		m, evalErr := matchRule(g.compiled, st)
		if evalErr != nil {
			return nil, guardrailEvalDeny(g, evalErr)
		}
		if m != nil {
			continue
		}
		if g.lift != "" {
			liftable = append(liftable, g)
			continue
		}
		return nil, &DenyError{Code: DenyGuardrail, Policy: g.Name, Reason: fmt.Sprintf(
			"guardrail %q (%s) matches the token", g.Name, location(g.File, g.Line))}
	}
	return liftable, nil
}

// guardrailEvalDeny is the refusal for a guardrail whose condition failed
// to evaluate (an absent claim, a claim of another type, the cost or time
// limit). A guardrail is a deny rule, so it fails closed: an error must not
// let the token through as "not matched". This holds for a liftable issuer
// guardrail too: a policy lifts a match, not an error.
func guardrailEvalDeny(g *Guardrail, err error) *DenyError {
	return &DenyError{Code: DenyGuardrail, Policy: g.Name, Reason: fmt.Sprintf(
		"guardrail %q (%s) denies: its condition failed to evaluate (fail closed): %v",
		g.Name, location(g.File, g.Line), err)}
}

// candidates returns the policies whose identity matchers match, in
// selection order, or a DenyNoMatch naming the closest policy.
func (s *Set) candidates(st *reqState) ([]*Policy, error) {
	idx := s.pindex.lookup(st.req.Issuer, st.req.Subject, nil)
	tried := make([]*Policy, len(idx))
	for n, i := range idx {
		tried[n] = s.policies[i]
	}
	slices.SortFunc(tried, bySpecificity)
	var matched []*Policy
	var closest *Policy
	var miss *mismatch
	for _, p := range tried {
		m := identity(p, st)
		if m == nil {
			matched = append(matched, p)
		} else if miss == nil || m.stage > miss.stage {
			closest, miss = p, m
		}
	}
	if len(matched) > 0 {
		return matched, nil
	}
	if closest == nil {
		reason := fmt.Sprintf("no policy for issuer %q", st.req.Issuer)
		if s.pindex.has(st.req.Issuer) {
			reason = fmt.Sprintf("no policy for issuer %q admits subject %q", st.req.Issuer, st.req.Subject)
		}
		return nil, &DenyError{Code: DenyNoMatch, Reason: reason}
	}
	return nil, &DenyError{Code: DenyNoMatch, Policy: closest.Name, Reason: fmt.Sprintf(
		"no policy matches; closest is %s: %s", closest, miss)}
}

// bySpecificity orders policies most specific first, then by name.
func bySpecificity(a, b *Policy) int {
	ca, cb := a.compiled, b.compiled
	if ca == nil || cb == nil {
		return strings.Compare(a.Name, b.Name)
	}
	if ca.rank != cb.rank {
		return cb.rank - ca.rank
	}
	if len(ca.claims) != len(cb.claims) {
		return len(cb.claims) - len(ca.claims)
	}
	if (ca.cond != nil) != (cb.cond != nil) {
		if ca.cond != nil {
			return -1
		}
		return 1
	}
	return strings.Compare(a.Name, b.Name)
}

// identity checks a policy's identity matchers: issuer, audience, subject,
// claims, condition. An uncompiled policy never matches.
func identity(p *Policy, st *reqState) *mismatch {
	c := p.compiled
	if c == nil {
		return &mismatch{stageCompiled, "policy", "a compiled policy", "an uncompiled one (call Compile or NewSet)"}
	}
	if c.issuer != st.req.Issuer {
		return &mismatch{stageIssuer, "issuer", strconv.Quote(c.issuer), strconv.Quote(st.req.Issuer)}
	}
	aud := st.req.Audience
	if !slices.Contains(aud, p.Audience) {
		return &mismatch{stageAudience, "audience", fmt.Sprintf("aud containing %q", p.Audience), fmt.Sprintf("%q", aud)}
	}
	if !p.AllowExtraAudiences && slices.ContainsFunc(aud, func(a string) bool { return a != p.Audience }) {
		return &mismatch{stageAudience, "audience", fmt.Sprintf("aud of only %q (allow_extra_audiences is false)", p.Audience), fmt.Sprintf("%q", aud)}
	}
	m, _ := matchRule(&c.compiledRule, st) // an evaluation error is a mismatch
	return m
}

// matchRule checks issuer (when set), subject, claims and condition. When
// the condition fails to evaluate, it returns the mismatch and the error as
// well: a policy then does not match, but a guardrail denies (fails closed).
func matchRule(r *compiledRule, st *reqState) (*mismatch, error) {
	if r == nil {
		return &mismatch{stageCompiled, "rule", "a compiled rule", "an uncompiled one"}, nil
	}
	if r.issuer != "" && r.issuer != st.req.Issuer {
		return &mismatch{stageIssuer, "issuer", strconv.Quote(r.issuer), strconv.Quote(st.req.Issuer)}, nil
	}
	if r.subject != nil && !r.subject.match(st.req.Subject) {
		return &mismatch{stageSubject, "subject", r.subject.describe(), strconv.Quote(st.req.Subject)}, nil
	}
	for _, cm := range r.claims {
		v, ok := st.req.Claims[cm.name]
		if !cm.m.matchClaim(v, ok) {
			return &mismatch{stageClaims, "claims." + cm.name, cm.m.describe(), describeClaim(v, ok)}, nil
		}
	}
	if r.cond != nil {
		ok, err := r.cond.eval(st.activation())
		if err != nil {
			return &mismatch{stageCondition, "condition", strconv.Quote(r.cond.src) + " to be true", "evaluation error: " + err.Error()}, err
		}
		if !ok {
			return &mismatch{stageCondition, "condition", strconv.Quote(r.cond.src) + " to be true", "false"}, nil
		}
	}
	return nil, nil
}

func (m *matcher) describe() string {
	switch m.kind {
	case matchGlob:
		return "pattern " + strconv.Quote(m.raw)
	case matchRegexp:
		return "regexp " + strconv.Quote(strings.TrimPrefix(m.raw, regexpPrefix))
	}
	return strconv.Quote(m.raw)
}

func checkType(p *Policy, st *reqState) *mismatch {
	if t := st.tokenType(); t != p.compiled.grantType {
		return &mismatch{stageGrantType, "grant.type", strconv.Quote(p.compiled.grantType), "requested " + strconv.Quote(t)}
	}
	return nil
}

func checkTargets(p *Policy, st *reqState) *mismatch {
	for _, t := range st.req.Targets {
		if !slices.Contains(p.Grant.Audience, t) {
			return &mismatch{stageGrantAudience, "grant.audience", fmt.Sprintf("one of %q", p.Grant.Audience), "requested " + strconv.Quote(t)}
		}
	}
	return nil
}

func checkScopes(p *Policy, st *reqState) *mismatch {
	for _, sc := range st.req.Scopes {
		if !slices.Contains(p.Grant.Scopes, sc) {
			return &mismatch{stageGrantScopes, "grant.scopes", fmt.Sprintf("one of %q", p.Grant.Scopes), "requested " + strconv.Quote(sc)}
		}
	}
	return nil
}

// render executes the grant's claim templates over the token's claims.
func render(p *Policy, st *reqState) (map[string]string, *mismatch) {
	tmpls := p.compiled.templates
	if len(tmpls) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(tmpls))
	var b strings.Builder
	for _, t := range tmpls {
		b.Reset()
		if err := t.tmpl.Execute(&b, st.req.Claims); err != nil {
			return nil, &mismatch{stageGrantClaims, "grant.claims." + t.name, "a template that renders", "error: " + err.Error()}
		}
		out[t.name] = b.String()
	}
	return out, nil
}

// describeMatch says which policies matched the identity, for deny reasons.
func describeMatch(ps []*Policy) string {
	if len(ps) == 1 {
		return fmt.Sprintf("policy %q matches the token but", ps[0].Name)
	}
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = strconv.Quote(p.Name)
	}
	return fmt.Sprintf("policies %s match the token but %s:", strings.Join(names, ", "), names[0])
}
