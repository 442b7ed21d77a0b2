package e2e

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/exchange/store/storetest"
)

// cutProxy forwards TCP connections to a target until it is cut: then it
// drops every open connection and refuses new ones, like a database host
// that went away, until it is restored.
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]struct{}
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	t.Cleanup(func() { _ = ln.Close(); p.cut() })
	go p.serve()
	return p
}

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			_ = c.Close()
			continue
		}
		go p.forward(c)
	}
}

func (p *cutProxy) forward(c net.Conn) {
	u, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		_ = c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[u] = struct{}{}, struct{}{}
	p.mu.Unlock()
	go func() { _, _ = io.Copy(u, c); _ = u.Close() }()
	_, _ = io.Copy(c, u)
	_ = c.Close()
}

// cut drops every connection and refuses new ones.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		_ = c.Close()
	}
	p.conns = map[net.Conn]struct{}{}
}

func (p *cutProxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// TestPostgresOutage loses the database under a running broker: key grants,
// verifies and single-use exchanges answer 503 temporarily_unavailable with
// Retry-After (and /readyz fails) while it is gone, and the broker recovers
// by itself when it is back, with nothing minted before the outage lost.
func TestPostgresOutage(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newCutProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	ci := newCIIssuer(t)
	brokerURL, cfg := brokerSetupStore(t, t.TempDir(), ci, u.String(), "")
	start(t, brokerURL, nil, "serve", "--config", cfg)
	prod := map[string]any{"aud": brokerURL, "environment": "prod"}

	before := mintKey(t, brokerURL, ci, prod)
	proxy.cut()

	t.Run("while the database is gone", func(t *testing.T) {
		for name, extra := range map[string]url.Values{"api key grant": apiKeyRequest, "single-use JWT": {"audience": {"deploy-api"}}} {
			res := exchangeToken(t, brokerURL, ci.mint(t, prod), extra)
			if res.Status != http.StatusServiceUnavailable || res.Body["error"] != "temporarily_unavailable" || res.RetryAfter == "" {
				t.Errorf("%s: %d %v Retry-After %q, want 503 temporarily_unavailable with Retry-After", name, res.Status, res.Body, res.RetryAfter)
			}
		}
		var res tokenResult
		if err := post(brokerURL+"/v1/keys/verify", "application/json", `{"key":"`+before+`"}`, &res); err != nil {
			t.Fatal(err)
		}
		if res.Status != http.StatusServiceUnavailable || res.Body["error"] != "temporarily_unavailable" {
			t.Errorf("verify: %d %v, want 503 temporarily_unavailable", res.Status, res.Body)
		}
		if resp, err := http.Get(brokerURL + "/readyz"); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("/readyz while the database is gone: %v %v", resp, err)
		} else {
			_ = resp.Body.Close()
		}
	})

	proxy.restore()
	t.Run("after it is back", func(t *testing.T) {
		deadline := time.Now().Add(30 * time.Second)
		for {
			res := exchangeToken(t, brokerURL, ci.mint(t, prod), apiKeyRequest)
			if res.Status == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no recovery within 30s: %d %v", res.Status, res.Body)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if v := verifyKey(t, brokerURL, before); v["code"] != "VALID" {
			t.Fatalf("key minted before the outage: %v", v)
		}
	})
}
