package providers

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// DefaultLeeway is the clock skew tolerated on exp, nbf and iat. CI runners
// and the broker keep NTP time, so 30 s is generous without stretching a
// token's life noticeably.
const DefaultLeeway = 30 * time.Second

// Defaults for the zero values of Options.
const (
	DefaultFetchTimeout     = 10 * time.Second
	DefaultMaxResponseBytes = 1 << 20
	DefaultRefreshCooldown  = 10 * time.Second
	DefaultMaxStaleness     = 24 * time.Hour
	DefaultKeySetTTL        = time.Hour
	DefaultDiscoveryTTL     = 24 * time.Hour
	DefaultMaxLifetime      = time.Hour
	DefaultMaxTokenBytes    = 16 << 10
	DefaultCacheSize        = 128
)

// maxRedirects is the number of same-origin redirects an issuer may send.
const maxRedirects = 3

// allowedAlgorithms are the only JWS algorithms ever accepted: asymmetric
// ones. none and HS* are never allowed (a public key must not double as an
// HMAC secret, CVE-2015-9235).
var allowedAlgorithms = []string{
	"RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512",
	"EdDSA",
}

// Config is one configured provider: the `providers:` entries of the
// configuration file.
type Config struct {
	// Name identifies the provider in policies, logs and metrics.
	Name string
	// Preset names a row of the presets table; empty means the preset whose
	// issuer Issuer is (github.com, GitLab.com, a CircleCI organisation, ...)
	// or, for any other issuer, "generic". A preset other than the issuer's
	// own, generic included, is refused.
	Preset string
	// Issuer overrides the preset's issuer; required for generic. It is
	// compared with a token's iss byte for byte.
	Issuer string
	// Params fill the placeholders of the preset's issuer template, e.g.
	// org_id for circleci, enterprise or host for github-actions; nil means
	// the preset's fixed issuer. Set Issuer or Params, not both.
	Params map[string]string
	// Algorithms restricts the accepted signing algorithms; empty means the
	// preset's. Only asymmetric algorithms are accepted.
	Algorithms []string
}

