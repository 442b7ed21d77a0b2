package providers

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// knownIssuer is what matchKnownIssuer found: the preset owning an issuer's
// host and, when the issuer has exactly one of that preset's shapes, the
// template's parameters.
type knownIssuer struct {
	preset string
	exact  bool
	params map[string]string
}

// matchKnownIssuer reports whether issuer lies on the host of a non-generic
// preset's issuer template. Only templates with a literal host count (the
// github.com, GHE.com, GitLab.com, CircleCI, Bitbucket, Azure DevOps,
// Google, Buildkite and HCP Terraform issuers); a {host} template
// (self-managed GitLab, GHES, Terraform Enterprise) matches any URL and
// recognises nothing. Hosts compare case-insensitively so that a near miss
// ("https://Token.Actions.GitHubusercontent.com", a trailing slash) is caught
// too; exact means the issuer equals a filled-in template byte for byte.
func matchKnownIssuer(issuer string) (knownIssuer, bool) {
	u, err := url.Parse(issuer)
	if err != nil {
		return knownIssuer{}, false
	}
	host := strings.ToLower(u.Hostname())
	for _, p := range presets {
		if p.Name == PresetGeneric {
			continue
		}
		onHost := false
		for _, t := range p.Issuers {
			th, ok := templateHost(t.Template)
			if !ok || th != host {
				continue
			}
			onHost = true
			if params, ok := matchTemplate(p, t, issuer); ok {
				return knownIssuer{preset: p.Name, exact: true, params: params}, true
			}
		}
		if onHost {
			return knownIssuer{preset: p.Name}, true
		}
	}
	return knownIssuer{}, false
}

// templateHost returns the lower-cased literal host of an issuer template;
// ok is false when the host is (or contains) a placeholder.
func templateHost(template string) (string, bool) {
	rest, ok := strings.CutPrefix(template, "https://")
	if !ok {
		return "", false
	}
	host, _, _ := strings.Cut(rest, "/")
	if strings.Contains(host, "{") {
		return "", false
	}
	return strings.ToLower(host), true
}

// matchTemplate returns the parameters with which template t of preset p
// yields issuer exactly. Each placeholder matches one path segment; the
// values then go through resolveIssuer, so they obey paramPatterns and
// rebuild the very same issuer.
func matchTemplate(p Preset, t IssuerTemplate, issuer string) (map[string]string, bool) {
	var expr strings.Builder
	expr.WriteString("^")
	last := 0
	for _, loc := range placeholder.FindAllStringSubmatchIndex(t.Template, -1) {
		expr.WriteString(regexp.QuoteMeta(t.Template[last:loc[0]]))
		expr.WriteString("([^/?#@\\s]+)")
		last = loc[1]
	}
	expr.WriteString(regexp.QuoteMeta(t.Template[last:]))
	expr.WriteString("$")
	m := regexp.MustCompile(expr.String()).FindStringSubmatch(issuer)
	if m == nil {
		return nil, false
	}
	var params map[string]string
	for i, name := range placeholder.FindAllStringSubmatch(t.Template, -1) {
		if params == nil {
			params = map[string]string{}
		}
		params[name[1]] = m[i+1]
	}
	got, err := resolveIssuer(p, params)
	if err != nil || got != issuer {
		return nil, false
	}
	return params, true
}

// presetForConfig returns the preset a provider uses. A provider with an
// issuer and no preset is generic, unless the issuer belongs to a known
// preset: then that preset applies, guardrails and tenant pinning included,
// since as generic a shared issuer (every GitHub organisation's tokens)
// would need no tenant pin. An issuer on such a preset's host that has none
// of its shapes is refused rather than guessed at.
func presetForConfig(c Config) (string, error) {
	if c.Preset != "" {
		return c.Preset, nil
	}
	if c.Issuer == "" {
		return PresetGeneric, nil
	}
	known, ok := matchKnownIssuer(c.Issuer)
	switch {
	case !ok:
		return PresetGeneric, nil
	case known.exact:
		return known.preset, nil
	default:
		return "", fmt.Errorf("issuer %q is on the host of preset %q but has none of its issuer shapes; set preset: %s and check the issuer",
			c.Issuer, known.preset, known.preset)
	}
}

// checkIssuerOwner refuses an issuer that belongs to a preset other than p,
// however it was configured: `preset: generic` (which would drop the
// issuer's tenant pinning and guardrails), another preset, or a {host}
// parameter naming gitlab.com under terraform-cloud.
func checkIssuerOwner(p Preset, issuer string) error {
	known, ok := matchKnownIssuer(issuer)
	if !ok || known.preset == p.Name {
		return nil
	}
	return fmt.Errorf("issuer %q belongs to preset %q: set preset: %s, not %s (it carries the issuer's tenant pinning and guardrails)",
		issuer, known.preset, known.preset, p.Name)
}
