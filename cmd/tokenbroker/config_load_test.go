package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tokenbroker.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestZeroDurations: a duration key set to 0 is not silently replaced by
// its default (review 3: limits.leeway: 0s became 30s). Where 0 means
// something (leeway) it is kept; elsewhere it is refused, naming the key.
func TestZeroDurations(t *testing.T) {
	tests := []struct {
		name       string
		yaml       string
		env        []string
		wantLeeway time.Duration
		wantErr    string // "" = valid
	}{
		{"unset: default", "", nil, 30 * time.Second, ""},
		{"leeway 0s in the file is kept", "limits:\n  leeway: 0s\n", nil, 0, ""},
		{"leeway 0 from the environment is kept", "", []string{"TOKENBROKER_LIMITS_LEEWAY=0s"}, 0, ""},
		{"environment wins over a 0 in the file", "limits:\n  leeway: 0s\n", []string{"TOKENBROKER_LIMITS_LEEWAY=10s"}, 10 * time.Second, ""},
		{"null leeway is unset", "limits:\n  leeway:\n", nil, 30 * time.Second, ""},
		{"~ leeway is unset", "limits:\n  leeway: ~\n", nil, 30 * time.Second, ""},
		{"leeway 5s", "limits:\n  leeway: 5s\n", nil, 5 * time.Second, ""},
		{"write_timeout 0 is refused, not 'no timeout'", "server:\n  write_timeout: 0s\n", nil, 30 * time.Second, "server.write_timeout: 0 is not allowed"},
		{"read_header_timeout 0 from the environment", "", []string{"TOKENBROKER_SERVER_READ_HEADER_TIMEOUT=0s"}, 30 * time.Second, "server.read_header_timeout: 0 is not allowed"},
		{"max_ttl 0 is refused", "limits:\n  max_ttl: 0s\n", nil, 30 * time.Second, "limits.max_ttl"},
		{"jwks_cooldown 0 is refused", "limits:\n  jwks_cooldown: 0s\n", nil, 30 * time.Second, "limits.jwks_cooldown: 0 is not allowed"},
		{"in_flight_wait 0 is refused", "rate_limits:\n  in_flight_wait: 0s\n", nil, 30 * time.Second, "rate_limits.in_flight_wait: 0 is not allowed"},
		{"publish_ahead 0 is refused", "signing:\n  publish_ahead: 0s\n", nil, 30 * time.Second, "signing.publish_ahead: 0 is not allowed"},
		{"rotate_every 0 is refused", "signing:\n  rotate_every: 0s\n", nil, 30 * time.Second, "signing.rotate_every: 0 is not allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			yaml := "providers:\n  - name: gh\n    preset: github-actions\n" + tc.yaml
			cfg, err := loadConfig(writeConfig(t, yaml), tc.env)
			if err != nil {
				t.Fatalf("loadConfig: %v", err)
			}
			cfg.defaults()
			err = cfg.validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("validate: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("validate = %v, want an error containing %q", err, tc.wantErr)
			}
			if got := cfg.Limits.Leeway.D(); got != tc.wantLeeway {
				t.Errorf("limits.leeway = %s, want %s", got, tc.wantLeeway)
			}
		})
	}
}

// TestProviderLeeway: providers.Options reads a zero leeway as "the
// default", so a configured 0 must reach it as (practically) none.
func TestProviderLeeway(t *testing.T) {
	for _, tc := range []struct {
		leeway, want time.Duration
	}{{0, -1}, {5 * time.Second, 5 * time.Second}} {
		c := &Config{Limits: LimitsConfig{Leeway: Duration(tc.leeway)}}
		if got := c.providerLeeway(); got != tc.want {
			t.Errorf("leeway %s: providerLeeway() = %s, want %s", tc.leeway, got, tc.want)
		}
	}
}

// TestEnvLists: []string keys come from comma-separated environment
// variables (review 3: TOKENBROKER_TRUSTED_PROXIES was silently ignored).
func TestEnvLists(t *testing.T) {
	tests := []struct {
		name, value string
		want        []string
	}{
		{"one", "10.0.0.0/8", []string{"10.0.0.0/8"}},
		{"several, with spaces", "10.0.0.0/8, 192.0.2.1 ,::1", []string{"10.0.0.0/8", "192.0.2.1", "::1"}},
		{"empty clears the file's list", "", []string{}},
	}
	path := writeConfig(t, "trusted_proxies: [172.16.0.0/12]\n")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadConfig(path, []string{"TOKENBROKER_TRUSTED_PROXIES=" + tc.value, "TOKENBROKER_URL=https://ignored", "TOKENBROKER_ID_TOKEN=x"})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, cfg.TrustedProxies); diff != "" {
				t.Errorf("trusted_proxies (-want +got):\n%s", diff)
			}
		})
	}
	cfg, err := loadConfig("", []string{"TOKENBROKER_SIGNING_PREVIOUS_KEY_ENCRYPTION_KEY_FILES=/a,/b"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"/a", "/b"}, cfg.Signing.PreviousKeyEncryptionKeyFiles); diff != "" {
		t.Errorf("a nested list (-want +got):\n%s", diff)
	}
}

// TestConfigDocuments: the file holds one YAML document; a second one used
// to be ignored silently (review 3).
func TestConfigDocuments(t *testing.T) {
	tests := []struct {
		name, yaml string
		wantErr    string
	}{
		{"empty file", "", ""},
		{"comments only", "# nothing yet\n", ""},
		{"one document with a leading ---", "---\nlisten: 127.0.0.1:9000\n", ""},
		{"two documents", "listen: 127.0.0.1:9000\n---\nlisten: 127.0.0.1:9001\n", "more than one YAML document"},
		{"a second document of unknown keys", "listen: 127.0.0.1:9000\n---\nbogus_key: 1\n", "more than one YAML document"},
		{"unknown key", "bogus_key: 1\n", "bogus_key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadConfig(writeConfig(t, tc.yaml), nil)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("loadConfig: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("loadConfig = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}
