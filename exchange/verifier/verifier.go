// Package verifier is the downstream side of tokenbroker: middleware for
// net/http and Echo that accepts the credentials the broker mints, so an API
// behind it only ever sees requests from pipelines a trust policy allowed.
//
// JWTs are verified locally with go-oidc against the broker's discovery
// document and JWKS (issuer, audience, expiry, signature) plus the RFC 9068
// header typ "at+jwt". API keys (tbk_...) are checked with the broker's
// POST /v1/keys/verify, with a short cache.
package verifier

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/hashicorp/golang-lru/v2/expirable"
	"golang.org/x/sync/singleflight"
)

// Defaults of Config.
const (
	// DefaultKeyCacheTTL is how long a verified API key is cached.
	DefaultKeyCacheTTL = 10 * time.Second
	// DefaultKeyCacheSize caps the API key cache.
	DefaultKeyCacheSize = 1024
	// discoveryRetry is the least time between two failed discovery
	// attempts, so an unreachable broker is not hammered by every request.
	discoveryRetry = 5 * time.Second
	// defaultTimeout bounds every call to the broker.
	defaultTimeout = 10 * time.Second
	// maxResponseBytes caps any broker answer.
	maxResponseBytes = 64 << 10
	// APIKeyPrefix starts every API key the broker mints.
	APIKeyPrefix = "tbk_"
)

// Errors a verification fails with; the middleware maps them to RFC 6750
// answers.
var (
	// ErrNoCredential: the request carries no credential (401, no error code).
	ErrNoCredential = errors.New("verifier: no credential")
	// ErrInvalidToken: the credential is malformed, forged, expired, revoked
	// or not for this API (401 invalid_token).
	ErrInvalidToken = errors.New("verifier: invalid token")
	// ErrUnavailable: the broker could not be asked (503).
	ErrUnavailable = errors.New("verifier: broker unavailable")
)

// InvalidTokenError is a refused credential. Description is short and safe
// to send as the RFC 6750 error_description; Err is the full reason, for logs.
type InvalidTokenError struct {
	Description string
	Err         error
}

func (e *InvalidTokenError) Error() string {
	if e.Err != nil {
		return "verifier: invalid token: " + e.Description + ": " + e.Err.Error()
	}
	return "verifier: invalid token: " + e.Description
}

func (e *InvalidTokenError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrInvalidToken) hold.
func (e *InvalidTokenError) Is(target error) bool { return target == ErrInvalidToken }

func invalid(desc string, err error) error { return &InvalidTokenError{Description: desc, Err: err} }

// Config configures a Verifier.
type Config struct {
	// Issuer is the broker's public_url: the iss of its JWTs and the base of
	// its discovery document and /v1/keys/verify. Required.
	Issuer string
	// Audience is this API's name as policies grant it (e.g. deploy-api);
	// a credential whose audience lacks it is refused. Required.
	Audience string
	// APIKeyHeader, when set, is a header that may carry an API key as-is
	// (e.g. X-API-Key), besides "Authorization: Bearer tbk_...".
	APIKeyHeader string
	// KeyVerifyURL is where API keys are checked; empty means
	// Issuer/v1/keys/verify.
	KeyVerifyURL string
	// KeyCacheTTL is how long a valid API key is cached (never past its
	// expiry; keys with remaining uses are never cached). Zero means
	// DefaultKeyCacheTTL; negative disables the cache, so a revocation
	// takes effect on the next request.
	KeyCacheTTL time.Duration
	// KeyCacheSize caps the cache; zero means DefaultKeyCacheSize.
	KeyCacheSize int
	// HTTPClient calls the broker; nil means a client with a 10s timeout.
	// Redirects are never followed.
	HTTPClient *http.Client
	// Realm, when set, is sent in WWW-Authenticate.
	Realm string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// InsecureAllowHTTP allows a plain-http Issuer or KeyVerifyURL on a
	// non-loopback host. Off, only https is accepted, or http on a loopback
	// host: the JWKS fetched from the broker is the trust anchor of every
	// JWT, and API keys are sent to it, so neither may travel in clear.
	InsecureAllowHTTP bool
}

// Verifier checks broker-minted credentials. It is safe for concurrent use.
type Verifier struct {
	cfg       Config
	http      *http.Client
	verifyURL string
	keyCache  *expirable.LRU[string, *keyEntry]

	// discovery shares one broker discovery between concurrent callers.
	discovery singleflight.Group

	mu         sync.Mutex
	idVerifier *oidc.IDTokenVerifier
	lastFail   time.Time
	lastErr    error
}

