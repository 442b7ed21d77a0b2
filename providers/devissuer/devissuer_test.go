package devissuer

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tokenbroker/tokenbroker/providers"
)

// start runs an issuer on a loopback port for the test.
func start(t *testing.T, opts Options) *Issuer {
	t.Helper()
	iss, srv, err := Start("127.0.0.1:0", opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return iss
}

// registry returns a providers registry trusting iss.
func registry(t *testing.T, iss *Issuer, allowDev bool) *providers.Registry {
	t.Helper()
	r, err := providers.New([]providers.Config{{Name: "dev", Preset: providers.PresetGitHubActions, Issuer: iss.URL(), Algorithms: []string{"RS256", "ES256"}}},
		providers.Options{AllowDevIssuer: allowDev})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// mintOverHTTP calls POST /token with form.
func mintOverHTTP(t *testing.T, iss *Issuer, form url.Values) string {
	t.Helper()
	resp, err := http.PostForm(iss.URL()+"/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("POST /token: %s %s: %s", resp.Status, resp.Header.Get("Content-Type"), body)
	}
	return string(body)
}

func TestMintEndpointTokensVerify(t *testing.T) {
	tests := []struct {
		name     string
		alg      string
		form     url.Values
		wantSub  string
		wantAud  []string
		wantSome map[string]any
	}{
		{
			name:    "defaults",
			form:    url.Values{"audience": {"https://broker.example.com"}},
			wantSub: "repo:octo-org/app:ref:refs/heads/main",
			wantAud: []string{"https://broker.example.com"},
			wantSome: map[string]any{
				"repository_owner_id": "1234567", "repository_owner": "octo-org", "ref_type": "branch",
				"runner_environment": "github-hosted", "event_name": "push",
				"job_workflow_ref": "octo-org/app/.github/workflows/deploy.yml@refs/heads/main",
			},
		},
		{
			name:     "environment",
			alg:      "ES256",
			form:     url.Values{"audience": {"a", "b"}, "environment": {"prod"}, "repository": {"acme/api"}},
			wantSub:  "repo:acme/api:environment:prod",
			wantAud:  []string{"a", "b"},
			wantSome: map[string]any{"repository_owner": "acme", "environment": "prod"},
		},
		{
			name:     "pull request from a tag",
			form:     url.Values{"audience": {"a"}, "event_name": {"pull_request"}, "ref": {"refs/tags/v1"}},
			wantSub:  "repo:octo-org/app:pull_request",
			wantAud:  []string{"a"},
			wantSome: map[string]any{"ref_type": "tag"},
		},
		{
			name:    "explicit sub wins",
			form:    url.Values{"audience": {"a"}, "sub": {"custom"}, "environment": {"prod"}},
			wantSub: "custom",
			wantAud: []string{"a"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			iss := start(t, Options{Algorithm: tt.alg})
			r := registry(t, iss, true)
			tok, err := r.Verify(context.Background(), mintOverHTTP(t, iss, tt.form))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if tok.Subject != tt.wantSub {
				t.Errorf("sub = %q, want %q", tok.Subject, tt.wantSub)
			}
			if diff := cmp.Diff(tt.wantAud, tok.Audience); diff != "" {
				t.Errorf("aud (-want +got):\n%s", diff)
			}
			for k, v := range tt.wantSome {
				if tok.Claims[k] != v {
					t.Errorf("claim %s = %v, want %v", k, tok.Claims[k], v)
				}
			}
			if got := tok.Expiry.Sub(tok.IssuedAt); got != TokenLifetime {
				t.Errorf("lifetime = %s, want %s", got, TokenLifetime)
			}
			if tok.KeyID != iss.KeyID() || tok.ID == "" {
				t.Errorf("kid %q (want %q), jti %q", tok.KeyID, iss.KeyID(), tok.ID)
			}
		})
	}
}

func TestDevMarker(t *testing.T) {
	dev := start(t, Options{})
	prodLike := start(t, Options{ProductionLike: true})
	tests := []struct {
		name     string
		iss      *Issuer
		allowDev bool
		wantErr  error
	}{
		{"dev issuer refused", dev, false, providers.ErrDevIssuer},
		{"dev issuer allowed in development", dev, true, nil},
		{"production-like issuer", prodLike, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := registry(t, tt.iss, tt.allowDev)
			errs := r.Warm(context.Background())
			if tt.wantErr == nil && len(errs) != 0 || tt.wantErr != nil && (len(errs) != 1 || !errors.Is(errs[0], tt.wantErr)) {
				t.Fatalf("Warm errors = %v, want %v", errs, tt.wantErr)
			}
			raw, err := tt.iss.Mint(map[string]any{"aud": "x"})
			if err != nil {
				t.Fatal(err)
			}
			_, err = r.Verify(context.Background(), raw)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Verify error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestMintRemovesNilClaims(t *testing.T) {
	now := time.Unix(1_750_000_000, 0)
	iss := start(t, Options{Now: func() time.Time { return now }})
	raw, err := iss.Mint(map[string]any{"exp": nil, "enterprise": "acme"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := providers.New([]providers.Config{{Name: "dev", Issuer: iss.URL()}},
		providers.Options{AllowDevIssuer: true, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Verify(context.Background(), raw); !errors.Is(err, providers.ErrExpired) {
		t.Fatalf("Verify error = %v, want ErrExpired (exp removed)", err)
	}
}

func TestDiscoveryDocument(t *testing.T) {
	iss := start(t, Options{})
	resp, err := http.Get(iss.URL() + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"issuer":                                iss.URL(),
		"jwks_uri":                              iss.URL() + "/.well-known/jwks",
		"id_token_signing_alg_values_supported": []any{"RS256"},
		"tokenbroker_development_only":          true,
	}
	for k, v := range want {
		if diff := cmp.Diff(v, doc[k]); diff != "" {
			t.Errorf("%s (-want +got):\n%s", k, diff)
		}
	}
}

func TestStartAndNewRefuse(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:0", "example.com:0", "127.0.0.1"} {
		if _, _, err := Start(addr, Options{}); err == nil {
			t.Errorf("Start(%q) succeeded, want a refusal", addr)
		}
	}
	for _, opts := range []Options{{}, {URL: "127.0.0.1:9000"}, {URL: "http://127.0.0.1:9000", Algorithm: "HS256"}} {
		if _, err := New(opts); err == nil {
			t.Errorf("New(%+v) succeeded, want an error", opts)
		}
	}
}
