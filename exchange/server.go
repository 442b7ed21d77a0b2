package exchange

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// HeaderRequestID carries the id of every response; the audit trail records it.
const HeaderRequestID = "X-Request-Id"

// ServerConfig wires the HTTP API.
type ServerConfig struct {
	// PublicURL is the broker's issuer URL (no trailing slash).
	PublicURL string
	Exchanger *Exchanger
	Keys      *KeyManager
	Audit     Auditor
	// Ready reports readiness (e.g. the store's Ping); nil means always ready.
	Ready func(ctx context.Context) error
	// Registry receives the HTTP metrics; nil makes a private one.
	Registry *prometheus.Registry
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// ClientLimiter, when set, rate-limits POST /token per client IP (429),
	// and, in a separate bucket at the same rate, /revoke, /introspect and
	// /v1/keys/verify together. MaxInFlight caps all four.
	ClientLimiter *RateLimiter
	// MaxInFlight caps concurrent requests (zero: no cap); a request waits
	// up to InFlightWait (zero: DefaultInFlightWait) for a slot, then gets 503.
	MaxInFlight  int
	InFlightWait time.Duration
	// SeparateMetrics leaves /metrics off the API; serve it from
	// MetricsHandler on an admin listener instead.
	SeparateMetrics bool
	// APIKeys, when set, serves POST /v1/keys/verify.
	APIKeys *APIKeys
	// Revoker, when set, serves POST /revoke and POST /introspect.
	Revoker *Revoker
	// TrustedProxies are the proxies (load balancers, ingress) whose
	// X-Forwarded-For is believed; the client address is then the right-most
	// untrusted address of the chain. Empty: the TCP peer is the client and
	// X-Forwarded-For is ignored.
	TrustedProxies []*net.IPNet
}

// Server is the broker's HTTP API on Echo.
type Server struct {
	cfg      ServerConfig
	echo     *echo.Echo
	metrics  *metrics
	inFlight *inFlight
}

// NewServer builds the routes of the HTTP API of DESIGN.md.
func NewServer(cfg ServerConfig) *Server {
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	// The client address is the TCP peer unless a deployment says otherwise:
	// X-Forwarded-For from anyone would let a caller pick its own address.
	e.IPExtractor = echo.ExtractIPDirect()
	if len(cfg.TrustedProxies) > 0 {
		// Echo trusts loopback, link-local and private ranges by default;
		// only the configured proxies are trusted here.
		opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
		for _, n := range cfg.TrustedProxies {
			opts = append(opts, echo.TrustIPRange(n))
		}
		e.IPExtractor = echo.ExtractIPFromXFFHeader(opts...)
	}
	s := &Server{cfg: cfg, echo: e, metrics: newMetrics(cfg.Registry), inFlight: newInFlight(cfg.MaxInFlight, cfg.InFlightWait)}
	e.HTTPErrorHandler = s.handleError
	e.Use(requestID)
	e.POST("/token", s.token)
	e.GET("/.well-known/openid-configuration", s.discovery)
	e.GET("/.well-known/jwks.json", s.jwks)
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	e.GET("/readyz", s.readyz)
	s.credentialRoutes()
	if !cfg.SeparateMetrics {
		e.GET("/metrics", echo.WrapHandler(s.MetricsHandler()))
	}
	return s
}

// MetricsHandler serves the Prometheus metrics (for an admin listener).
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{})
}

// Handler returns the API as an http.Handler.
func (s *Server) Handler() http.Handler { return s.echo }

func requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		// Always our own id: a client-chosen one could collide with, or
		// impersonate, another request in the audit trail.
		var b [12]byte
		_, _ = rand.Read(b[:])
		id := hex.EncodeToString(b[:])
		c.Set("request_id", id)
		c.Response().Header().Set(HeaderRequestID, id)
		return next(c)
	}
}

func reqID(c echo.Context) string { id, _ := c.Get("request_id").(string); return id }

// httpStatus maps an RFC 6749 error code to its HTTP status.
func httpStatus(code string) int {
	switch code {
	case CodeTemporarilyUnavailable:
		return http.StatusServiceUnavailable
	case CodeServerError:
		return http.StatusInternalServerError
	case CodeRateLimited:
		return http.StatusTooManyRequests
	default:
		return http.StatusBadRequest
	}
}

type errorBody struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description,omitempty"`
}

func writeError(c echo.Context, e *Error) error {
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int((e.RetryAfter+time.Second-1)/time.Second)))
	}
	code := e.Code
	if code == CodeRateLimited {
		// RFC 6749 has no rate-limit code; 429 says it, the body stays standard.
		code = CodeTemporarilyUnavailable
	}
	return c.JSON(httpStatus(e.Code), errorBody{Error: code, ErrorDescription: e.Description})
}

