package e2e

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

const stagingPolicy = `
  - name: deploy-staging
    provider: github
    audience: %BROKER%
    subject: repo:octo-org/app:environment:staging
    claims:
      repository_owner_id: "1234567"
    grant:
      type: jwt
      audience: [deploy-api]
      scopes: [deploy:staging]
      ttl: 5m
`

// metric returns the text line of a metric from the broker's /metrics.
func metric(t *testing.T, brokerURL, name string) string {
	t.Helper()
	resp, err := http.Get(brokerURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, name+" ") {
			return l
		}
	}
	t.Fatalf("no metric %s in /metrics", name)
	return ""
}

// TestPolicyHotReload changes the policy file under a running broker: a
// good change takes effect, a bad one is refused while the previous
// policies keep answering, and SIGHUP reloads.
func TestPolicyHotReload(t *testing.T) {
	dir := t.TempDir()
	ci := newCIIssuer(t)
	brokerURL, cfgPath := brokerSetup(t, dir, ci)
	broker := start(t, brokerURL, nil, "serve", "--config", cfgPath)
	polPath := filepath.Join(dir, "policies.yaml")
	original, err := os.ReadFile(polPath)
	if err != nil {
		t.Fatal(err)
	}
	staging := func() int {
		tok := ci.mint(t, map[string]any{"aud": brokerURL, "environment": "staging"})
		return exchangeToken(t, brokerURL, tok, url.Values{"scope": {"deploy:staging"}}).Status
	}
	if got := staging(); got != http.StatusBadRequest {
		t.Fatalf("staging before the change: status %d, want 400", got)
	}
	if got := metric(t, brokerURL, "tokenbroker_policies_loaded"); got != "tokenbroker_policies_loaded 2" {
		t.Errorf("metric = %q", got)
	}

	// A good change, saved by renaming a new file over the old one.
	tmp := filepath.Join(dir, ".policies.yaml.new")
	good := string(original) + strings.ReplaceAll(stagingPolicy, "%BROKER%", brokerURL)
	if err := os.WriteFile(tmp, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, polPath); err != nil {
		t.Fatal(err)
	}
	broker.waitFor(`"policies":3`)
	if got := staging(); got != http.StatusOK {
		t.Fatalf("staging after the change: status %d, want 200", got)
	}

	// A bad change (a subject pattern across every repository) is refused.
	bad := strings.Replace(good, "subject: repo:octo-org/app:environment:staging", `subject_pattern: "repo:**"`, 1)
	if err := os.WriteFile(polPath, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	broker.waitFor("policy reload refused")
	if got := staging(); got != http.StatusOK {
		t.Fatalf("staging after a refused change: status %d, want the previous policies' 200", got)
	}
	if got := metric(t, brokerURL, "tokenbroker_policy_reload_errors_total"); got == "tokenbroker_policy_reload_errors_total 0" {
		t.Errorf("metric = %q, want > 0", got)
	}

	// SIGHUP reloads too (here: the bad file again, refused again).
	before := strings.Count(broker.output(), "policy reload refused")
	if err := broker.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	broker.waitFor("SIGHUP: reloading policies")
	for strings.Count(broker.output(), "policy reload refused") == before {
		broker.waitFor("policy reload refused")
	}
	if got := staging(); got != http.StatusOK {
		t.Fatalf("staging after SIGHUP: status %d, want 200", got)
	}
}

// TestPolicyCommandsExitCodes runs policy check and test on the examples
// and on a broken copy.
func TestPolicyCommandsExitCodes(t *testing.T) {
	examples := filepath.Join("..", "examples", "policies")
	broken := t.TempDir()
	for _, name := range []string{"github.yaml", "github_test.yaml"} {
		data, err := os.ReadFile(filepath.Join(examples, name))
		if err != nil {
			t.Fatal(err)
		}
		if name == "github_test.yaml" {
			data = []byte(strings.Replace(string(data), "expect: deny invalid_scope", "expect: allow app-deploy-production", 1))
		}
		if err := os.WriteFile(filepath.Join(broken, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	lintBad := t.TempDir()
	if err := os.WriteFile(filepath.Join(lintBad, "p.yaml"), []byte("policies:\n  - name: p\n    issuer: https://token.actions.githubusercontent.com\n    audience: a\n    grant: {audience: [x], ttl: 1m}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
	}{
		{"check examples", []string{"policy", "check", examples}, 0, "ok: "},
		{"test examples", []string{"policy", "test", examples}, 0, "test(s) passed"},
		{"test a broken case", []string{"policy", "test", broken}, 1, "FAIL"},
		{"check a lint refusal", []string{"policy", "check", lintBad}, 1, "refused (shared_issuer_without_tenant)"},
		{"test without cases", []string{"policy", "test", lintBad}, 1, "ERROR:"},
		{"schema", []string{"policy", "schema"}, 0, `"$schema"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := exec.Command(binary, tt.args...).CombinedOutput()
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.wantCode || !strings.Contains(string(out), tt.wantOut) {
				t.Fatalf("tokenbroker %v: exit %d, want %d with %q in:\n%s", tt.args, code, tt.wantCode, tt.wantOut, out)
			}
		})
	}
}
