package policy

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"text/template"

	"cel.dev/cel-go/cel"
)

// compiledRule is the compiled identity matcher shared by policies and
// guardrails.
type compiledRule struct {
	issuer  string   // exact iss; "" matches every issuer (guardrails only)
	subject *matcher // nil matches every subject
	claims  []claimMatcher
	cond    *condition
	info    *Issuer // the configured issuer, when known
}

type claimMatcher struct {
	name string
	m    *matcher
}

// compiledPolicy is the compiled twin of a Policy.
type compiledPolicy struct {
	compiledRule
	grantType string
	templates []claimTemplate
	// rank orders policies by specificity: exact subject > pattern > none.
	rank int
}

type claimTemplate struct {
	name string
	tmpl *template.Template
}

// reservedClaims are set by the minting code; a grant may not override them.
var reservedClaims = []string{"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "scope", "client_id"}

// compiler holds what compiling needs across many policies: the issuer
// table and one CEL environment.
type compiler struct {
	byName map[string]*Issuer
	byURL  map[string]*Issuer
	strict bool // issuer: must be configured
	env    *cel.Env
}

func newCompiler(opts LoadOptions) (*compiler, error) {
	env, err := newCELEnv()
	if err != nil {
		return nil, err
	}
	c := &compiler{byName: map[string]*Issuer{}, byURL: map[string]*Issuer{}, strict: opts.Issuers != nil && !opts.AllowUnknownIssuers, env: env}
	for i := range opts.Issuers {
		is := &opts.Issuers[i]
		if is.Name != "" {
			c.byName[is.Name] = is
		}
		c.byURL[is.URL] = is
	}
	return c, nil
}

// Compile validates p against opts and compiles its matchers, condition
// and grant templates. It enforces exactly one of issuer/provider and at
// most one of subject/subject_pattern, and anchors every pattern. Lint
// refusals are checked by NewSet, which sees the whole set.
func (p *Policy) Compile(opts LoadOptions) error {
	c, err := newCompiler(opts)
	if err != nil {
		return err
	}
	return c.policy(p)
}

// Compile validates and compiles a guardrail, as Policy.Compile does.
func (g *Guardrail) Compile(opts LoadOptions) error {
	c, err := newCompiler(opts)
	if err != nil {
		return err
	}
	return c.guardrail(g)
}

// Compiled reports whether the policy has been compiled successfully.
func (p *Policy) Compiled() bool { return p.compiled != nil }

func (c *compiler) policy(p *Policy) error {
	p.compiled = nil
	var errs []error
	add := func(key, format string, args ...any) { errs = append(errs, p.errorf(key, format, args...)) }
	if p.Name == "" {
		add("name", "required")
	}
	if p.Audience == "" {
		add("audience", "required: the audience the incoming token must carry")
	}
	rule, rerrs := c.rule(p.Issuer, p.Provider, p.Subject, p.SubjectPattern, p.Claims, p.Condition, true, p.errorf)
	errs = append(errs, rerrs...)
	known := slices.Concat(lintKeys, liftKeys(rule.info))
	for _, a := range p.Allow {
		if !slices.Contains(known, a) {
			add("allow", "unknown refusal %q (known: %v)", a, known)
		}
	}
	cp := &compiledPolicy{grantType: p.Grant.Type}
	if cp.grantType == "" {
		cp.grantType = GrantJWT
	}
	errs = append(errs, c.grant(p, cp)...)
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	cp.compiledRule = *rule
	switch {
	case p.Subject != "":
		cp.rank = 2
	case p.SubjectPattern != "":
		cp.rank = 1
	}
	p.compiled = cp
	return nil
}

func (c *compiler) grant(p *Policy, cp *compiledPolicy) []error {
	var errs []error
	add := func(key, format string, args ...any) { errs = append(errs, p.errorf(key, format, args...)) }
	g := &p.Grant
	if cp.grantType != GrantJWT && cp.grantType != GrantAPIKey {
		add("grant.type", "must be %q or %q, not %q", GrantJWT, GrantAPIKey, g.Type)
	}
	if len(g.Audience) == 0 {
		add("grant.audience", "required: at least one audience")
	}
	if slices.Contains(g.Audience, "") {
		add("grant.audience", "empty audience")
	}
	if slices.Contains(g.Scopes, "") {
		add("grant.scopes", "empty scope")
	}
	if g.TTL <= 0 {
		add("grant.ttl", "required: a duration > 0, e.g. 10m")
	}
	if g.Uses < 0 {
		add("grant.uses", "must be >= 0")
	}
	if g.Uses > 0 && cp.grantType != GrantAPIKey {
		add("grant.uses", "only an api_key grant has uses")
	}
	for _, name := range sortedKeys(g.Claims) {
		key := "grant.claims." + name
		if slices.Contains(reservedClaims, name) {
			add(key, "claim %q is set by the broker and cannot be granted", name)
			continue
		}
		t, err := template.New(name).Option("missingkey=error").Parse(g.Claims[name])
		if err != nil {
			add(key, "invalid template: %v", err)
			continue
		}
		cp.templates = append(cp.templates, claimTemplate{name: name, tmpl: t})
	}
	return errs
}

func (c *compiler) guardrail(g *Guardrail) error {
	g.compiled = nil
	var errs []error
	if g.Name == "" {
		errs = append(errs, g.errorf("name", "required"))
	}
	rule, rerrs := c.rule(g.Issuer, g.Provider, g.Subject, g.SubjectPattern, g.Claims, g.Condition, false, g.errorf)
	errs = append(errs, rerrs...)
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	g.compiled = rule
	return nil
}

// rule compiles the identity matchers common to policies and guardrails.
func (c *compiler) rule(issuer, provider, subject, pattern string, claims map[string]string, cond string, needIssuer bool,
	errorf func(key, format string, args ...any) *Error) (*compiledRule, []error) {
	var errs []error
	add := func(key, format string, args ...any) { errs = append(errs, errorf(key, format, args...)) }
	r := &compiledRule{}
	switch {
	case issuer != "" && provider != "":
		add("provider", "set issuer or provider, not both")
	case provider != "":
		if is, ok := c.byName[provider]; ok {
			r.issuer, r.info = is.URL, is
		} else {
			add("provider", "unknown provider %q", provider)
		}
	case issuer != "":
		r.issuer, r.info = issuer, c.byURL[issuer]
		if r.info == nil && c.strict {
			add("issuer", "issuer %q is not configured", issuer)
		}
	case needIssuer:
		add("issuer", "required: set issuer or provider")
	}
	switch {
	case subject != "" && pattern != "":
		add("subject_pattern", "set subject or subject_pattern, not both")
	case subject != "":
		r.subject = compileExact(subject)
	case pattern != "":
		m, err := compilePattern(pattern)
		if err != nil {
			add("subject_pattern", "%v", err)
		}
		r.subject = m
	}
	for _, name := range sortedKeys(claims) {
		key := "claims." + name
		if name == "" {
			add("claims", "empty claim name")
			continue
		}
		if r.info != nil && r.info.KnownClaims != nil && !slices.Contains(r.info.KnownClaims, name) {
			add(key, "issuer %q has no claim %q (known: %v)", r.issuer, name, r.info.KnownClaims)
			continue
		}
		m, err := compileClaim(claims[name])
		if err != nil {
			add(key, "%v", err)
			continue
		}
		r.claims = append(r.claims, claimMatcher{name: name, m: m})
	}
	if cond != "" {
		cc, err := compileCondition(c.env, cond)
		if err != nil {
			add("condition", "%v", err)
		} else {
			errs = append(errs, unknownConditionClaims(r, cc, errorf)...)
		}
		r.cond = cc
	}
	return r, errs
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// claim returns the compiled matcher on a claim, or nil.
func (r *compiledRule) claim(name string) *matcher {
	for _, c := range r.claims {
		if c.name == name {
			return c.m
		}
	}
	return nil
}

// String describes the policy's place for messages.
func (p *Policy) String() string {
	return fmt.Sprintf("policy %q (%s)", p.Name, location(p.File, p.Line))
}
