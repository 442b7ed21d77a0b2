package e2e

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// TestDevPrintsWorkingCommands runs `tokenbroker dev`, pastes the two
// commands it prints into bash, and expects a JWT back.
func TestDevPrintsWorkingCommands(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed: the printed commands use it")
	}
	addr := freeAddr(t)
	p := start(t, "", nil, "dev", "--listen", addr)
	p.waitFor("-d audience=deploy-api")
	p.waitReady("http://" + addr + "/readyz")

	var script []string
	in := false
	for _, line := range strings.Split(p.output(), "\n") {
		if strings.HasPrefix(line, "TOKEN=") {
			in = true
		}
		if in && !strings.HasPrefix(line, "#") && strings.TrimSpace(line) != "" {
			script = append(script, line)
		}
		if in && strings.Contains(line, "-d audience=deploy-api") {
			break
		}
	}
	if len(script) < 2 {
		t.Fatalf("no commands found in output:\n%s", p.output())
	}
	out, err := exec.Command("bash", "-euc", strings.Join(script, "\n")).CombinedOutput()
	if err != nil {
		t.Fatalf("printed commands failed: %v\n%s\nscript:\n%s", err, out, strings.Join(script, "\n"))
	}
	var resp map[string]any
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatalf("exchange output is not JSON: %q", out)
	}
	tok, _ := resp["access_token"].(string)
	if strings.Count(tok, ".") != 2 || resp["token_type"] != "Bearer" {
		t.Fatalf("exchange output = %v", resp)
	}
}

// TestServeRefusesDevIssuer starts `dev`'s issuer through `dev`, then points
// `serve` at it: serve must refuse to start.
func TestServeRefusesDevIssuer(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	dev := start(t, "", nil, "dev", "--listen", addr)
	dev.waitFor("-d audience=deploy-api")
	issuerURL := ""
	for _, line := range strings.Split(dev.output(), "\n") {
		if strings.HasPrefix(line, "TOKEN=$(curl -s -X POST ") {
			issuerURL = strings.TrimSuffix(strings.Fields(line)[4], "/token")
		}
	}
	if issuerURL == "" {
		t.Fatalf("no issuer URL in dev output:\n%s", dev.output())
	}
	cfg := writeFile(t, dir, "tokenbroker.yaml", "listen: "+freeAddr(t)+"\nstore: sqlite://"+dir+"/db\npolicies: "+dir+"/p.yaml\n"+
		"providers:\n  - name: gh\n    preset: github-actions\n    issuer: "+issuerURL+"\n")
	writeFile(t, dir, "p.yaml", "policies: []\n")
	p := start(t, "", nil, "serve", "--config", cfg)
	if !p.exitedWithin(30e9) {
		t.Fatalf("serve started with the development issuer:\n%s", p.output())
	}
	if !strings.Contains(p.output(), "development") {
		t.Errorf("serve's refusal does not say why:\n%s", p.output())
	}
}
