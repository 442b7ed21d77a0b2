package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeGitHub serves the Actions ID token endpoint: GET with
// "Authorization: bearer <request token>" and ?audience=, answering
// {"count":..., "value":"<token for audience, call n>"}.
func fakeGitHub(t *testing.T, requestToken string) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.Header.Get("Authorization") != "bearer "+requestToken {
			http.Error(w, `{"message":"unauthorized"}`, http.StatusUnauthorized)
			return
		}
		if r.URL.Query().Get("api-version") != "2.0" {
			http.Error(w, "the request URL's own query was lost", http.StatusBadRequest)
			return
		}
		i := n.Add(1)
		_ = json.NewEncoder(w).Encode(map[string]any{"count": 1900, "value": "gh." + r.URL.Query().Get("audience") + "." + string(rune('0'+i))})
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestGitHubActions(t *testing.T) {
	srv, n := fakeGitHub(t, "req-token")
	tests := []struct {
		name    string
		src     *GitHubActions
		want    []string
		wantErr string
	}{
		{"fresh token per call with the audience", &GitHubActions{RequestURL: srv.URL + "/idtoken?api-version=2.0", RequestToken: "req-token"}, []string{"gh.https://broker.example.1", "gh.https://broker.example.2"}, ""},
		{"wrong request token", &GitHubActions{RequestURL: srv.URL + "/idtoken?api-version=2.0", RequestToken: "stolen"}, nil, "HTTP 401"},
		{"not configured", &GitHubActions{}, nil, "id-token: write"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n.Store(0)
			var got []string
			for range max(len(tc.want), 1) {
				tok, err := tc.src.IDToken(context.Background(), "https://broker.example")
				if tc.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
						t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, tok)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("tokens (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGitHubActionsRefusesRedirectsAndHugeBodies(t *testing.T) {
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"value":"` + strings.Repeat("a", maxIDTokenBytes+10) + `"}`))
	}))
	defer big.Close()
	redirect := httptest.NewServer(http.RedirectHandler(big.URL, http.StatusTemporaryRedirect))
	defer redirect.Close()
	for name, u := range map[string]string{"huge body": big.URL, "redirect": redirect.URL} {
		t.Run(name, func(t *testing.T) {
			_, err := (&GitHubActions{RequestURL: u + "/?api-version=2.0", RequestToken: "x"}).IDToken(context.Background(), "aud")
			if err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func TestAzureDevOps(t *testing.T) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if r.Method != http.MethodPost || r.Header.Get("Authorization") != "Bearer sys-token" ||
			q.Get("api-version") != "7.1-preview.1" || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad request", http.StatusUnauthorized)
			return
		}
		calls.Add(1)
		_ = json.NewEncoder(w).Encode(map[string]string{"oidcToken": "az." + q.Get("serviceConnectionId")})
	}))
	defer srv.Close()
	tests := []struct {
		name, want, wantErr string
		src                 *AzureDevOps
	}{
		{"job token", "az.", "", &AzureDevOps{RequestURI: srv.URL + "/oidctoken", AccessToken: "sys-token"}},
		{"service connection", "az.conn-1", "", &AzureDevOps{RequestURI: srv.URL + "/oidctoken", AccessToken: "sys-token", ServiceConnectionID: "conn-1"}},
		{"wrong access token", "", "HTTP 401", &AzureDevOps{RequestURI: srv.URL + "/oidctoken", AccessToken: "nope"}},
		{"not mapped", "", "SYSTEM_ACCESSTOKEN", &AzureDevOps{RequestURI: srv.URL}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.src.IDToken(context.Background(), "ignored")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// fakeAgent writes a buildkite-agent script into a temp dir on PATH that
// prints a token naming its arguments, or fails.
func fakeAgent(t *testing.T, script string) {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("shell script agent")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "buildkite-agent"), []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
}

func TestBuildkite(t *testing.T) {
	tests := []struct {
		name, script, want, wantErr string
	}{
		{"prints a token for the audience", `[ "$1 $2 $3" = "oidc request-token --audience" ] || exit 9; echo "bk.$4"`, "bk.https://broker.example", ""},
		{"agent fails", `echo "not in a job" >&2; exit 1`, "", "not in a job"},
		{"empty output", `exit 0`, "", "empty ID token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fakeAgent(t, tc.script)
			got, err := (&Buildkite{}).IDToken(context.Background(), "https://broker.example")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestEnvSourcesAndDetection(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		opts     SourceOptions
		wantKind string
		want     string
		wantErr  string
	}{
		{"gitlab id_tokens variable", map[string]string{"GITLAB_CI": "true", "TOKENBROKER_ID_TOKEN": "gl.tok"}, SourceOptions{}, SourceGitLab, "gl.tok", ""},
		{"gitlab variable named by option", map[string]string{"GITLAB_CI": "true", "BROKER_JWT": "gl.named"}, SourceOptions{Variable: "BROKER_JWT"}, SourceGitLab, "gl.named", ""},
		{"gitlab without id_tokens", map[string]string{"GITLAB_CI": "true"}, SourceOptions{}, SourceGitLab, "", "TOKENBROKER_ID_TOKEN"},
		{"circleci prefers v2", map[string]string{"CIRCLECI": "true", "CIRCLE_OIDC_TOKEN": "v1", "CIRCLE_OIDC_TOKEN_V2": "v2"}, SourceOptions{}, SourceCircleCI, "v2", ""},
		{"circleci falls back to v1", map[string]string{"CIRCLECI": "true", "CIRCLE_OIDC_TOKEN": "v1"}, SourceOptions{}, SourceCircleCI, "v1", ""},
		{"bitbucket step token", map[string]string{"BITBUCKET_BUILD_NUMBER": "7", "BITBUCKET_STEP_OIDC_TOKEN": "bb.tok"}, SourceOptions{}, SourceBitbucket, "bb.tok", ""},
		{"bitbucket step without oidc: true", map[string]string{"BITBUCKET_BUILD_NUMBER": "7"}, SourceOptions{}, SourceBitbucket, "", "BITBUCKET_STEP_OIDC_TOKEN"},
		{"override beats detection", map[string]string{"GITHUB_ACTIONS": "true", "MY_TOKEN": "mine"}, SourceOptions{Kind: "env", Variable: "MY_TOKEN"}, SourceEnv, "mine", ""},
		{"no CI system", map[string]string{}, SourceOptions{}, "", "", "no CI system detected"},
		{"unknown kind", map[string]string{}, SourceOptions{Kind: "jenkins"}, "", "", "unknown ID token source"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Getenv = func(k string) string { return tc.env[k] }
			src, kind, err := NewIDTokenSource(tc.opts)
			if err == nil {
				if kind != tc.wantKind {
					t.Errorf("kind = %q, want %q", kind, tc.wantKind)
				}
				var tok string
				tok, err = src.IDToken(context.Background(), "aud")
				if err == nil && tok != tc.want {
					t.Errorf("token = %q, want %q", tok, tc.want)
				}
			}
			if tc.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestDetectKind(t *testing.T) {
	for _, d := range detection {
		env := map[string]string{d.variable: "1"}
		if got := DetectKind(func(k string) string { return env[k] }); got != d.kind {
			t.Errorf("%s set: kind %q, want %q", d.variable, got, d.kind)
		}
	}
}

func TestFileSource(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "token")
	if err := os.WriteFile(path, []byte("file.tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src, kind, err := NewIDTokenSource(SourceOptions{File: path, Getenv: func(string) string { return "" }})
	if err != nil || kind != SourceFile {
		t.Fatalf("kind %q, err %v", kind, err)
	}
	if tok, err := src.IDToken(context.Background(), ""); err != nil || tok != "file.tok" {
		t.Fatalf("got %q, %v", tok, err)
	}
	// The file is read again on each call: a refreshed file is picked up.
	if err := os.WriteFile(path, []byte("file.tok2"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, _ := src.IDToken(context.Background(), ""); tok != "file.tok2" {
		t.Fatalf("got %q after refresh", tok)
	}
	if _, err := (&File{Path: filepath.Join(dir, "missing")}).IDToken(context.Background(), ""); err == nil {
		t.Fatal("missing file: no error")
	}
}
