package verifier

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
)

func TestMiddlewares(t *testing.T) {
	b := newFakeBroker(t)
	b.setKey("tbk_read", validKey(time.Now().Add(time.Hour), nil))
	v := newVerifier(t, b, func(c *Config) { c.APIKeyHeader = "X-API-Key"; c.Realm = "deploy-api" })
	jwtRead := b.mint(t, "at+jwt", map[string]any{"scope": "deploy:read"})
	expired := b.mint(t, "at+jwt", map[string]any{"iat": time.Now().Add(-time.Hour).Unix(), "nbf": time.Now().Add(-time.Hour).Unix(), "exp": time.Now().Add(-time.Minute).Unix()})

	ok := func(w http.ResponseWriter, r *http.Request) {
		id, found := FromContext(r.Context())
		if !found {
			t.Error("no identity in the context")
			return
		}
		_, _ = w.Write([]byte(id.Kind + " " + id.Subject))
	}
	e := echo.New()
	e.GET("/status", func(c echo.Context) error {
		if _, found := c.Get(EchoContextKey).(*Identity); !found {
			t.Error("no identity in the echo context")
		}
		ok(c.Response(), c.Request())
		return nil
	}, v.Echo("deploy:read"))
	e.POST("/deploy", func(c echo.Context) error { ok(c.Response(), c.Request()); return nil }, v.Echo("deploy:prod"))
	mux := http.NewServeMux()
	mux.Handle("GET /status", v.Middleware("deploy:read")(http.HandlerFunc(ok)))
	mux.Handle("POST /deploy", v.Middleware("deploy:prod")(http.HandlerFunc(ok)))

	tests := []struct {
		name, method, path string
		headers            map[string]string
		wantStatus         int
		wantAuth           string
	}{
		{"jwt in scope", "GET", "/status", map[string]string{"Authorization": "Bearer " + jwtRead}, 200, ""},
		{"api key as bearer", "GET", "/status", map[string]string{"Authorization": "Bearer tbk_read"}, 200, ""},
		{"api key in its header", "GET", "/status", map[string]string{"X-API-Key": "tbk_read"}, 200, ""},
		{"jwt out of scope", "POST", "/deploy", map[string]string{"Authorization": "Bearer " + jwtRead}, 403,
			`Bearer realm="deploy-api", error="insufficient_scope", error_description="the credential lacks scope deploy:prod", scope="deploy:prod"`},
		{"api key out of scope", "POST", "/deploy", map[string]string{"X-API-Key": "tbk_read"}, 403,
			`Bearer realm="deploy-api", error="insufficient_scope", error_description="the credential lacks scope deploy:prod", scope="deploy:prod"`},
		{"expired jwt", "GET", "/status", map[string]string{"Authorization": "Bearer " + expired}, 401,
			`Bearer realm="deploy-api", error="invalid_token", error_description="the credential expired"`},
		{"unknown api key", "GET", "/status", map[string]string{"Authorization": "Bearer tbk_nope"}, 401,
			`Bearer realm="deploy-api", error="invalid_token", error_description="unknown credential"`},
		{"no credential", "GET", "/status", nil, 401, `Bearer realm="deploy-api"`},
		{"basic auth is no credential", "GET", "/status", map[string]string{"Authorization": "Basic dTpw"}, 401, `Bearer realm="deploy-api"`},
		{"two credentials", "GET", "/status", map[string]string{"Authorization": "Bearer " + jwtRead, "X-API-Key": "tbk_read"}, 401,
			`Bearer realm="deploy-api", error="invalid_token", error_description="more than one credential"`},
	}
	for _, h := range []struct {
		name    string
		handler http.Handler
	}{{"echo", e}, {"net/http", mux}} {
		for _, tc := range tests {
			t.Run(h.name+"/"+tc.name, func(t *testing.T) {
				req := httptest.NewRequest(tc.method, tc.path, nil)
				for k, val := range tc.headers {
					req.Header.Set(k, val)
				}
				rec := httptest.NewRecorder()
				h.handler.ServeHTTP(rec, req)
				if rec.Code != tc.wantStatus {
					t.Fatalf("status %d, want %d (body %q)", rec.Code, tc.wantStatus, rec.Body)
				}
				if got := rec.Header().Get("WWW-Authenticate"); got != tc.wantAuth {
					t.Errorf("WWW-Authenticate = %q\nwant %q", got, tc.wantAuth)
				}
			})
		}
	}
}

func TestMiddlewareBrokerUnavailable(t *testing.T) {
	b := newFakeBroker(t)
	b.noKeys = true
	v := newVerifier(t, b, nil)
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Authorization", "Bearer tbk_x")
	rec := httptest.NewRecorder()
	v.Middleware()(http.NotFoundHandler()).ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("WWW-Authenticate") != "" {
		t.Fatalf("status %d, WWW-Authenticate %q", rec.Code, rec.Header().Get("WWW-Authenticate"))
	}
}
