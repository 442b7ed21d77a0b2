package exchange

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// maxCredentialBody caps the body of /v1/keys/verify, /revoke and
// /introspect: a key or a minted JWT, with room to spare.
const maxCredentialBody = 16 << 10

// KeyVerifyResponse is the answer of POST /v1/keys/verify (DESIGN.md,
// contract). A refused key is answered with Valid and Code only, every other
// field left out: whoever holds a dead key learns nothing more about it.
// Remaining is null for a key without a use limit; otherwise it is the uses
// left after this verification.
type KeyVerifyResponse struct {
	Valid     bool              `json:"valid"`
	Code      string            `json:"code"`
	KeyID     string            `json:"key_id,omitempty"`
	Subject   string            `json:"subject,omitempty"`
	Policy    string            `json:"policy,omitempty"`
	Audience  []string          `json:"audience,omitempty"`
	Scopes    []string          `json:"scopes,omitempty"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	ExpiresAt *time.Time        `json:"expires_at,omitempty"`
	Remaining *int64            `json:"remaining"`
}

// validKeyResponse is KeyVerifyResponse for a valid key: every field
// present, empty lists as [], remaining null when unlimited.
type validKeyResponse struct {
	Valid     bool              `json:"valid"`
	Code      string            `json:"code"`
	KeyID     string            `json:"key_id"`
	Subject   string            `json:"subject"`
	Policy    string            `json:"policy"`
	Audience  []string          `json:"audience"`
	Scopes    []string          `json:"scopes"`
	Metadata  map[string]string `json:"metadata"`
	ExpiresAt time.Time         `json:"expires_at"`
	Remaining *int64            `json:"remaining"`
}

// refusedKeyResponse is the answer for a refused key.
type refusedKeyResponse struct {
	Valid bool   `json:"valid"`
	Code  string `json:"code"`
}

// credentialAPI serves /v1/keys/verify, /revoke and /introspect.
type credentialAPI struct {
	server      *Server
	keys        *APIKeys
	revoker     *Revoker
	verifies    *prometheus.CounterVec
	revocations *prometheus.CounterVec
}

// credentialRoutes adds the routes of the configured credential services.
func (s *Server) credentialRoutes() {
	api := &credentialAPI{
		server:  s,
		keys:    s.cfg.APIKeys,
		revoker: s.cfg.Revoker,
		verifies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenbroker_key_verifications_total",
			Help: "API key verifications by code (VALID, NOT_FOUND, ...; error when the store failed; limited when refused by the rate limit or in-flight cap).",
		}, []string{"code"}),
		revocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenbroker_revocations_total",
			Help: "POST /revoke calls by result: revoked, unknown (not a credential of this broker; not audited), invalid_request, limited (rate limit or in-flight cap), error.",
		}, []string{"result"}),
	}
	s.cfg.Registry.MustRegister(api.verifies, api.revocations)
	if api.keys != nil {
		s.echo.POST("/v1/keys/verify", api.verify, api.admitted)
	}
	if api.revoker != nil {
		s.echo.POST("/revoke", api.revoke, api.admitted)
		s.echo.POST("/introspect", api.introspect, api.admitted)
	}
}

// admitted applies the client-IP limit (credentials bucket) and the
// in-flight cap to a credential endpoint, before its body is read. A refused
// request is not audited, so a flood cannot become a flood of audit rows;
// it is counted in the endpoint's metric.
func (a *credentialAPI) admitted(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		release, refused := a.server.admit(c, bucketCredentials)
		if refused != nil {
			switch c.Path() {
			case "/revoke":
				a.revocations.WithLabelValues("limited").Inc()
			case "/v1/keys/verify":
				a.verifies.WithLabelValues("limited").Inc()
			}
			noStore(c)
			return writeError(c, refused)
		}
		defer release()
		return next(c)
	}
}

// verify answers POST /v1/keys/verify {"key": "tbk_..."}.
func (a *credentialAPI) verify(c echo.Context) error {
	noStore(c)
	body, e := readBody(c)
	if e != nil {
		return writeError(c, e)
	}
	var req struct {
		Key *string `json:"key"`
	}
	if err := json.Unmarshal(body, &req); err != nil || req.Key == nil {
		return writeError(c, newError(CodeInvalidRequest, `body must be {"key": "tbk_..."}`, err))
	}
	v, err := a.keys.Verify(c.Request().Context(), *req.Key)
	if err != nil {
		a.verifies.WithLabelValues("error").Inc()
		return writeError(c, unavailable(err))
	}
	a.verifies.WithLabelValues(v.Code).Inc()
	if !v.Valid() {
		return c.JSON(http.StatusOK, refusedKeyResponse{Code: v.Code})
	}
	k := v.Key
	res := validKeyResponse{
		Valid: true, Code: KeyValid, KeyID: k.ID, Subject: k.Subject, Policy: k.Policy,
		Audience: nonNil(k.Audience), Scopes: nonNil(k.Scopes), Metadata: k.Metadata,
		ExpiresAt: k.ExpiresAt.UTC(),
	}
	if res.Metadata == nil {
		res.Metadata = map[string]string{}
	}
	if k.Limited() {
		res.Remaining = &k.Remaining
	}
	return c.JSON(http.StatusOK, res)
}

func nonNil(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

func noStore(c echo.Context) {
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
}

// readBody reads a bounded request body; parameters in the URL are refused,
// since URLs end up in logs.
func readBody(c echo.Context) ([]byte, *Error) {
	r := c.Request()
	if r.URL.RawQuery != "" {
		return nil, newError(CodeInvalidRequest, "parameters must be sent in the request body, not the URL", nil)
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), r.Body, maxCredentialBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, newError(CodeInvalidRequest, "request body too large", err)
		}
		return nil, newError(CodeInvalidRequest, "cannot read request body", err)
	}
	return body, nil
}

// readTokenForm reads the form of RFC 7009 §2.1 and RFC 7662 §2.1: token,
// once, and an optional token_type_hint (accepted and not needed: the
// token's shape tells its kind).
func readTokenForm(c echo.Context) (string, *Error) {
	body, e := readBody(c)
	if e != nil {
		return "", e
	}
	mt, _, err := mime.ParseMediaType(c.Request().Header.Get(echo.HeaderContentType))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return "", newError(CodeInvalidRequest, "Content-Type must be application/x-www-form-urlencoded", err)
	}
	vals, err := url.ParseQuery(string(body))
	if err != nil {
		return "", newError(CodeInvalidRequest, "malformed form body", err)
	}
	for _, p := range []string{"token", "token_type_hint"} {
		if len(vals[p]) > 1 {
			return "", newError(CodeInvalidRequest, p+" given more than once", nil)
		}
	}
	tok := vals.Get("token")
	if tok == "" {
		return "", newError(CodeInvalidRequest, "missing token", nil)
	}
	return tok, nil
}
