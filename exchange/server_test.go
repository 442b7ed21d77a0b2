package exchange_test

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenbroker/tokenbroker/exchange"
)

// recordingAuditor keeps audit events in memory for assertions.
type recordingAuditor struct{ events []exchange.AuditEvent }

func (r *recordingAuditor) Record(ev exchange.AuditEvent) { r.events = append(r.events, ev) }

func TestServerTokenEndpoint(t *testing.T) {
	x, iss, keys := newTestExchanger(t, "true")
	audit := &recordingAuditor{}
	srv := exchange.NewServer(exchange.ServerConfig{PublicURL: "https://broker.test", Exchanger: x, Keys: keys, Audit: audit, Registry: prometheus.NewRegistry()})
	h := srv.Handler()

	good := func() url.Values {
		return url.Values{
			"grant_type":         {exchange.GrantTypeTokenExchange},
			"subject_token":      {benchRequest(t, iss).SubjectToken},
			"subject_token_type": {exchange.TokenTypeIDToken},
		}
	}
	replayed := good()
	tests := []struct {
		name       string
		method     string
		target     string
		ctype      string
		body       string
		wantStatus int
		wantError  string
	}{
		{"form exchange", "POST", "/token", "application/x-www-form-urlencoded", good().Encode(), 200, ""},
		{"json exchange", "POST", "/token", "application/json", jsonBody(t, good()), 200, ""},
		{"first use", "POST", "/token", "application/x-www-form-urlencoded", replayed.Encode(), 200, ""},
		{"replayed jti", "POST", "/token", "application/x-www-form-urlencoded", replayed.Encode(), 400, "invalid_request"},
		{"GET instead of POST", "GET", "/token", "", "", 405, "invalid_request"},
		{"parameters in the URL", "POST", "/token?" + good().Encode(), "application/x-www-form-urlencoded", "", 400, "invalid_request"},
		{"body too large", "POST", "/token", "application/x-www-form-urlencoded", good().Encode() + "&pad=" + strings.Repeat("a", exchange.MaxBodyBytes), 400, "invalid_request"},
		{"garbage token", "POST", "/token", "application/x-www-form-urlencoded", withToken(good(), "not.a.jwt").Encode(), 400, "invalid_request"},
		{"missing grant type", "POST", "/token", "application/x-www-form-urlencoded", without(good(), "grant_type").Encode(), 400, "invalid_request"},
		{"wrong subject token type", "POST", "/token", "application/x-www-form-urlencoded", with(good(), "subject_token_type", "urn:ietf:params:oauth:token-type:saml2").Encode(), 400, "invalid_request"},
		{"unknown path", "GET", "/nope", "", "", 404, "invalid_request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.target, strings.NewReader(tc.body))
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", rec.Code, tc.wantStatus, rec.Body)
			}
			if rec.Header().Get(exchange.HeaderRequestID) == "" {
				t.Error("no X-Request-Id")
			}
			var body map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body not JSON: %s", rec.Body)
			}
			if tc.wantError != "" && body["error"] != tc.wantError {
				t.Errorf("error = %v, want %s", body["error"], tc.wantError)
			}
			if tc.wantError == "" && body["access_token"] == nil {
				t.Errorf("no access_token in %v", body)
			}
		})
	}
	// Every /token answer was audited with its request id; the refusal
	// carries the full reason, the response only a short description.
	var sawReplay bool
	for _, ev := range audit.events {
		if ev.RequestID == "" || ev.Action != "token.exchange" {
			t.Errorf("audit event without request id or action: %+v", ev)
		}
		if strings.Contains(ev.Reason, "already used") {
			sawReplay = true
		}
	}
	if !sawReplay {
		t.Error("the replay refusal was not audited with its reason")
	}
}

func TestServerDiscoveryAndJWKS(t *testing.T) {
	x, _, keys := newTestExchanger(t, "false")
	srv := exchange.NewServer(exchange.ServerConfig{PublicURL: "https://broker.test/", Exchanger: x, Keys: keys})
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/.well-known/openid-configuration", nil))
	var doc map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("discovery: %d %s", rec.Code, rec.Body)
	}
	if doc["issuer"] != "https://broker.test" || doc["jwks_uri"] != "https://broker.test/.well-known/jwks.json" {
		t.Errorf("discovery = %v", doc)
	}
	rec = httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/.well-known/jwks.json", nil))
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("jwks: %s", rec.Body)
	}
	if set.Keys[0]["alg"] != "ES256" || set.Keys[0]["kid"] == "" || set.Keys[0]["d"] != nil {
		t.Errorf("jwks key = %v", set.Keys[0])
	}
}

func jsonBody(t *testing.T, v url.Values) string {
	m := map[string]string{}
	for k := range v {
		m[k] = v.Get(k)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func with(v url.Values, k, val string) url.Values { v.Set(k, val); return v }
func without(v url.Values, k string) url.Values   { v.Del(k); return v }
func withToken(v url.Values, tok string) url.Values {
	v.Set("subject_token", tok)
	return v
}

// TestServerClientAddress checks which address the audit trail (and the
// per-IP rate limit) sees: the TCP peer, unless the peer is a trusted proxy,
// in which case the right-most untrusted X-Forwarded-For entry.
func TestServerClientAddress(t *testing.T) {
	_, proxies, err := net.ParseCIDR("192.0.2.0/24") // httptest.NewRequest's peer is 192.0.2.1
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		trusted []*net.IPNet
		xff     string
		want    string
	}{
		{"no proxies: X-Forwarded-For ignored", nil, "203.0.113.9", "192.0.2.1"},
		{"trusted proxy: its client", []*net.IPNet{proxies}, "203.0.113.9", "203.0.113.9"},
		{"trusted proxy: a spoofed entry on the left is not believed", []*net.IPNet{proxies}, "198.51.100.7, 203.0.113.9", "203.0.113.9"},
		{"trusted proxy without header: the proxy", []*net.IPNet{proxies}, "", "192.0.2.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x, _, keys := newTestExchanger(t, "false")
			audit := &recordingAuditor{}
			srv := exchange.NewServer(exchange.ServerConfig{PublicURL: "https://broker.test", Exchanger: x, Keys: keys, Audit: audit, TrustedProxies: tc.trusted})
			req := httptest.NewRequest("POST", "/token", strings.NewReader("grant_type=x"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tc.xff != "" {
				req.Header.Set("X-Forwarded-For", tc.xff)
			}
			srv.Handler().ServeHTTP(httptest.NewRecorder(), req)
			if len(audit.events) != 1 || audit.events[0].ClientIP != tc.want {
				t.Fatalf("audited client address = %+v, want %s", audit.events, tc.want)
			}
		})
	}
}
