package providers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"
)

// ErrDevIssuer means an issuer's discovery document carries
// "tokenbroker_development_only": true and Options.AllowDevIssuer is false.
// Verify wraps it together with ErrUntrustedIssuer; Warm returns it so that
// `serve` can refuse to start.
var ErrDevIssuer = errors.New("providers: issuer is a development-only issuer")

// Provider describes a configured provider, for policies and the admin CLI.
type Provider struct {
	// Name is the configured name.
	Name string
	// Issuer is the issuer, compared with iss byte for byte.
	Issuer string
	// Preset is the preset's name: the configured one, else the one whose
	// issuer this is, else "generic".
	Preset string
	// Shared is true when many tenants share the issuer.
	Shared bool
	// TenantClaims are the claims that pin a tenant on a shared issuer; nil
	// when the issuer is not shared.
	TenantClaims []string
	// RepositoryClaims are the claims that pin one repository or project;
	// nil when the preset does not name them.
	RepositoryClaims []string
	// KnownClaims are the claims the preset documents; nil for generic.
	KnownClaims map[string]ClaimType
	// Algorithms are the accepted signing algorithms.
	Algorithms []string
	// Guardrails are the preset's default deny rules, applied to every
	// token of the issuer; nil when the preset has none.
	Guardrails []DefaultGuardrail
}

// IssuerStats counts the outbound requests made for one provider.
type IssuerStats struct {
	// DiscoveryFetches counts requests for the discovery document.
	DiscoveryFetches int64
	// JWKSFetches counts requests for the key set.
	JWKSFetches int64
}

// Registry verifies CI ID tokens against the configured providers. It is
// safe for concurrent use.
type Registry struct {
	opts      Options
	issuers   []*issuer
	byIssuer  map[string]*issuer
	verifiers *lru.Cache[string, *verifier]
}

// issuer is the lasting state of one configured provider.
type issuer struct {
	resolved
	client           *http.Client
	discoveryFetches atomic.Int64
	jwksFetches      atomic.Int64
	flight           singleflight.Group

	mu            sync.Mutex
	lastDiscovery time.Time
	lastErr       error
}

// verifier is what discovery produces for an issuer: go-oidc's verifier on
// top of our key set. It is immutable; a new discovery replaces it.
type verifier struct {
	oidc         *oidc.IDTokenVerifier
	keys         *keySet
	discoveredAt time.Time
}

// New validates the provider configuration and returns a registry. It does
// no I/O; call Warm to discover every issuer eagerly.
func New(cfgs []Config, opts Options) (*Registry, error) {
	rs, err := resolveConfigs(cfgs)
	if err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	cache, err := lru.New[string, *verifier](opts.CacheSize)
	if err != nil {
		return nil, fmt.Errorf("providers: verifier cache: %w", err)
	}
	r := &Registry{opts: opts, byIssuer: make(map[string]*issuer, len(rs)), verifiers: cache}
	for _, res := range rs {
		iss := &issuer{resolved: res, client: boundedClient(opts.HTTPClient, res.origin, opts)}
		r.issuers = append(r.issuers, iss)
		r.byIssuer[res.issuer] = iss
	}
	return r, nil
}

// Verify verifies a CI ID token: its form, issuer, algorithm, signature and
// time claims. The audience is left to trust policies. Errors wrap the
// sentinel errors of this package.
func (r *Registry) Verify(ctx context.Context, raw string) (*Token, error) {
	// (1) Size cap, compact JWS only, forbidden headers, and a first
	// algorithm check against the global allow-list (never none or HS*).
	u, err := parseUnverified(raw, r.opts.MaxTokenBytes)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(allowedAlgorithms, u.alg) {
		return nil, fmt.Errorf("%w: %q", ErrAlgorithm, u.alg)
	}
	// (2) The unverified iss only selects a configured issuer, compared
	// byte for byte; an unknown one is refused before any I/O.
	iss, ok := r.byIssuer[u.iss]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUntrustedIssuer, u.iss)
	}
	if !slices.Contains(iss.algorithms, u.alg) {
		return nil, fmt.Errorf("%w: %q for provider %q (allowed: %v)", ErrAlgorithm, u.alg, iss.name, iss.algorithms)
	}
	// (3) The issuer's verifier (discovery, then our cached key set), with
	// (4) every fetch bounded by the issuer's client.
	v, err := r.verifier(ctx, iss)
	if err != nil {
		return nil, fmt.Errorf("providers: provider %q: %w", iss.name, err)
	}
	res := &verifyResult{}
	if _, err := v.oidc.Verify(context.WithValue(ctx, resultKey{}, res), raw); err != nil {
		switch {
		case res.err != nil:
			err = res.err
		case !res.called:
			err = fmt.Errorf("%w: %w", ErrMalformed, err)
		default: // the signature verified; go-oidc refused a claim's type
			err = fmt.Errorf("%w: %w", ErrClaims, err)
		}
		return nil, fmt.Errorf("providers: provider %q: %w", iss.name, err)
	}
	// (5) Time claims with leeway, sub and aud; (6) the claims were decoded
	// with UseNumber, a depth cap and no duplicate keys in step (1).
	tok, err := r.buildToken(iss, u, res.kid)
	if err != nil {
		return nil, fmt.Errorf("providers: provider %q: %w", iss.name, err)
	}
	return tok, nil
}

