package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeKEK writes a base64 key encryption key file with mode perm.
func writeKEK(t *testing.T, dir, name string, perm os.FileMode) (string, []byte) {
	t.Helper()
	kek := make([]byte, 32)
	if _, err := rand.Read(kek); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(kek)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil { // past the umask
		t.Fatal(err)
	}
	return path, kek
}

func TestReadKEKFile(t *testing.T) {
	tests := []struct {
		name     string
		perm     os.FileMode
		wantErr  string // empty: read
		wantWarn bool
	}{
		{"owner only", 0o600, "", false},
		{"owner read only", 0o400, "", false},
		{"group readable (fsGroup secret volume)", 0o640, "", true},
		{"world readable", 0o644, "readable by every user", false},
		{"container default 0444", 0o444, "readable by every user", false},
		{"group writable", 0o620, "writable by other users", false},
		{"world writable", 0o602, "writable by other users", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, want := writeKEK(t, t.TempDir(), "kek", tt.perm)
			var warnings []string
			got, err := readKEKFile(path, func(s string) { warnings = append(warnings, s) })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("readKEKFile: %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("readKEKFile = %x, %v; want %x", got, err, want)
			}
			if (len(warnings) > 0) != tt.wantWarn {
				t.Errorf("warnings %q, want some: %v", warnings, tt.wantWarn)
			}
		})
	}
}

func TestKeySealerConfig(t *testing.T) {
	dir := t.TempDir()
	cur, _ := writeKEK(t, dir, "kek", 0o600)
	prev, _ := writeKEK(t, dir, "kek.old", 0o600)
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("c2hvcnQ=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		env        []string
		previous   []string
		wantSealer bool
		wantErr    string
	}{
		{"off", nil, nil, false, ""},
		{"from the environment", []string{kekEnv + "=" + cur}, nil, true, ""},
		{"with a previous KEK", []string{kekEnv + "=" + cur}, []string{prev}, true, ""},
		{"missing file", []string{kekEnv + "=" + filepath.Join(dir, "nope")}, nil, false, "signing.key_encryption_key_file"},
		{"not 32 bytes", []string{kekEnv + "=" + short}, nil, false, "signing.key_encryption_key_file"},
		{"bad previous KEK", []string{kekEnv + "=" + cur}, []string{short}, false, "previous_key_encryption_key_files[0]"},
		{"previous without current", nil, []string{prev}, false, "without signing.key_encryption_key_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadConfig("", tt.env)
			if err != nil {
				t.Fatalf("loadConfig: %v", err)
			}
			cfg.Signing.PreviousKeyEncryptionKeyFiles = tt.previous
			s, err := cfg.keySealer(func(string) {})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("keySealer: %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || (s != nil) != tt.wantSealer {
				t.Fatalf("keySealer = %v, %v; want a sealer: %v", s, err, tt.wantSealer)
			}
		})
	}
}
