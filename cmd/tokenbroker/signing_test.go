package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenbroker/tokenbroker/exchange"
)

func TestSigningConfig(t *testing.T) {
	tests := []struct {
		name    string
		env     []string
		wantErr string // empty: valid
		want    SigningConfig
	}{
		{"defaults", nil, "", SigningConfig{Algorithm: "ES256", RotateEvery: Duration(720 * time.Hour), PublishAhead: Duration(10 * time.Minute)}},
		{"automatic rotation off", []string{"TOKENBROKER_SIGNING_ROTATE_EVERY=-1s"}, "", SigningConfig{Algorithm: "ES256", RotateEvery: Duration(-time.Second), PublishAhead: Duration(10 * time.Minute)}},
		{"set by the environment", []string{"TOKENBROKER_SIGNING_ROTATE_EVERY=24h", "TOKENBROKER_SIGNING_PUBLISH_AHEAD=2m"}, "", SigningConfig{Algorithm: "ES256", RotateEvery: Duration(24 * time.Hour), PublishAhead: Duration(2 * time.Minute)}},
		{"rotation too frequent", []string{"TOKENBROKER_SIGNING_ROTATE_EVERY=30m"}, "signing.rotate_every", SigningConfig{}},
		{"publish ahead shorter than a reload", []string{"TOKENBROKER_SIGNING_PUBLISH_AHEAD=90s"}, "signing.publish_ahead", SigningConfig{}},
		{"publish ahead negative", []string{"TOKENBROKER_SIGNING_PUBLISH_AHEAD=-1m"}, "signing.publish_ahead", SigningConfig{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadConfig("", tt.env)
			if err != nil {
				t.Fatalf("loadConfig: %v", err)
			}
			cfg.defaults()
			err = cfg.validateSigning()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("validateSigning = %v, want an error naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("validateSigning: %v", err)
			}
			if d := cmp.Diff(tt.want, cfg.Signing); d != "" {
				t.Errorf("signing (-want +got):\n%s", d)
			}
		})
	}
}

func TestKeyListings(t *testing.T) {
	at := time.Date(2026, time.March, 1, 12, 0, 0, 0, time.UTC)
	keys := []exchange.KeyInfo{
		{ID: "old", Algorithm: "ES256", CreatedAt: at, ActiveAt: at, RetiredAt: at.Add(time.Hour), RemoveAt: at.Add(2 * time.Hour), State: exchange.KeyRetired},
		{ID: "new", Algorithm: "ES256", CreatedAt: at.Add(50 * time.Minute), ActiveAt: at.Add(time.Hour), State: exchange.KeyActive, Signing: true, Encrypted: true},
	}
	var table bytes.Buffer
	if err := writeKeysTable(&table, keys); err != nil {
		t.Fatal(err)
	}
	wantTable := "" +
		"KID  ALG    STATE             CREATED               ACTIVE                RETIRED               REMOVED\n" +
		"old  ES256  retired           2026-03-01T12:00:00Z  2026-03-01T12:00:00Z  2026-03-01T13:00:00Z  2026-03-01T14:00:00Z\n" +
		"new  ES256  active (signing)  2026-03-01T12:50:00Z  2026-03-01T13:00:00Z  -                     -\n"
	if d := cmp.Diff(wantTable, table.String()); d != "" {
		t.Errorf("table (-want +got):\n%s", d)
	}
	var js bytes.Buffer
	if err := writeKeysJSON(&js, keys); err != nil {
		t.Fatal(err)
	}
	wantJSON := `{"kid":"old","alg":"ES256","state":"retired","signing":false,"encrypted":false,"created_at":"2026-03-01T12:00:00Z","active_at":"2026-03-01T12:00:00Z","retired_at":"2026-03-01T13:00:00Z","remove_at":"2026-03-01T14:00:00Z"}` + "\n" +
		`{"kid":"new","alg":"ES256","state":"active","signing":true,"encrypted":true,"created_at":"2026-03-01T12:50:00Z","active_at":"2026-03-01T13:00:00Z"}` + "\n"
	if d := cmp.Diff(wantJSON, js.String()); d != "" {
		t.Errorf("JSON (-want +got):\n%s", d)
	}
}
