package providers

import (
	"maps"
	"slices"
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
	default:
		return "unknown"
	}
}

// Preset describes a CI provider as data: adding a provider is adding a row
// to the presets table, not writing code.
type Preset struct {
	// Name is the value of a provider's `preset:` key.
	Name string
	// Issuer is the provider's iss; empty when each installation has its own
	// and the configuration must name it.
	Issuer string
	// Shared is true when many tenants share the issuer, so trust policies on
	// it must pin the tenant by one of TenantClaims.
	Shared bool
	// TenantClaims are the immutable id claims that pin a tenant (an
	// organisation, a project), strongest first.
	TenantClaims []string
	// SubjectFormats document the shapes of sub, for policy authors.
	SubjectFormats []string
	// Claims are the claims the provider is known to send, with their types;
	// nil when unknown (generic).
	Claims map[string]ClaimType
	// Algorithms are the signing algorithms accepted by default.
	Algorithms []string
	// TokenSource documents where a pipeline gets its ID token.
	TokenSource string
}

// Preset names.
const (
	// PresetGitHubActions is GitHub Actions on github.com.
	PresetGitHubActions = "github-actions"
	// PresetGeneric is any OIDC issuer named by the configuration.
	PresetGeneric = "generic"
)

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

// presets is the table of known CI providers. A later provider is one more row.
var presets = []Preset{
	{
		Name:         PresetGitHubActions,
		Issuer:       "https://token.actions.githubusercontent.com",
		Shared:       true,
		TenantClaims: []string{"repository_owner_id", "repository_id"},
		SubjectFormats: []string{
			"repo:OWNER/REPO:ref:REF",
			"repo:OWNER/REPO:environment:ENVIRONMENT",
			"repo:OWNER/REPO:pull_request",
		},
		// GitHub sends every claim but the registered numeric dates as a
		// string, including ids, run numbers and ref_protected ("true").
		Claims: withRegistered(
			"ref", "ref_type", "ref_protected", "sha",
			"repository", "repository_id", "repository_owner", "repository_owner_id",
			"repository_visibility", "run_id", "run_number", "run_attempt",
			"runner_environment", "actor", "actor_id", "workflow", "workflow_ref",
			"workflow_sha", "head_ref", "base_ref", "event_name", "environment",
			"environment_node_id", "job_workflow_ref", "job_workflow_sha",
			"enterprise", "enterprise_id",
		),
		Algorithms:  []string{"RS256"},
		TokenSource: "a job with `permissions: id-token: write` requests it from $ACTIONS_ID_TOKEN_REQUEST_URL (with &audience=...) using $ACTIONS_ID_TOKEN_REQUEST_TOKEN as bearer",
	},
	{
		Name:        PresetGeneric,
		Algorithms:  slices.Clone(allowedAlgorithms),
		TokenSource: "whatever the issuer documents; the broker discovers it at ISSUER/.well-known/openid-configuration",
	},
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

// clonePreset copies a preset so callers cannot edit the table.
func clonePreset(p Preset) Preset {
	p.TenantClaims = slices.Clone(p.TenantClaims)
	p.SubjectFormats = slices.Clone(p.SubjectFormats)
	p.Algorithms = slices.Clone(p.Algorithms)
	p.Claims = maps.Clone(p.Claims)
	return p
}