// handleError answers routing errors (404, 405, ...) in the RFC 6749 shape.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var he *echo.HTTPError
	status := http.StatusInternalServerError
	if errors.As(err, &he) {
		status = he.Code
	}
	body := errorBody{Error: CodeServerError}
	if status < 500 {
		body = errorBody{Error: CodeInvalidRequest, ErrorDescription: strings.ToLower(http.StatusText(status))}
	}
	if status == http.StatusMethodNotAllowed && c.Request().URL.Path == "/token" {
		c.Response().Header().Set("Allow", http.MethodPost)
	}
	_ = c.JSON(status, body)
}

func (s *Server) token(c echo.Context) error {
	start := s.cfg.Now()
	ev := AuditEvent{Time: start, RequestID: reqID(c), ClientIP: c.RealIP(), Action: "token.exchange"}
	release, refused := s.admit(c, bucketToken)
	if refused != nil {
		// Not audited: no token was read, and a flood must not become a
		// flood of audit rows. The metrics count it.
		s.metrics.observe(AuditEvent{Outcome: OutcomeDenied, ErrorCode: refused.Code}, s.cfg.Now().Sub(start))
		return writeError(c, refused)
	}
	defer release()
	resp, out, err := s.exchange(c)
	if out != nil {
		ev.TokenType = out.TokenType
		if out.Token != nil {
			ev.Issuer, ev.Subject = out.Token.Issuer, out.Token.Subject
		}
		if d := out.Decision; d != nil {
			ev.Policy, ev.Candidates = d.Policy, d.Candidates
			ev.Audience, ev.Scopes = d.Grant.Audience, d.Grant.Scopes
			if len(d.Lifted) > 0 {
				// The lint refusals the selected policy lifts (allow:), so the
				// trail shows each exchange that relied on one.
				ev.Reason = "lifted: " + strings.Join(d.Lifted, ", ")
			}
		}
		ev.CredentialID, ev.ExpiresAt = out.CredentialID, out.ExpiresAt
	}
	if err != nil {
		e := AsError(err)
		ev.Outcome, ev.ErrorCode, ev.Reason = OutcomeDenied, e.Code, e.Reason()
		if httpStatus(e.Code) >= 500 {
			ev.Outcome = OutcomeError
		}
		s.record(ev, start)
		return writeError(c, e)
	}
	ev.Outcome = OutcomeAllowed
	s.record(ev, start)
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	return c.JSON(http.StatusOK, resp)
}

func (s *Server) record(ev AuditEvent, start time.Time) {
	s.metrics.observe(ev, s.cfg.Now().Sub(start))
	if s.cfg.Audit != nil {
		s.cfg.Audit.Record(ev)
	}
}

func (s *Server) exchange(c echo.Context) (*Response, *Outcome, error) {
	r := c.Request()
	if r.URL.RawQuery != "" {
		return nil, nil, newError(CodeInvalidRequest, "parameters must be sent in the request body, not the URL", nil)
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), r.Body, MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, nil, newError(CodeInvalidRequest, "request body too large", err)
		}
		return nil, nil, newError(CodeInvalidRequest, "cannot read request body", err)
	}
	req, err := ParseRequest(r.Header.Get(echo.HeaderContentType), body)
	if err != nil {
		return nil, nil, err
	}
	return s.cfg.Exchanger.Exchange(r.Context(), req)
}

// discoveryDoc is the subset of OpenID Provider Metadata a downstream
// verifier needs (stock go-oidc reads issuer, jwks_uri and the algorithms).
type discoveryDoc struct {
	Issuer                  string   `json:"issuer"`
	JWKSURI                 string   `json:"jwks_uri"`
	TokenEndpoint           string   `json:"token_endpoint"`
	GrantTypes              []string `json:"grant_types_supported"`
	ResponseTypes           []string `json:"response_types_supported"`
	SubjectTypes            []string `json:"subject_types_supported"`
	SigningAlgs             []string `json:"id_token_signing_alg_values_supported"`
	TokenEndpointAuthMethod []string `json:"token_endpoint_auth_methods_supported"`
}

func (s *Server) discovery(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "public, max-age=300")
	return c.JSON(http.StatusOK, discoveryDoc{
		Issuer:                  s.cfg.PublicURL,
		JWKSURI:                 s.cfg.PublicURL + "/.well-known/jwks.json",
		TokenEndpoint:           s.cfg.PublicURL + "/token",
		GrantTypes:              []string{GrantTypeTokenExchange},
		ResponseTypes:           []string{"token"},
		SubjectTypes:            []string{"public"},
		SigningAlgs:             s.cfg.Keys.Algorithms(),
		TokenEndpointAuthMethod: []string{"none"},
	})
}

func (s *Server) jwks(c echo.Context) error {
	// Short max-age: a rotated key must reach verifiers before it signs.
	c.Response().Header().Set("Cache-Control", "public, max-age=60")
	return c.Blob(http.StatusOK, "application/jwk-set+json", s.cfg.Keys.JWKS())
}

func (s *Server) readyz(c echo.Context) error {
	if s.cfg.Ready != nil {
		ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
		defer cancel()
		if err := s.cfg.Ready(ctx); err != nil {
			return c.String(http.StatusServiceUnavailable, "not ready\n")
		}
	}
	return c.String(http.StatusOK, "ready\n")
}