// Options tunes the registry. Every zero value means the documented default.
type Options struct {
	// HTTPClient is used for discovery and JWKS fetches; nil means a client
	// built on http.DefaultTransport. Whatever the client, each issuer gets a
	// copy bounded by FetchTimeout and MaxResponseBytes whose redirects stay
	// on the issuer's scheme and host (at most 3), and its key set another
	// whose redirects stay on the jwks_uri's scheme and host.
	HTTPClient *http.Client
	// FetchTimeout bounds each outbound request; zero means 10s.
	FetchTimeout time.Duration
	// MaxResponseBytes caps each response body; zero means 1 MiB.
	MaxResponseBytes int64
	// RefreshCooldown is the least time between two fetches (discovery or
	// JWKS) for one issuer, so tokens with random kids cannot make the broker
	// hammer an issuer; zero means 10s.
	RefreshCooldown time.Duration
	// MaxStaleness is how old cached keys may get and still verify while the
	// issuer is unreachable; zero means 24h.
	MaxStaleness time.Duration
	// KeySetTTL is the age after which keys are refetched (lazily, on the
	// next token); zero means 1h.
	KeySetTTL time.Duration
	// DiscoveryTTL is the age after which an issuer's discovery document is
	// fetched again (lazily, on the next token), so a moved jwks_uri is
	// followed; discovery is also repeated once the key set's fetches have
	// failed for KeySetTTL. Until a new discovery succeeds the old one, and
	// its keys up to MaxStaleness old, keep serving. Zero means 24h.
	DiscoveryTTL time.Duration
	// Leeway is the tolerated clock skew; zero means DefaultLeeway, and a
	// negative value means none.
	Leeway time.Duration
	// MaxLifetime is the longest exp - iat accepted; zero means 1h.
	MaxLifetime time.Duration
	// MaxTokenBytes caps the raw token; zero means 16 KiB.
	MaxTokenBytes int
	// CacheSize is the number of issuer verifiers kept; zero means 128.
	CacheSize int
	// AllowDevIssuer accepts issuers whose discovery document carries
	// "tokenbroker_development_only": true (the `tokenbroker dev` issuer,
	// which mints any token for anyone). Never set it in production.
	AllowDevIssuer bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// withDefaults returns o with every zero value replaced by its default.
func (o Options) withDefaults() Options {
	if o.FetchTimeout <= 0 {
		o.FetchTimeout = DefaultFetchTimeout
	}
	if o.MaxResponseBytes <= 0 {
		o.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if o.RefreshCooldown <= 0 {
		o.RefreshCooldown = DefaultRefreshCooldown
	}
	if o.MaxStaleness <= 0 {
		o.MaxStaleness = DefaultMaxStaleness
	}
	if o.KeySetTTL <= 0 {
		o.KeySetTTL = DefaultKeySetTTL
	}
	if o.DiscoveryTTL <= 0 {
		o.DiscoveryTTL = DefaultDiscoveryTTL
	}
	switch {
	case o.Leeway == 0:
		o.Leeway = DefaultLeeway
	case o.Leeway < 0:
		o.Leeway = 0
	}
	if o.MaxLifetime <= 0 {
		o.MaxLifetime = DefaultMaxLifetime
	}
	if o.MaxTokenBytes <= 0 {
		o.MaxTokenBytes = DefaultMaxTokenBytes
	}
	if o.CacheSize <= 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// namePattern is what a provider name may look like.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// resolved is a validated provider configuration.
type resolved struct {
	name       string
	issuer     string
	origin     *url.URL
	preset     Preset
	algorithms []string
}

// resolveConfigs validates the configuration at start-up, so a bad config
// fails before the first request rather than per request.
func resolveConfigs(cfgs []Config) ([]resolved, error) {
	if len(cfgs) == 0 {
		return nil, fmt.Errorf("providers: no provider configured")
	}
	names := map[string]bool{}
	issuers := map[string]string{}
	out := make([]resolved, 0, len(cfgs))
	for i, c := range cfgs {
		if !namePattern.MatchString(c.Name) {
			return nil, fmt.Errorf("providers: provider #%d: name %q must match %s", i+1, c.Name, namePattern)
		}
		if names[c.Name] {
			return nil, fmt.Errorf("providers: provider %q: name used twice", c.Name)
		}
		names[c.Name] = true
		r, err := resolveConfig(c)
		if err != nil {
			return nil, fmt.Errorf("providers: provider %q: %w", c.Name, err)
		}
		if other, dup := issuers[r.issuer]; dup {
			return nil, fmt.Errorf("providers: provider %q: issuer %q is already configured by provider %q", c.Name, r.issuer, other)
		}
		issuers[r.issuer] = c.Name
		out = append(out, r)
	}
	return out, nil
}

// resolveConfig applies the preset to one provider and validates it.
func resolveConfig(c Config) (resolved, error) {
	presetName, err := presetForConfig(c)
	if err != nil {
		return resolved{}, err
	}
	p, ok := LookupPreset(presetName)
	if !ok {
		return resolved{}, fmt.Errorf("unknown preset %q", c.Preset)
	}
	issuer := c.Issuer
	switch {
	case issuer != "" && len(c.Params) > 0:
		return resolved{}, fmt.Errorf("set issuer or the preset's parameters, not both")
	case issuer == "":
		if issuer, err = resolveIssuer(p, c.Params); err != nil {
			return resolved{}, err
		}
	}
	origin, err := validateIssuerURL(issuer)
	if err != nil {
		return resolved{}, err
	}
	if err := checkIssuerOwner(p, issuer); err != nil {
		return resolved{}, err
	}
	algs := p.Algorithms
	if len(c.Algorithms) > 0 {
		algs = c.Algorithms
	}
	for _, a := range algs {
		if !slices.Contains(allowedAlgorithms, a) {
			return resolved{}, fmt.Errorf("algorithm %q is not allowed (allowed: %s)", a, strings.Join(allowedAlgorithms, ", "))
		}
	}
	return resolved{name: c.Name, issuer: issuer, origin: origin, preset: p, algorithms: slices.Clone(algs)}, nil
}

// validateIssuerURL accepts an absolute https URL, or http when the host is a
// loopback literal or localhost; no userinfo, query or fragment (OpenID
// Connect Discovery §3). It returns the URL's scheme and host.
func validateIssuerURL(s string) (*url.URL, error) {
	return validateURL("issuer", s)
}

// validateJWKSURL checks a discovered jwks_uri against the issuer's origin
// and returns the jwks_uri's own origin. The issuer's document must not
// steer the broker anywhere the issuer itself could not be:
//  1. the jwks_uri obeys the issuer URL rules (https, or http on loopback);
//  2. its scheme is the issuer's, so an https issuer cannot downgrade the
//     fetch to plain http (on loopback: any internal http service);
//  3. it is on a loopback host only when the issuer is too.
//
// Another https host is allowed: Google's keys are on www.googleapis.com.
func validateJWKSURL(s string, issuer *url.URL) (*url.URL, error) {
	origin, err := validateURL("jwks_uri", s)
	if err != nil {
		return nil, err
	}
	if origin.Scheme != issuer.Scheme {
		return nil, fmt.Errorf("jwks_uri %q: scheme %s differs from the issuer's %s", s, origin.Scheme, issuer.Scheme)
	}
	if isLoopbackHost(origin.Hostname()) && !isLoopbackHost(issuer.Hostname()) {
		return nil, fmt.Errorf("jwks_uri %q is on a loopback host but the issuer %s is not", s, issuer)
	}
	return origin, nil
}

// validateURL applies the issuer URL rules to s, naming it what in errors.
func validateURL(what, s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", what, s, err)
	}
	switch {
	case u.Opaque != "" || u.Host == "":
		return nil, fmt.Errorf("%s %q is not an absolute URL with a host", what, s)
	case u.User != nil:
		return nil, fmt.Errorf("%s %q must not carry userinfo", what, s)
	case u.RawQuery != "" || u.ForceQuery:
		return nil, fmt.Errorf("%s %q must not carry a query", what, s)
	case u.Fragment != "" || strings.Contains(s, "#"):
		return nil, fmt.Errorf("%s %q must not carry a fragment", what, s)
	case strings.ContainsAny(s, " \t\r\n"):
		return nil, fmt.Errorf("%s %q must not contain white space", what, s)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopbackHost(u.Hostname()) {
			return nil, fmt.Errorf("%s %q: http is only allowed for loopback hosts; use https", what, s)
		}
	default:
		return nil, fmt.Errorf("%s %q: scheme must be https", what, s)
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}

// isLoopbackHost reports whether host is localhost or a loopback IP literal.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
