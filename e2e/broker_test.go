// Package e2e holds black-box tests: the real tokenbroker binary, real
// issuers over HTTP, a real store on disk.
package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary is the tokenbroker binary built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tokenbroker-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "tokenbroker")
	build := exec.Command("go", "build", "-race", "-o", binary, "../cmd/tokenbroker")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build tokenbroker:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// process is a running tokenbroker.
type process struct {
	t      *testing.T
	cmd    *exec.Cmd
	mu     sync.Mutex
	out    strings.Builder
	exited chan struct{}
}

// start runs the binary with args and env, and waits until ready (if
// readyURL is not empty).
func start(t *testing.T, readyURL string, env []string, args ...string) *process {
	t.Helper()
	p := &process{t: t, cmd: exec.Command(binary, args...), exited: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = p.cmd.Stdout
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("tokenbroker %v output:\n%s", args, p.output())
		}
	})
	if readyURL != "" {
		p.waitReady(readyURL + "/readyz")
	}
	return p
}

func (p *process) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// waitFor waits until the output contains s.
func (p *process) waitFor(s string) {
	p.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(p.output(), s) {
			return
		}
		select {
		case <-p.exited:
			p.t.Fatalf("tokenbroker exited before printing %q:\n%s", s, p.output())
		case <-time.After(50 * time.Millisecond):
		}
	}
	p.t.Fatalf("tokenbroker did not print %q:\n%s", s, p.output())
}

func (p *process) waitReady(u string) {
	p.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(u)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-p.exited:
			p.t.Fatalf("tokenbroker exited:\n%s", p.output())
		case <-time.After(50 * time.Millisecond):
		}
	}
	p.t.Fatalf("tokenbroker not ready at %s:\n%s", u, p.output())
}

// stop sends SIGTERM and waits for a graceful exit.
func (p *process) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// exited reports whether the process ended, waiting up to d.
func (p *process) exitedWithin(d time.Duration) bool {
	select {
	case <-p.exited:
		return true
	case <-time.After(d):
		return false
	}
}

// tokenResult is a POST /token answer.
type tokenResult struct {
	Status     int
	RequestID  string
	RetryAfter string
	Body       map[string]any
	Raw        string
	header     http.Header
}

// exchangeToken posts an RFC 8693 exchange to broker.
func exchangeToken(t *testing.T, broker, subjectToken string, extra url.Values) tokenResult {
	t.Helper()
	res, err := tryExchange(broker, subjectToken, extra)
	if err != nil {
		t.Fatal(err)
	}
	if cc := res.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("POST /token: Cache-Control = %q, want no-store", cc)
	}
	if res.RequestID == "" {
		t.Errorf("POST /token: no X-Request-Id")
	}
	return res
}

// tryExchange is exchangeToken returning transport and decoding errors.
func tryExchange(broker, subjectToken string, extra url.Values) (tokenResult, error) {
	form := url.Values{
		"grant_type":         {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":      {subjectToken},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:id_token"},
	}
	for k, v := range extra {
		form[k] = v
	}
	var res tokenResult
	err := postForm(broker+"/token", form, &res)
	return res, err
}

// postForm posts form to u and decodes the JSON answer into res.
func postForm(u string, form url.Values, res *tokenResult) error {
	return post(u, "application/x-www-form-urlencoded", form.Encode(), res)
}

// post sends body to u and decodes the JSON answer into res.
func post(u, ctype, body string, res *tokenResult) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", ctype)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	*res = tokenResult{Status: resp.StatusCode, RequestID: resp.Header.Get("X-Request-Id"), RetryAfter: resp.Header.Get("Retry-After"), Raw: string(raw), header: resp.Header}
	if err := json.Unmarshal(raw, &res.Body); err != nil {
		return fmt.Errorf("POST %s: status %d, body not JSON: %q", u, resp.StatusCode, raw)
	}
	return nil
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
