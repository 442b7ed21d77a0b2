package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"

	"github.com/tokenbroker/tokenbroker/exchange"
)

// The client repeats the exchange package's identifiers; they must agree.
func TestIdentifiersMatchBroker(t *testing.T) {
	got := []string{grantTypeTokenExchange, tokenTypeIDToken, TokenTypeJWT, TokenTypeAPIKey}
	want := []string{exchange.GrantTypeTokenExchange, exchange.TokenTypeIDToken, exchange.TokenTypeJWT, exchange.TokenTypeAPIKey}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatal(diff)
	}
}

// countingSource hands out numbered ID tokens.
type countingSource struct {
	mu  sync.Mutex
	n   int
	aud []string
}

func (s *countingSource) IDToken(_ context.Context, aud string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	s.aud = append(s.aud, aud)
	return "id-token-" + string(rune('0'+s.n)), nil
}

// fakeBroker answers POST /token through answer, recording the forms.
type fakeBroker struct {
	mu     sync.Mutex
	forms  []map[string][]string
	answer func(w http.ResponseWriter, n int)
}

func (b *fakeBroker) start(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/token" || r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		_ = r.ParseForm()
		b.mu.Lock()
		b.forms = append(b.forms, r.PostForm)
		n := len(b.forms)
		b.mu.Unlock()
		w.Header().Set("X-Request-Id", "req-"+string(rune('0'+n)))
		w.Header().Set("Content-Type", "application/json")
		b.answer(w, n)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func okAnswer(expiresIn int) func(http.ResponseWriter, int) {
	return func(w http.ResponseWriter, n int) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"access_token": "minted-" + string(rune('0'+n)), "issued_token_type": TokenTypeJWT,
			"token_type": "Bearer", "expires_in": expiresIn, "scope": "deploy:read",
		})
	}
}

func TestExchangeSendsRFC8693Form(t *testing.T) {
	b := &fakeBroker{answer: okAnswer(600)}
	srv := b.start(t)
	src := &countingSource{}
	now := time.Unix(1_700_000_000, 0)
	c, err := New(Config{BrokerURL: srv.URL + "/", Audience: []string{"deploy-api", "audit-api"}, Scopes: []string{"deploy:read", "deploy:prod"},
		TokenType: "api_key", IDTokenSource: src, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.Exchange(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"grant_type":           {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":        {"id-token-1"},
		"subject_token_type":   {"urn:ietf:params:oauth:token-type:id_token"},
		"requested_token_type": {"urn:tokenbroker:token-type:api_key"},
		"audience":             {"deploy-api", "audit-api"},
		"scope":                {"deploy:read deploy:prod"},
	}
	if diff := cmp.Diff(want, b.forms[0]); diff != "" {
		t.Errorf("form (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{srv.URL}, src.aud); diff != "" {
		t.Errorf("ID token audience defaults to the broker URL (-want +got):\n%s", diff)
	}
	if tok.AccessToken != "minted-1" || tok.TokenType != "Bearer" || !tok.Expiry.Equal(now.Add(10*time.Minute)) ||
		tok.Extra("request_id") != "req-1" || tok.Extra("scope") != "deploy:read" {
		t.Errorf("token = %+v extras %v %v", tok, tok.Extra("request_id"), tok.Extra("scope"))
	}
}

func TestExchangeErrors(t *testing.T) {
	tests := []struct {
		name          string
		answer        func(http.ResponseWriter, int)
		wantStatus    int
		wantCode      string
		wantDesc      string
		wantTemporary bool
	}{
		{"policy refusal", func(w http.ResponseWriter, _ int) {
			w.WriteHeader(400)
			_, _ = w.Write([]byte(`{"error":"invalid_scope","error_description":"scope deploy:prod is not allowed"}`))
		}, 400, "invalid_scope", "scope deploy:prod is not allowed", false},
		{"rate limited", func(w http.ResponseWriter, _ int) {
			w.WriteHeader(429)
			_, _ = w.Write([]byte(`{"error":"temporarily_unavailable"}`))
		}, 429, "temporarily_unavailable", "", true},
		{"proxy error page", func(w http.ResponseWriter, _ int) {
			w.WriteHeader(502)
			_, _ = w.Write([]byte(`<html>bad gateway</html>`))
		}, 502, "", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := (&fakeBroker{answer: tc.answer}).start(t)
			c, err := New(Config{BrokerURL: srv.URL, IDTokenSource: &countingSource{}})
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.HTTPClient(context.Background()).Get("http://127.0.0.1:1/never-called")
			if err == nil {
				_ = resp.Body.Close()
			}
			var be *BrokerError
			if !errors.As(err, &be) {
				t.Fatalf("err = %v, want a *BrokerError", err)
			}
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) {
				t.Fatalf("err = %v does not unwrap to *oauth2.RetrieveError", err)
			}
			if be.StatusCode != tc.wantStatus || re.ErrorCode != tc.wantCode || re.ErrorDescription != tc.wantDesc ||
				be.RequestID != "req-1" || be.Temporary() != tc.wantTemporary {
				t.Errorf("got status %d code %q desc %q rid %q temporary %t", be.StatusCode, re.ErrorCode, re.ErrorDescription, be.RequestID, be.Temporary())
			}
			if !strings.Contains(be.Error(), "req-1") {
				t.Errorf("message %q lacks the request id", be.Error())
			}
		})
	}
}

func TestExchangeIDTokenFailure(t *testing.T) {
	srv := (&fakeBroker{answer: okAnswer(60)}).start(t)
	c, err := New(Config{BrokerURL: srv.URL, IDTokenSource: &Env{Name: "env", Variables: []string{"X"}, Getenv: func(string) string { return "" }}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Exchange(context.Background())
	var idErr *IDTokenError
	if !errors.As(err, &idErr) {
		t.Fatalf("err = %v, want *IDTokenError", err)
	}
}

func TestNewRefusesUnsafeConfig(t *testing.T) {
	src := &countingSource{}
	tests := []struct {
		name string
		cfg  Config
	}{
		{"plain http to a remote broker", Config{BrokerURL: "http://broker.example.com", IDTokenSource: src}},
		{"relative URL", Config{BrokerURL: "broker.example.com", IDTokenSource: src}},
		{"no ID token source", Config{BrokerURL: "https://broker.example.com"}},
		{"unknown token type", Config{BrokerURL: "https://broker.example.com", IDTokenSource: src, TokenType: "password"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); err == nil {
				t.Fatal("no error")
			}
		})
	}
	if _, err := New(Config{BrokerURL: "http://broker.internal", IDTokenSource: src, InsecureAllowHTTP: true}); err != nil {
		t.Fatalf("InsecureAllowHTTP: %v", err)
	}
}

func TestExchangeDoesNotFollowRedirects(t *testing.T) {
	var hits int
	target := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits++ }))
	defer target.Close()
	srv := httptest.NewServer(http.RedirectHandler(target.URL+"/token", http.StatusTemporaryRedirect))
	defer srv.Close()
	c, _ := New(Config{BrokerURL: srv.URL, IDTokenSource: &countingSource{}})
	if _, err := c.Exchange(context.Background()); err == nil {
		t.Fatal("a redirect was accepted")
	}
	if hits != 0 {
		t.Fatal("the ID token was re-posted to the redirect target")
	}
}

