// Command tbload is tokenbroker's own load tool. It drives a running broker
// over real HTTP: it obtains CI tokens from a development issuer (the one
// `tokenbroker dev` starts), then fires token exchanges (JWT or API key) and
// optionally API key verifies at a given concurrency, and reports the rate
// and latency percentiles.
//
//	go run ./cmd/tokenbroker dev &        # prints the issuer URL
//	go run ./cmd/tbload -issuer http://127.0.0.1:PORT -n 5000 -c 32
//
// Only loopback targets are accepted: this is a tool for this machine.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "tbload:", err)
		os.Exit(1)
	}
}

type config struct {
	broker, issuer, audience, scope, kind string
	n, c                                  int
	verify                                bool
}

func run(args []string, out io.Writer) error {
	var cfg config
	fs := flag.NewFlagSet("tbload", flag.ContinueOnError)
	fs.StringVar(&cfg.broker, "broker", "http://127.0.0.1:8080", "broker URL (loopback)")
	fs.StringVar(&cfg.issuer, "issuer", "", "development issuer URL, as printed by `tokenbroker dev` (required)")
	fs.StringVar(&cfg.audience, "audience", "deploy-api", "audience to request")
	fs.StringVar(&cfg.scope, "scope", "", "scope to request")
	fs.StringVar(&cfg.kind, "type", "jwt", "credential type: jwt or api_key")
	fs.IntVar(&cfg.n, "n", 2000, "number of exchanges")
	fs.IntVar(&cfg.c, "c", 32, "concurrency")
	fs.BoolVar(&cfg.verify, "verify", false, "with -type api_key: also verify every key once and report verifies/s")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.issuer == "" {
		return errors.New("-issuer is required")
	}
	for _, u := range []string{cfg.broker, cfg.issuer} {
		if !loopback(u) {
			return fmt.Errorf("%s is not a loopback URL", u)
		}
	}
	if cfg.n < 1 || cfg.c < 1 {
		return errors.New("-n and -c must be positive")
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.c}}

	start := time.Now()
	tokens, err := parallel(cfg.n, cfg.c, func(int) (string, error) { return mintCIToken(client, cfg) })
	if err != nil {
		return fmt.Errorf("minting CI tokens: %w", err)
	}
	fmt.Fprintf(out, "minted %d CI tokens in %s\n", len(tokens), time.Since(start).Round(time.Millisecond))

	var lat latencies
	start = time.Now()
	creds, err := parallel(cfg.n, cfg.c, func(i int) (string, error) {
		t0 := time.Now()
		cred, err := exchange(client, cfg, tokens[i])
		lat.add(time.Since(t0))
		return cred, err
	})
	if err != nil {
		return err
	}
	report(out, "exchanges ("+cfg.kind+")", cfg, time.Since(start), &lat)

	if cfg.verify && cfg.kind == "api_key" {
		var vl latencies
		start = time.Now()
		if _, err := parallel(len(creds), cfg.c, func(i int) (string, error) {
			t0 := time.Now()
			err := verify(client, cfg.broker, creds[i])
			vl.add(time.Since(t0))
			return "", err
		}); err != nil {
			return err
		}
		report(out, "verifies", cfg, time.Since(start), &vl)
	}
	return nil
}

// parallel runs f(0..n-1) on c workers and stops at the first error.
func parallel(n, c int, f func(i int) (string, error)) ([]string, error) {
	out := make([]string, n)
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				s, err := f(i)
				if err != nil {
					once.Do(func() { firstErr = err })
					next.Store(int64(n))
					return
				}
				out[i] = s
			}
		}()
	}
	wg.Wait()
	return out, firstErr
}

func mintCIToken(client *http.Client, cfg config) (string, error) {
	resp, err := post(client, strings.TrimRight(cfg.issuer, "/")+"/token", "application/x-www-form-urlencoded",
		strings.NewReader(url.Values{"audience": {cfg.broker}}.Encode()))
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("issuer: status %d: %s: %w", resp.StatusCode, b, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func exchange(client *http.Client, cfg config, tok string) (string, error) {
	form := url.Values{
		"grant_type":         {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":      {tok},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:id_token"},
		"audience":           {cfg.audience},
	}
	if cfg.scope != "" {
		form.Set("scope", cfg.scope)
	}
	if cfg.kind == "api_key" {
		form.Set("requested_token_type", "urn:tokenbroker:token-type:api_key")
	}
	resp, err := post(client, strings.TrimRight(cfg.broker, "/")+"/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	var body struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body); err != nil {
		return "", fmt.Errorf("broker: status %d: %w", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("broker: status %d: %s: %s (request id %s)", resp.StatusCode, body.Error, body.Description, resp.Header.Get("X-Request-Id"))
	}
	return body.AccessToken, nil
}

func verify(client *http.Client, broker, key string) error {
	b, _ := json.Marshal(map[string]string{"key": key})
	resp, err := post(client, strings.TrimRight(broker, "/")+"/v1/keys/verify", "application/json", bytes.NewReader(b))
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	var body struct {
		Code string `json:"code"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body); err != nil {
		return fmt.Errorf("verify: status %d: %w", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("verify: status %d", resp.StatusCode)
	}
	if body.Code != "VALID" {
		return fmt.Errorf("verify: %s", body.Code)
	}
	return nil
}

// post sends body to u; each request is bounded by the client's timeout.
func post(client *http.Client, u, ctype string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, u, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", ctype)
	return client.Do(req)
}

type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) { l.mu.Lock(); l.d = append(l.d, d); l.mu.Unlock() }

func (l *latencies) pct(p float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0
	}
	slices.Sort(l.d)
	return l.d[int(p*float64(len(l.d)-1))]
}

func report(out io.Writer, what string, cfg config, elapsed time.Duration, l *latencies) {
	fmt.Fprintf(out, "%-22s n=%d c=%d  %8.0f/s  p50 %s  p99 %s  max %s\n", what, cfg.n, cfg.c,
		float64(cfg.n)/elapsed.Seconds(), l.pct(0.5).Round(time.Microsecond), l.pct(0.99).Round(time.Microsecond), l.pct(1).Round(time.Microsecond))
}

func loopback(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	if u.Hostname() == "localhost" {
		return true
	}
	ip := net.ParseIP(u.Hostname())
	return ip != nil && ip.IsLoopback()
}
