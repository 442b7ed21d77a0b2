package policy

import "fmt"

// Explanation says whether one policy or guardrail matches a request and,
// if not, the first condition that failed.
type Explanation struct {
	// Kind is "guardrail" or "policy".
	Kind string
	// Name, File and Line identify the rule.
	Name string
	File string
	Line int
	// Matched reports that the rule matches: a guardrail would deny, a
	// policy would allow (identity, grant type, targets, scopes and grant
	// claims all pass). A guardrail whose condition fails to evaluate
	// denies (fails closed), so it is Matched, with Error set.
	Matched bool
	// Check names the first failing condition ("subject", "claims.ref",
	// "condition", "grant.scopes", ...); empty when Matched.
	Check string
	// Expected is what the rule requires; Actual is what the request has.
	Expected string
	Actual   string
	// Error is, for a guardrail that denies because its condition failed
	// to evaluate, the evaluation error; empty otherwise. (For a policy, an
	// evaluation error is a mismatch: Check is "condition" and Actual
	// carries the error.)
	Error string
}

// Explain evaluates every guardrail and every policy of the set against req,
// without the index, for `tokenbroker policy explain`. Guardrails come first,
// then policies, each in load order.
func (s *Set) Explain(req Request) []Explanation {
	st := &reqState{req: req}
	out := make([]Explanation, 0, len(s.guardrails)+len(s.policies))
	for _, g := range s.guardrails {
		m, err := matchRule(g.compiled, st)
		if err != nil {
			// Fail closed, as Evaluate does: the guardrail denies.
			out = append(out, Explanation{Kind: "guardrail", Name: g.Name, File: g.File, Line: g.Line, Matched: true,
				Error: fmt.Sprintf("condition %q failed to evaluate: %v", g.compiled.cond.src, err)})
			continue
		}
		out = append(out, explanation("guardrail", g.Name, g.File, g.Line, m))
	}
	for _, p := range s.policies {
		out = append(out, explanation("policy", p.Name, p.File, p.Line, checkPolicy(p, st)))
	}
	return out
}

// checkPolicy runs every check of a policy in evaluation order.
func checkPolicy(p *Policy, st *reqState) *mismatch {
	if m := identity(p, st); m != nil {
		return m
	}
	for _, check := range []func(*Policy, *reqState) *mismatch{checkType, checkTargets, checkScopes} {
		if m := check(p, st); m != nil {
			return m
		}
	}
	_, m := render(p, st)
	return m
}

func explanation(kind, name, file string, line int, m *mismatch) Explanation {
	e := Explanation{Kind: kind, Name: name, File: file, Line: line, Matched: m == nil}
	if m != nil {
		e.Check, e.Expected, e.Actual = m.check, m.expected, m.actual
	}
	return e
}
