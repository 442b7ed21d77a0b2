package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/providers"
)

// lineWatch is a log destination that closes seen once a line containing
// want was written.
type lineWatch struct {
	want string
	seen chan struct{}
	once sync.Once
}

func (w *lineWatch) Write(p []byte) (int, error) {
	if strings.Contains(string(p), w.want) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

// TestSIGHUPDuringStartupIsCaught: serve installs its SIGHUP handler before
// warming the issuers, which may take 15 s; a HUP then (a config-management
// tool reloading "every" service) used to end the broker with exit 129
// (review 3). The issuer here never answers, so serve stays in warm while
// the test process sends itself SIGHUP. Without the handler the default
// action kills the test binary, which fails the test.
func TestSIGHUPDuringStartupIsCaught(t *testing.T) {
	inWarm := make(chan struct{})
	var once sync.Once
	release := make(chan struct{})
	issuer := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(inWarm) })
		select { // never answers
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer issuer.Close()
	var releaseOnce sync.Once
	answer := func() { releaseOnce.Do(func() { close(release) }) }
	defer answer()

	dir := t.TempDir()
	cfg := &Config{
		Listen:    "127.0.0.1:0",
		Store:     "sqlite://" + filepath.Join(dir, "tokenbroker.db"),
		Policies:  filepath.Join(dir, "policies.yaml"),
		Providers: []ProviderConfig{{Name: "ci", Preset: providers.PresetGitHubActions, Issuer: issuer.URL}},
		file:      "(test)",
	}
	cfg.defaults()
	logs := &lineWatch{want: "SIGHUP during start-up", seen: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, serveOptions{logger: slog.New(slog.NewTextHandler(logs, nil))}) }()

	select {
	case <-inWarm:
	case err := <-done:
		t.Fatalf("serve returned before warming the issuer: %v", err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case <-logs.seen:
	case <-time.After(time.Minute): // a hang guard, not a timing assertion
		t.Fatal("the SIGHUP during start-up was not logged")
	}
	// The issuer answers (an empty page: a warning), serve goes on and
	// stops at the missing policy file: the process is still here.
	answer()
	if err := <-done; err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("serve = %v, want the missing policy file", err)
	}
}
