package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// listedKey is a line of `tokenbroker keys list --json`.
type listedKey struct {
	Kid     string `json:"kid"`
	State   string `json:"state"`
	Signing bool   `json:"signing"`
}

// runKeys runs `tokenbroker keys ARGS...` and returns stdout, stderr and
// the exit code.
func runKeys(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"keys"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()
}

func listKeys(t *testing.T, cfgPath string) []listedKey {
	t.Helper()
	out, errOut, code := runKeys(t, "list", "--json", "--config", cfgPath)
	if code != 0 {
		t.Fatalf("keys list: exit %d: %s", code, errOut)
	}
	var keys []listedKey
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var k listedKey
		if err := dec.Decode(&k); err != nil {
			t.Fatalf("keys list --json: %v in %q", err, out)
		}
		keys = append(keys, k)
	}
	return keys
}

// kidOf returns the kid in the header of a compact JWS.
func kidOf(t *testing.T, raw string) string {
	t.Helper()
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	return jws.Signatures[0].Header.KeyID
}

// TestKeyRotation rotates the signing key of a broker with `tokenbroker
// keys rotate`: after a restart the broker signs with the new key, the JWT
// signed by the old one still verifies with a stock verifier, and a key
// published ahead is in the JWKS but does not sign.
func TestKeyRotation(t *testing.T) {
	dir := t.TempDir()
	ci := newCIIssuer(t)
	brokerURL, cfgPath := brokerSetup(t, dir, ci)
	broker := start(t, brokerURL, nil, "serve", "--config", cfgPath)
	prod := map[string]any{"aud": brokerURL, "environment": "prod"}
	mint := func() string {
		t.Helper()
		res := exchangeToken(t, brokerURL, ci.mint(t, prod), nil)
		if res.Status != http.StatusOK {
			t.Fatalf("exchange: status %d %v", res.Status, res.Body)
		}
		return res.Body["access_token"].(string)
	}
	oldJWT := mint()
	oldKid := kidOf(t, oldJWT)
	if got, want := listKeys(t, cfgPath), []listedKey{{oldKid, "active", true}}; !slices.Equal(got, want) {
		t.Fatalf("keys list = %v, want %v", got, want)
	}

	// 1. Rotate with no publish-ahead (a warning says why that is unwise)
	// next to the running broker, then restart it rather than wait for its
	// reload.
	out, errOut, code := runKeys(t, "rotate", "--publish-ahead", "0s", "--config", cfgPath)
	if code != 0 || !strings.Contains(errOut, "warning: --publish-ahead 0s") {
		t.Fatalf("keys rotate: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	keys := listKeys(t, cfgPath)
	if len(keys) != 2 || keys[0] != (listedKey{oldKid, "retired", false}) || keys[1].State != "active" || !keys[1].Signing {
		t.Fatalf("keys list after rotate = %v", keys)
	}
	newKid := keys[1].Kid
	if !strings.Contains(out, newKid) {
		t.Errorf("keys rotate output %q does not name the new key %s", out, newKid)
	}
	broker.stop()
	broker = start(t, brokerURL, nil, "serve", "--config", cfgPath)
	newJWT := mint()
	if kid := kidOf(t, newJWT); kid != newKid {
		t.Errorf("JWT after rotation signed by %s, want the new key %s", kid, newKid)
	}
	verifyStock(t, brokerURL, oldJWT)
	verifyStock(t, brokerURL, newJWT)

	// 2. A rotation with the default publish-ahead (10m) publishes a key
	// that does not sign yet; a second rotation is refused meanwhile.
	if out, errOut, code := runKeys(t, "rotate", "--config", cfgPath); code != 0 || errOut != "" {
		t.Fatalf("keys rotate (publish ahead): exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if _, errOut, code := runKeys(t, "rotate", "--config", cfgPath); code == 0 || !strings.Contains(errOut, "pending") {
		t.Errorf("keys rotate while pending: exit %d, stderr %q; want a refusal naming the pending rotation", code, errOut)
	}
	keys = listKeys(t, cfgPath)
	if len(keys) != 3 || keys[2].State != "pending" || keys[2].Signing || keys[1] != (listedKey{newKid, "active", true}) {
		t.Fatalf("keys list with a pending key = %v", keys)
	}
	broker.stop()
	start(t, brokerURL, nil, "serve", "--config", cfgPath)
	if got, want := jwksKids(t, brokerURL), []string{oldKid, newKid, keys[2].Kid}; !slices.Equal(got, want) {
		t.Errorf("JWKS kids = %v, want %v", got, want)
	}
	if kid := kidOf(t, mint()); kid != newKid {
		t.Errorf("JWT with a pending key signed by %s, want %s", kid, newKid)
	}
}