// verifier returns the issuer's verifier from the cache, discovering it
// when absent or due (see needsDiscovery). Discovery is shared by concurrent
// callers and not started again within RefreshCooldown of the last one; a
// failed rediscovery keeps the cached verifier, and its keys up to
// MaxStaleness old, serving.
func (r *Registry) verifier(ctx context.Context, iss *issuer) (*verifier, error) {
	if v, ok := r.verifiers.Get(iss.issuer); ok && !r.needsDiscovery(v) {
		return v, nil
	}
	v, err, _ := iss.flight.Do("discovery", func() (any, error) {
		old, ok := r.verifiers.Get(iss.issuer)
		if ok && !r.needsDiscovery(old) {
			return old, nil
		}
		now := r.opts.Now()
		iss.mu.Lock()
		if now.Sub(iss.lastDiscovery) < r.opts.RefreshCooldown && (old != nil || iss.lastErr != nil) {
			err := iss.lastErr
			iss.mu.Unlock()
			if old != nil {
				return old, nil
			}
			return nil, err
		}
		iss.lastDiscovery = now
		iss.mu.Unlock()

		v, err := r.rediscover(ctx, iss, old)
		iss.mu.Lock()
		iss.lastErr = err
		iss.mu.Unlock()
		switch {
		case errors.Is(err, ErrDevIssuer):
			// The issuer now says it mints tokens for anyone: stop trusting
			// what an earlier discovery found.
			r.verifiers.Remove(iss.issuer)
			return nil, err
		case err != nil && old != nil:
			return old, nil
		case err != nil:
			return nil, err
		}
		r.verifiers.Add(iss.issuer, v)
		return v, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*verifier), nil
}

// needsDiscovery reports whether v's discovery is due again: it is older
// than DiscoveryTTL, or its key set has failed to fetch for KeySetTTL (the
// issuer may have moved its jwks_uri).
func (r *Registry) needsDiscovery(v *verifier) bool {
	now := r.opts.Now()
	return now.Sub(v.discoveredAt) >= r.opts.DiscoveryTTL || v.keys.failingFor(now) >= r.opts.KeySetTTL
}

// rediscover discovers the issuer again. When the jwks_uri is unchanged the
// old key set, its cache and cooldown included, is kept; a moved jwks_uri
// replaces the old keys only once the new key set has been fetched.
func (r *Registry) rediscover(ctx context.Context, iss *issuer, old *verifier) (*verifier, error) {
	jwksURL, jwksOrigin, err := r.discover(ctx, iss)
	if err != nil {
		return nil, err
	}
	if old != nil && old.keys.url == jwksURL {
		return r.newVerifier(iss, old.keys), nil
	}
	// The key set's client is bounded to the jwks_uri's origin, not the
	// issuer's: its redirects must not leave the host that serves the keys.
	keys := newKeySet(jwksURL, iss.algorithms, boundedClient(r.opts.HTTPClient, jwksOrigin, r.opts), r.opts, &iss.jwksFetches)
	if old != nil {
		if _, err := keys.current(ctx); err != nil {
			return nil, err
		}
	}
	return r.newVerifier(iss, keys), nil
}

// newVerifier returns a verifier for iss on keys, discovered now.
func (r *Registry) newVerifier(iss *issuer, keys *keySet) *verifier {
	v := oidc.NewVerifier(iss.issuer, keys, &oidc.Config{
		SkipClientIDCheck:    true, // trust policies check the audience
		SkipExpiryCheck:      true, // checked with our leeway in buildToken
		SupportedSigningAlgs: iss.algorithms,
		Now:                  r.opts.Now,
	})
	return &verifier{oidc: v, keys: keys, discoveredAt: r.opts.Now()}
}

// discover fetches the issuer's discovery document through go-oidc, which
// refuses a document whose issuer differs from the configured one, and
// returns its jwks_uri, and the jwks_uri's origin, once validateJWKSURL
// accepts it.
func (r *Registry) discover(ctx context.Context, iss *issuer) (string, *url.URL, error) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.FetchTimeout)
	defer cancel()
	iss.discoveryFetches.Add(1)
	p, err := oidc.NewProvider(oidc.ClientContext(fctx, iss.client), iss.issuer)
	if err != nil {
		return "", nil, fmt.Errorf("%w: discovery of %s: %w", ErrUnavailable, iss.issuer, err)
	}
	var meta struct {
		JWKSURL string `json:"jwks_uri"`
		Dev     any    `json:"tokenbroker_development_only"`
	}
	if err := p.Claims(&meta); err != nil {
		return "", nil, fmt.Errorf("%w: discovery document of %s: %w", ErrUnavailable, iss.issuer, err)
	}
	if meta.Dev != nil && meta.Dev != false && !r.opts.AllowDevIssuer {
		return "", nil, fmt.Errorf("%w: %w: %s mints tokens for anyone; it is accepted only in development mode",
			ErrUntrustedIssuer, ErrDevIssuer, iss.issuer)
	}
	origin, err := validateJWKSURL(meta.JWKSURL, iss.origin)
	if err != nil {
		return "", nil, fmt.Errorf("%w: jwks_uri of %s: %w", ErrUnavailable, iss.issuer, err)
	}
	return meta.JWKSURL, origin, nil
}

