package client

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestHTTPClientHonoursExpiryDelta: HTTPClient exchanges again when
// TokenSource says so (ExpiryDelta, or half the life, before expiry, by
// Config.Now). oauth2.NewClient's ReuseTokenSource kept the old credential
// until 10 s before expiry by the wall clock instead (review 3).
func TestHTTPClientHonoursExpiryDelta(t *testing.T) {
	var exchanges atomic.Int32
	var mu sync.Mutex
	var bearers []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			n := exchanges.Add(1)
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"access_token":"t%d","token_type":"Bearer","expires_in":25}`, n)
			return
		}
		mu.Lock()
		bearers = append(bearers, r.Header.Get("Authorization"))
		mu.Unlock()
	}))
	defer srv.Close()
	// The fake clock starts at the wall clock, so that a wall-clock check
	// (ReuseTokenSource's) would still find the first credential valid.
	now := time.Now()
	var clockMu sync.Mutex
	clock := func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return now }
	advance := func(d time.Duration) { clockMu.Lock(); now = now.Add(d); clockMu.Unlock() }
	c, err := New(Config{BrokerURL: srv.URL, IDTokenSource: &countingSource{}, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	hc := c.HTTPClient(context.Background())
	get := func() {
		t.Helper()
		resp, err := hc.Get(srv.URL + "/api")
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
	}
	get()
	get()
	advance(13 * time.Second) // past expiry - 12.5 s (half the 25 s life)
	get()
	if got := exchanges.Load(); got != 2 {
		t.Errorf("exchanges = %d, want 2 (cached once, refreshed at half the 25 s life)", got)
	}
	want := []string{"Bearer t1", "Bearer t1", "Bearer t2"}
	if fmt.Sprint(bearers) != fmt.Sprint(want) {
		t.Errorf("Authorization headers = %q, want %q", bearers, want)
	}
}

// TestHTTPClientKeepsTheCredentialOnItsOrigin: the bearer is attached to
// every request the transport sends, so a redirect to another host is not
// followed (the caller gets the 3xx); one on the same host is.
func TestHTTPClientKeepsTheCredentialOnItsOrigin(t *testing.T) {
	var leaked atomic.Bool
	other := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			leaked.Store(true)
		}
	}))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/token":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"access_token":"t","token_type":"Bearer","expires_in":600}`))
		case "/away":
			http.Redirect(w, r, other.URL+"/steal", http.StatusFound)
		case "/moved":
			http.Redirect(w, r, "/here", http.StatusFound)
		case "/here":
			_, _ = w.Write([]byte(r.Header.Get("Authorization")))
		}
	}))
	defer srv.Close()
	c, err := New(Config{BrokerURL: srv.URL, IDTokenSource: &countingSource{}})
	if err != nil {
		t.Fatal(err)
	}
	hc := c.HTTPClient(context.Background())
	tests := []struct {
		name, path string
		wantStatus int
	}{
		{"same host: followed", "/moved", http.StatusOK},
		{"other host: not followed", "/away", http.StatusFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := hc.Get(srv.URL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.wantStatus)
			}
		})
	}
	if leaked.Load() {
		t.Error("the credential was sent to the redirect target on another host")
	}
}
