package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestRunExchange(t *testing.T) {
	broker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		w.Header().Set("X-Request-Id", "rid-7")
		w.Header().Set("Content-Type", "application/json")
		switch r.PostForm.Get("scope") {
		case "admin":
			w.WriteHeader(400)
			_, _ = w.Write([]byte(`{"error":"invalid_scope","error_description":"scope not allowed"}`))
		case "busy":
			w.WriteHeader(503)
			_, _ = w.Write([]byte(`{"error":"temporarily_unavailable"}`))
		default:
			_, _ = w.Write([]byte(`{"access_token":"tok-` + r.PostForm.Get("subject_token") + `","token_type":"Bearer","expires_in":60,"scope":"deploy:read"}`))
		}
	}))
	defer broker.Close()
	ghEnv := filepath.Join(t.TempDir(), "github_env")
	env := map[string]string{"MY_ID_TOKEN": "idt", "GITHUB_ENV": ghEnv}
	getenv := func(k string) string { return env[k] }
	base := exchangeOptions{broker: broker.URL, source: "env", variable: "MY_ID_TOKEN", tokenType: "jwt", output: "raw", name: "DEPLOY_TOKEN", timeout: time.Minute}
	tests := []struct {
		name       string
		mod        func(*exchangeOptions)
		wantCode   int
		wantStdout string // regexp
		wantStderr string
	}{
		{"raw", func(*exchangeOptions) {}, exitOK, `^tok-idt\n$`, "request id rid-7"},
		{"env", func(o *exchangeOptions) { o.output = "env" }, exitOK, `^export DEPLOY_TOKEN='tok-idt'\n$`, ""},
		{"json", func(o *exchangeOptions) { o.output = "json" }, exitOK, `"access_token":"tok-idt"`, ""},
		{"github", func(o *exchangeOptions) { o.output = "github" }, exitOK, `^::add-mask::tok-idt\n$`, ""},
		{"refused", func(o *exchangeOptions) { o.scopes = []string{"admin"} }, exitRefused, `^$`, `step 2/3 failed.*"invalid_scope": scope not allowed \(request id rid-7\)`},
		{"unavailable", func(o *exchangeOptions) { o.scopes = []string{"busy"} }, exitUnavailable, `^$`, "HTTP 503"},
		{"no ID token", func(o *exchangeOptions) { o.variable = "UNSET" }, exitIDToken, `^$`, "step 1/3 failed.*UNSET"},
		{"bad name", func(o *exchangeOptions) { o.output, o.name = "github", "A-B" }, exitUsage, `^$`, "not a valid variable name"},
		{"no broker", func(o *exchangeOptions) { o.broker = "" }, exitUsage, `^$`, "--broker"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := base
			tc.mod(&o)
			var stdout, stderr bytes.Buffer
			code := runExchange(context.Background(), o, getenv, &stdout, &stderr)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d; stderr %q", code, tc.wantCode, stderr.String())
			}
			if !regexp.MustCompile(tc.wantStdout).MatchString(stdout.String()) {
				t.Errorf("stdout %q does not match %q", stdout.String(), tc.wantStdout)
			}
			if !regexp.MustCompile(tc.wantStderr).MatchString(stderr.String()) {
				t.Errorf("stderr %q does not match %q", stderr.String(), tc.wantStderr)
			}
			if tc.wantCode == exitOK && strings.Contains(stderr.String(), "tok-idt") {
				t.Error("the credential leaked to stderr")
			}
		})
	}
	b, err := os.ReadFile(ghEnv)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^DEPLOY_TOKEN<<(ghadelimiter_[0-9a-f]{32})\ntok-idt\n(ghadelimiter_[0-9a-f]{32})\n$`).Match(b) {
		t.Errorf("$GITHUB_ENV = %q", b)
	}
}

// TestExchangeUsageExitCode: flag and argument mistakes exit 2, as
// documented, with the reason on stderr (review 3: cobra's errors exited 1).
func TestExchangeUsageExitCode(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantStderr string
	}{
		{"unknown flag", []string{"exchange", "--bogus"}, "unknown flag: --bogus"},
		{"bad flag value", []string{"exchange", "--timeout", "soon"}, "--timeout"},
		{"extra argument", []string{"exchange", "deploy-api"}, `unknown command "deploy-api"`},
		{"flag without value", []string{"exchange", "--broker"}, "flag needs an argument"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := rootCmd()
			var stdout, stderr bytes.Buffer
			root.SetOut(&stdout)
			root.SetErr(&stderr)
			root.SetArgs(tc.args)
			err := root.ExecuteContext(context.Background())
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != exitUsage {
				t.Fatalf("err = %v, want exit code %d", err, exitUsage)
			}
			if !strings.Contains(stderr.String(), tc.wantStderr) || !strings.HasPrefix(stderr.String(), "tokenbroker exchange: ") {
				t.Errorf("stderr %q, want a line containing %q", stderr.String(), tc.wantStderr)
			}
		})
	}
}
