package verifier

import (
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// EchoContextKey is the echo.Context key the Echo middleware also stores the
// *Identity under.
const EchoContextKey = "tokenbroker.identity"

// Middleware returns net/http middleware that lets a request through only
// with a valid credential holding every one of scopes; the verified
// *Identity is in the request context (FromContext). Refusals follow
// RFC 6750 §3: 401 with WWW-Authenticate error="invalid_token", 403 with
// error="insufficient_scope" and the scopes needed, 503 when the broker
// cannot be reached.
func (v *Verifier) Middleware(scopes ...string) func(http.Handler) http.Handler {
	scopes = append([]string(nil), scopes...)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, status, challenge := v.authorize(r, scopes)
			if id == nil {
				v.refuse(w, status, challenge)
				return
			}
			next.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), id)))
		})
	}
}

// Echo returns the Echo form of Middleware. The identity is in the request
// context and under EchoContextKey.
func (v *Verifier) Echo(scopes ...string) echo.MiddlewareFunc {
	scopes = append([]string(nil), scopes...)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			id, status, challenge := v.authorize(r, scopes)
			if id == nil {
				v.refuse(c.Response(), status, challenge)
				return nil
			}
			c.SetRequest(r.WithContext(WithIdentity(r.Context(), id)))
			c.Set(EchoContextKey, id)
			return next(c)
		}
	}
}

// challenge is the content of a WWW-Authenticate answer.
type challenge struct {
	code, description, scope string
}

// authorize verifies r and checks scopes. On refusal it returns the status
// and the challenge to send.
func (v *Verifier) authorize(r *http.Request, scopes []string) (*Identity, int, challenge) {
	id, err := v.Verify(r)
	switch {
	case errors.Is(err, ErrNoCredential):
		// RFC 6750 §3.1: no error code when the request had no credential.
		return nil, http.StatusUnauthorized, challenge{}
	case errors.Is(err, ErrUnavailable):
		return nil, http.StatusServiceUnavailable, challenge{}
	case err != nil:
		return nil, http.StatusUnauthorized, challenge{code: "invalid_token", description: describe(err)}
	}
	if missing, ok := RequireScopes(id, scopes); !ok {
		return nil, http.StatusForbidden, challenge{
			code:        "insufficient_scope",
			description: "the credential lacks scope " + missing,
			scope:       strings.Join(scopes, " "),
		}
	}
	return id, 0, challenge{}
}

// describe is the safe error_description of a refused credential.
func describe(err error) string {
	var ite *InvalidTokenError
	if errors.As(err, &ite) {
		return ite.Description
	}
	return "the credential is invalid"
}

// refuse writes a refusal with its WWW-Authenticate header.
func (v *Verifier) refuse(w http.ResponseWriter, status int, ch challenge) {
	h := w.Header()
	if status != http.StatusServiceUnavailable {
		h.Set("WWW-Authenticate", v.wwwAuthenticate(ch))
	}
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Type", "application/json")
	w.WriteHeader(status)
	body := `{"error":"` + ch.code + `"}`
	switch {
	case status == http.StatusServiceUnavailable:
		body = `{"error":"temporarily_unavailable"}`
	case ch.code == "":
		body = `{"error":"unauthorized"}`
	}
	_, _ = w.Write([]byte(body + "\n"))
}

// wwwAuthenticate renders the RFC 6750 §3 challenge. Values are quoted
// strings (RFC 7235 §2.1); ours hold no quote or backslash, and quoteValue
// drops any that would.
func (v *Verifier) wwwAuthenticate(ch challenge) string {
	var params []string
	if v.cfg.Realm != "" {
		params = append(params, `realm="`+quoteValue(v.cfg.Realm)+`"`)
	}
	if ch.code != "" {
		params = append(params, `error="`+ch.code+`"`)
	}
	if ch.description != "" {
		params = append(params, `error_description="`+quoteValue(ch.description)+`"`)
	}
	if ch.scope != "" {
		params = append(params, `scope="`+quoteValue(ch.scope)+`"`)
	}
	if len(params) == 0 {
		return "Bearer"
	}
	return "Bearer " + strings.Join(params, ", ")
}

// quoteValue keeps the characters RFC 6750 allows in these values
// (%x20-21 / %x23-5B / %x5D-7E).
func quoteValue(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return -1
		}
		return r
	}, s)
}