// New checks cfg and returns a Verifier. The broker is contacted lazily, on
// the first JWT, so an API can start before its broker.
func New(cfg Config) (*Verifier, error) {
	cfg.Issuer = strings.TrimRight(cfg.Issuer, "/")
	if err := checkBrokerURL("issuer", cfg.Issuer, cfg.InsecureAllowHTTP); err != nil {
		return nil, err
	}
	if cfg.KeyVerifyURL != "" {
		if err := checkBrokerURL("key verify URL", cfg.KeyVerifyURL, cfg.InsecureAllowHTTP); err != nil {
			return nil, err
		}
	}
	if cfg.Audience == "" {
		return nil, errors.New("verifier: an audience is required: the name policies grant this API")
	}
	if cfg.APIKeyHeader != "" && http.CanonicalHeaderKey(cfg.APIKeyHeader) == "Authorization" {
		cfg.APIKeyHeader = ""
	}
	if cfg.KeyCacheTTL == 0 {
		cfg.KeyCacheTTL = DefaultKeyCacheTTL
	}
	if cfg.KeyCacheSize <= 0 {
		cfg.KeyCacheSize = DefaultKeyCacheSize
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	v := &Verifier{cfg: cfg, http: noRedirects(cfg.HTTPClient), verifyURL: cfg.KeyVerifyURL}
	if v.verifyURL == "" {
		v.verifyURL = cfg.Issuer + "/v1/keys/verify"
	}
	if cfg.KeyCacheTTL > 0 {
		v.keyCache = expirable.NewLRU[string, *keyEntry](cfg.KeyCacheSize, nil, cfg.KeyCacheTTL)
	}
	return v, nil
}

// Verify checks the credential r carries and returns who it identifies. It
// does not check scopes. Errors wrap ErrNoCredential, ErrInvalidToken or
// ErrUnavailable.
func (v *Verifier) Verify(r *http.Request) (*Identity, error) {
	raw, isKey, err := v.credential(r)
	if err != nil {
		return nil, err
	}
	if isKey {
		return v.VerifyAPIKey(r.Context(), raw)
	}
	return v.VerifyJWT(r.Context(), raw)
}

// credential extracts the credential: the API key header if configured and
// present, else the Authorization Bearer value (RFC 6750 §2.1).
func (v *Verifier) credential(r *http.Request) (string, bool, error) {
	if h := v.cfg.APIKeyHeader; h != "" {
		if vals := r.Header.Values(h); len(vals) > 0 {
			if len(vals) > 1 || r.Header.Get("Authorization") != "" {
				return "", false, invalid("more than one credential", nil)
			}
			return strings.TrimSpace(vals[0]), true, nil
		}
	}
	auths := r.Header.Values("Authorization")
	switch {
	case len(auths) == 0:
		return "", false, ErrNoCredential
	case len(auths) > 1:
		return "", false, invalid("more than one Authorization header", nil)
	}
	scheme, tok, ok := strings.Cut(auths[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		// Another scheme (Basic, ...) is not a credential of ours.
		return "", false, ErrNoCredential
	}
	tok = strings.TrimSpace(tok)
	if !ok || tok == "" {
		return "", false, invalid("empty bearer token", nil)
	}
	return tok, strings.HasPrefix(tok, APIKeyPrefix), nil
}

// checkBrokerURL requires an absolute https URL, or http on a loopback
// host (the client's rule) unless insecureHTTP.
func checkBrokerURL(what, raw string, insecureHTTP bool) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("verifier: %s %q is not an absolute http(s) URL", what, raw)
	}
	if u.Scheme == "http" && !insecureHTTP && !isLoopback(u.Hostname()) {
		return fmt.Errorf("verifier: %s %q: plain http would let the broker's keys and answers be swapped on path; use https (or InsecureAllowHTTP)", what, raw)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// RequireScopes reports whether id holds every scope; the first missing
// one is returned.
func RequireScopes(id *Identity, scopes []string) (string, bool) {
	for _, s := range scopes {
		if !id.HasScope(s) {
			return s, false
		}
	}
	return "", true
}

// noRedirects returns a copy of c (or a default client) that follows no
// redirects.
func noRedirects(c *http.Client) *http.Client {
	out := &http.Client{Timeout: defaultTimeout}
	if c != nil {
		cp := *c
		out = &cp
	}
	out.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	base := out.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	out.Transport = cappedTransport{base: base}
	return out
}

// cappedTransport caps every response body at maxResponseBytes, including
// the discovery and JWKS fetches go-oidc makes.
type cappedTransport struct{ base http.RoundTripper }

// RoundTrip implements http.RoundTripper.
func (t cappedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = http.MaxBytesReader(nil, resp.Body, maxResponseBytes)
	return resp, nil
}
