package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// newKEKFile writes a key encryption key as `openssl rand -base64 32` does,
// mode 0600.
func newKEKFile(t *testing.T, dir, name string) string {
	t.Helper()
	kek := make([]byte, 32)
	if _, err := rand.Read(kek); err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, name, base64.StdEncoding.EncodeToString(kek)+"\n")
}

// withSigning writes a copy of the config at cfgPath with a signing: block
// appended, and returns its path.
func withSigning(t *testing.T, cfgPath, name, signing string) string {
	t.Helper()
	base, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, filepath.Dir(cfgPath), name, string(base)+"signing:\n"+signing)
}

// encryptedKeys lists the "encrypted" flag of every key, oldest first.
func encryptedKeys(t *testing.T, cfgPath string) []bool {
	t.Helper()
	out, errOut, code := runKeys(t, "list", "--json", "--config", cfgPath)
	if code != 0 {
		t.Fatalf("keys list: exit %d: %s", code, errOut)
	}
	var got []bool
	for line := range strings.Lines(out) {
		var k struct {
			Encrypted bool `json:"encrypted"`
		}
		if err := json.Unmarshal([]byte(line), &k); err != nil {
			t.Fatalf("keys list --json: %v in %q", err, line)
		}
		got = append(got, k.Encrypted)
	}
	return got
}

// TestSigningKeyEncryption: a broker given a key encryption key stores its
// signing key sealed, restarts and keeps verifying what it minted; without
// the key encryption key it refuses to start and says what to set.
func TestSigningKeyEncryption(t *testing.T) {
	dir := t.TempDir()
	ci := newCIIssuer(t)
	brokerURL, plainCfg := brokerSetup(t, dir, ci)
	kekPath := newKEKFile(t, dir, "kek")
	cfgPath := withSigning(t, plainCfg, "sealed.yaml", "  key_encryption_key_file: "+kekPath+"\n")

	broker := start(t, brokerURL, nil, "serve", "--config", cfgPath)
	res := exchangeToken(t, brokerURL, ci.mint(t, map[string]any{"aud": brokerURL, "environment": "prod"}), nil)
	if res.Status != http.StatusOK {
		t.Fatalf("exchange: status %d %v", res.Status, res.Body)
	}
	minted := res.Body["access_token"].(string)
	verifyStock(t, brokerURL, minted)
	if got := encryptedKeys(t, cfgPath); !slices.Equal(got, []bool{true}) {
		t.Fatalf("keys list: encrypted = %v, want [true]", got)
	}

	// 1. A restart with the same key encryption key (now from the
	// environment) opens the key: the JWT minted before still verifies.
	broker.stop()
	broker = start(t, brokerURL, []string{"TOKENBROKER_SIGNING_KEY_ENCRYPTION_KEY_FILE=" + kekPath}, "serve", "--config", plainCfg)
	verifyStock(t, brokerURL, minted)
	broker.stop()

	// 2. Without it, serve and keys rotate refuse, naming the key to set.
	refused := start(t, "", nil, "serve", "--config", plainCfg)
	if !refused.exitedWithin(60 * time.Second) {
		t.Fatal("serve without the key encryption key is still running")
	}
	kid := kidOf(t, minted)
	for _, want := range []string{"signing key " + kid + " is encrypted", "signing.key_encryption_key_file"} {
		if !strings.Contains(refused.output(), want) {
			t.Errorf("serve without the key encryption key: output does not contain %q:\n%s", want, refused.output())
		}
	}
	if _, errOut, code := runKeys(t, "rotate", "--config", plainCfg); code == 0 || !strings.Contains(errOut, "signing.key_encryption_key_file") {
		t.Errorf("keys rotate without the key encryption key: exit %d, stderr %q", code, errOut)
	}

	// 3. Nor does another key encryption key open it, unless the first one
	// is listed as previous (a rotation of the key encryption key).
	otherCfg := withSigning(t, plainCfg, "other.yaml", "  key_encryption_key_file: "+newKEKFile(t, dir, "kek2")+"\n")
	wrong := start(t, "", nil, "serve", "--config", otherCfg)
	if !wrong.exitedWithin(60*time.Second) || !strings.Contains(wrong.output(), "previous_key_encryption_key_files") {
		t.Fatalf("serve with another key encryption key: want an exit naming previous_key_encryption_key_files:\n%s", wrong.output())
	}
	rotatedCfg := withSigning(t, plainCfg, "rotated.yaml", "  key_encryption_key_file: "+newKEKFile(t, dir, "kek3")+"\n"+
		"  previous_key_encryption_key_files: ["+kekPath+"]\n")
	start(t, brokerURL, nil, "serve", "--config", rotatedCfg)
	verifyStock(t, brokerURL, minted)
}

// TestSigningKeyEncryptionTurnedOn: a store of plaintext keys keeps working
// once a key encryption key is set, and `keys rotate` then adds a sealed key.
func TestSigningKeyEncryptionTurnedOn(t *testing.T) {
	dir := t.TempDir()
	ci := newCIIssuer(t)
	_, plainCfg := brokerSetup(t, dir, ci)
	if _, errOut, code := runKeys(t, "rotate", "--publish-ahead", "0s", "--config", plainCfg); code != 0 {
		t.Fatalf("keys rotate without encryption: exit %d: %s", code, errOut)
	}
	cfgPath := withSigning(t, plainCfg, "sealed.yaml", "  key_encryption_key_file: "+newKEKFile(t, dir, "kek")+"\n")
	out, errOut, code := runKeys(t, "rotate", "--publish-ahead", "0s", "--config", cfgPath)
	if code != 0 || !strings.Contains(errOut, "stored unencrypted") {
		t.Fatalf("keys rotate with encryption: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if got, want := encryptedKeys(t, cfgPath), []bool{false, false, true}; !slices.Equal(got, want) {
		t.Errorf("keys list: encrypted = %v, want %v", got, want)
	}
}