// Warm discovers every provider and fetches its key set, so that a bad
// configuration shows at start-up. It returns one error per failing
// provider, each naming it; an error wrapping ErrDevIssuer means a
// development issuer is configured without AllowDevIssuer.
func (r *Registry) Warm(ctx context.Context) []error {
	var errs []error
	for _, iss := range r.issuers {
		v, err := r.verifier(ctx, iss)
		if err == nil {
			_, err = v.keys.current(ctx)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("providers: provider %q: %w", iss.name, err))
		}
	}
	return errs
}

// Leeway is the clock skew tolerated on exp, nbf and iat: a token stays
// acceptable until exp + Leeway, so a replay cache must remember it that long.
func (r *Registry) Leeway() time.Duration { return r.opts.Leeway }

// Providers describes the configured providers, in configuration order.
func (r *Registry) Providers() []Provider {
	out := make([]Provider, 0, len(r.issuers))
	for _, iss := range r.issuers {
		out = append(out, Provider{
			Name:             iss.name,
			Issuer:           iss.issuer,
			Preset:           iss.preset.Name,
			Shared:           iss.preset.Shared,
			TenantClaims:     tenantClaims(iss.preset),
			RepositoryClaims: slices.Clone(iss.preset.RepositoryClaims),
			KnownClaims:      maps.Clone(iss.preset.Claims),
			Algorithms:       slices.Clone(iss.algorithms),
			Guardrails:       clonePreset(iss.preset).Guardrails,
		})
	}
	return out
}

// tenantClaims returns the preset's tenant claims when its issuer is shared:
// policy lint reads a non-empty list as "shared".
func tenantClaims(p Preset) []string {
	if !p.Shared {
		return nil
	}
	return slices.Clone(p.TenantClaims)
}

// Stats returns the outbound request counts per provider name, for metrics
// and tests.
func (r *Registry) Stats() map[string]IssuerStats {
	out := make(map[string]IssuerStats, len(r.issuers))
	for _, iss := range r.issuers {
		out[iss.name] = IssuerStats{
			DiscoveryFetches: iss.discoveryFetches.Load(),
			JWKSFetches:      iss.jwksFetches.Load(),
		}
	}
	return out
}
