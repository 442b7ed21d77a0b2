package providers

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// ClaimType is the JSON type a preset documents for a known claim.
type ClaimType int

// The claim types a preset can name. GitHub, like most CI providers, sends
// numeric ids as strings; the type records what the issuer actually sends.
const (
	// ClaimString is a JSON string.
	ClaimString ClaimType = iota + 1
	// ClaimNumber is a JSON number (exp, iat, nbf, ...).
	ClaimNumber
	// ClaimBool is a JSON boolean.
	ClaimBool
	// ClaimStringOrList is a string or an array of strings (aud).
	ClaimStringOrList
	// ClaimList is an array of strings.
	ClaimList
	// ClaimObject is a JSON object.
	ClaimObject
)

// String returns the claim type's name as used in messages.
func (t ClaimType) String() string {
	switch t {
	case ClaimString:
		return "string"
	case ClaimNumber:
		return "number"
	case ClaimBool:
		return "bool"
	case ClaimStringOrList:
		return "string or list"
	case ClaimList:
		return "list"
	case ClaimObject:
		return "object"
	default:
		return "unknown"
	}
}

// IssuerTemplate is one shape of a preset's issuer URL. Placeholders in
// braces ({org_id}) are filled from the provider's configured params; a
// template without placeholders is a fixed issuer.
type IssuerTemplate struct {
	// Template is the issuer URL with {param} placeholders.
	Template string
	// Doc says when this shape applies (github.com, GitHub Enterprise
	// Server, ...).
	Doc string
}

// Params returns the placeholder names of the template, sorted.
func (t IssuerTemplate) Params() []string {
	var out []string
	for _, m := range placeholder.FindAllStringSubmatch(t.Template, -1) {
		if !slices.Contains(out, m[1]) {
			out = append(out, m[1])
		}
	}
	sort.Strings(out)
	return out
}

// DefaultGuardrail is a deny rule a preset recommends for every policy on
// its issuer, as data: a claim name and the value that is refused.
type DefaultGuardrail struct {
	// Name names the guardrail in decisions and the audit trail.
	Name string
	// Claims are exact claim values that, all present, refuse the token.
	Claims map[string]string
	// Allow is the allow: key with which one trust policy opts out of the
	// guardrail (loudly warned), e.g. pull_request_target.
	Allow string
	// Why explains the risk.
	Why string
}

// QualifiedName names the guardrail as decisions and the audit trail show
// it: "preset:PRESET:NAME", e.g. preset:github-actions:no-pull-request-target.
func (g DefaultGuardrail) QualifiedName(preset string) string {
	return "preset:" + preset + ":" + g.Name
}

// placeholder matches {name} in an issuer template.
var placeholder = regexp.MustCompile(`\{([a-z_]+)\}`)

// paramPatterns say what each template parameter may look like. Values are
// spliced into an issuer URL, so none may carry '/', '?', '#', '@' or
// white space: a parameter cannot move the issuer to another host or path.
var paramPatterns = map[string]*regexp.Regexp{
	// host is a DNS name, optionally with a port.
	"host": regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}\.)*[A-Za-z0-9-]{1,63}(?::[0-9]{1,5})?$`),
	// enterprise is a GHE.com enterprise slug.
	"enterprise": regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,99}$`),
	// org_id is a UUID (CircleCI, Azure DevOps organisation ids).
	"org_id": regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`),
	// workspace is a Bitbucket workspace slug.
	"workspace": regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,99}$`),
}

// resolveIssuer picks the preset's issuer template whose placeholders are
// exactly the given params and fills it in. With no params it returns the
// preset's fixed issuer, if it has one.
func resolveIssuer(p Preset, params map[string]string) (string, error) {
	for name, v := range params {
		pat, ok := paramPatterns[name]
		if !ok {
			return "", fmt.Errorf("preset %q: unknown parameter %q", p.Name, name)
		}
		if !pat.MatchString(v) {
			return "", fmt.Errorf("preset %q: parameter %s=%q must match %s", p.Name, name, v, pat)
		}
	}
	given := slices.Sorted(maps.Keys(params))
	for _, t := range p.Issuers {
		if slices.Equal(t.Params(), given) {
			return placeholder.ReplaceAllStringFunc(t.Template, func(m string) string {
				return params[m[1:len(m)-1]]
			}), nil
		}
	}
	var shapes []string
	for _, t := range p.Issuers {
		if ps := t.Params(); len(ps) == 0 {
			shapes = append(shapes, "no parameters")
		} else {
			shapes = append(shapes, strings.Join(ps, " + "))
		}
	}
	if len(shapes) == 0 {
		return "", fmt.Errorf("preset %q needs an issuer", p.Name)
	}
	return "", fmt.Errorf("preset %q: parameters [%s] match no issuer shape (want one of: %s)",
		p.Name, strings.Join(given, ", "), strings.Join(shapes, "; "))
}

// registeredClaims are the JWT claims every preset knows (RFC 7519 §4.1).
var registeredClaims = map[string]ClaimType{
	"iss": ClaimString, "sub": ClaimString, "aud": ClaimStringOrList,
	"exp": ClaimNumber, "iat": ClaimNumber, "nbf": ClaimNumber, "jti": ClaimString,
}

// withRegistered returns the registered claims plus the given string claims.
func withRegistered(stringClaims ...string) map[string]ClaimType {
	m := maps.Clone(registeredClaims)
	for _, c := range stringClaims {
		m[c] = ClaimString
	}
	return m
}

// without returns m less the given claims.
func without(m map[string]ClaimType, names ...string) map[string]ClaimType {
	for _, n := range names {
		delete(m, n)
	}
	return m
}

// typed returns m with the given claims set to t.
func typed(m map[string]ClaimType, t ClaimType, names ...string) map[string]ClaimType {
	for _, n := range names {
		m[n] = t
	}
	return m
}

// LookupPreset returns the preset with the given name.
func LookupPreset(name string) (Preset, bool) {
	for _, p := range presets {
		if p.Name == name {
			return clonePreset(p), true
		}
	}
	return Preset{}, false
}

// Presets returns every known preset, in table order.
func Presets() []Preset {
	out := make([]Preset, len(presets))
	for i, p := range presets {
		out[i] = clonePreset(p)
	}
	return out
}

// ClaimNames returns the preset's known claim names, sorted; nil when the
// preset does not know its claims (generic).
func (p Preset) ClaimNames() []string {
	if p.Claims == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(p.Claims))
}

// clonePreset copies a preset so callers cannot edit the table.
func clonePreset(p Preset) Preset {
	p.Issuers = slices.Clone(p.Issuers)
	p.TenantClaims = slices.Clone(p.TenantClaims)
	p.RepositoryClaims = slices.Clone(p.RepositoryClaims)
	p.SubjectFormats = slices.Clone(p.SubjectFormats)
	p.Algorithms = slices.Clone(p.Algorithms)
	p.Claims = maps.Clone(p.Claims)
	p.Notes = slices.Clone(p.Notes)
	p.Guardrails = slices.Clone(p.Guardrails)
	for i, g := range p.Guardrails {
		p.Guardrails[i].Claims = maps.Clone(g.Claims)
	}
	return p
}