func TestTokenSourceCachesAndRefreshes(t *testing.T) {
	b := &fakeBroker{answer: okAnswer(120)}
	srv := b.start(t)
	src := &countingSource{}
	now := time.Unix(1_700_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	c, err := New(Config{BrokerURL: srv.URL, IDTokenSource: src, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	ts := c.TokenSource(context.Background())
	steps := []struct {
		advance time.Duration
		want    string
	}{
		{0, "minted-1"},
		{60 * time.Second, "minted-1"}, // 60s left: still fresh
		{29 * time.Second, "minted-1"}, // 31s left
		{2 * time.Second, "minted-2"},  // 29s left: inside the 30s delta
		{0, "minted-2"},
	}
	for i, s := range steps {
		advance(s.advance)
		tok, err := ts.Token()
		if err != nil {
			t.Fatal(err)
		}
		if tok.AccessToken != s.want {
			t.Errorf("step %d: %s, want %s", i, tok.AccessToken, s.want)
		}
	}
	if src.n != 2 {
		t.Errorf("%d ID tokens fetched, want one per exchange (2)", src.n)
	}
}

func TestRefreshAt(t *testing.T) {
	now := time.Unix(1000, 0)
	tests := []struct {
		name string
		life time.Duration
		want time.Duration // after now
	}{
		{"long-lived: delta before expiry", 10 * time.Minute, 10*time.Minute - 30*time.Second},
		{"short-lived: half its life", 2 * time.Second, time.Second},
		{"no expiry: not cached", 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok := &oauth2.Token{}
			if tc.life > 0 {
				tok.Expiry = now.Add(tc.life)
			}
			if got := refreshAt(tok, now, DefaultExpiryDelta).Sub(now); got != tc.want {
				t.Errorf("refresh after %s, want %s", got, tc.want)
			}
		})
	}
}

func FuzzParseTokenResponse(f *testing.F) {
	f.Add(200, []byte(`{"access_token":"a","token_type":"Bearer","expires_in":60}`))
	f.Add(400, []byte(`{"error":"invalid_request","error_description":"x"}`))
	f.Add(200, []byte(`{"access_token":"a","token_type":"mac"}`))
	f.Add(503, []byte(`<html>`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		if status < 100 || status > 999 {
			return
		}
		resp := &http.Response{StatusCode: status, Header: http.Header{}}
		tok, err := parseTokenResponse(resp, body, time.Unix(0, 0))
		if (tok == nil) == (err == nil) {
			t.Fatalf("token %v and error %v", tok, err)
		}
		if tok != nil && (status != 200 || tok.AccessToken == "") {
			t.Fatalf("accepted status %d token %q", status, tok.AccessToken)
		}
	})
}
