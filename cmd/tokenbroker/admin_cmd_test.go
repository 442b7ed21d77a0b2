package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runRoot runs the tokenbroker command line in-process.
func runRoot(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := rootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err = root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// TestAdminCommandsNeedAStore: without --config, --store or
// TOKENBROKER_STORE, the admin commands refuse instead of creating (and
// reporting on) an empty ./tokenbroker.db (review 3).
func TestAdminCommandsNeedAStore(t *testing.T) {
	t.Setenv("TOKENBROKER_STORE", "")
	if err := os.Unsetenv("TOKENBROKER_STORE"); err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	for _, args := range [][]string{
		{"keys", "list"},
		{"keys", "rotate"},
		{"apikeys", "list"},
		{"apikeys", "purge"},
		{"audit"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			_, _, err := runRoot(t, args...)
			if !errors.Is(err, errNoStore) {
				t.Errorf("err = %v, want errNoStore", err)
			}
			if _, err := os.Stat("tokenbroker.db"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("./tokenbroker.db was created (stat: %v)", err)
			}
		})
	}
	t.Run("TOKENBROKER_STORE is enough", func(t *testing.T) {
		t.Setenv("TOKENBROKER_STORE", "sqlite://"+filepath.Join(t.TempDir(), "tb.db"))
		if _, _, err := runRoot(t, "audit"); err != nil {
			t.Fatal(err)
		}
	})
}

// TestKeysRotateMaxTTL: without a configuration, keys rotate says that the
// retired key's stay rests on the default limits.max_ttl; --max-ttl (or a
// configuration) replaces it.
func TestKeysRotateMaxTTL(t *testing.T) {
	tests := []struct {
		name        string
		args        []string
		env         string // TOKENBROKER_LIMITS_MAX_TTL
		wantWarning bool
		wantErr     string
	}{
		{"no configuration: warning", nil, "", true, ""},
		{"--max-ttl", []string{"--max-ttl", "2h"}, "", false, ""},
		{"max_ttl from the environment", nil, "2h", false, ""},
		{"--max-ttl out of range", []string{"--max-ttl", "48h"}, "", false, "--max-ttl 48h0m0s: must be between 1m and 24h"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("TOKENBROKER_LIMITS_MAX_TTL", tc.env)
			}
			args := append([]string{"keys", "rotate", "--store", "sqlite://" + filepath.Join(t.TempDir(), "tb.db")}, tc.args...)
			stdout, stderr, err := runRoot(t, args...)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("keys rotate: %v; stderr %s", err, stderr)
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("keys rotate = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if got := strings.Contains(stderr, "default limits.max_ttl"); got != tc.wantWarning {
				t.Errorf("warning shown: %t, want %t; stderr %q", got, tc.wantWarning, stderr)
			}
			if !strings.Contains(stdout, "published") {
				t.Errorf("stdout %q", stdout)
			}
		})
	}
}
