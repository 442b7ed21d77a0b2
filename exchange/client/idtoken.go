package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"time"
)

// IDTokenSource yields the CI system's OIDC ID token for an audience. Sources
// that can mint (GitHub Actions, Azure DevOps, Buildkite) return a new token,
// with a new jti, on every call; sources that read a value the CI system
// placed in the environment return the same token every time and ignore
// audience (the audience is set in the pipeline definition).
type IDTokenSource interface {
	IDToken(ctx context.Context, audience string) (string, error)
}

// maxIDTokenBytes caps an ID token and any response carrying one.
const maxIDTokenBytes = 64 << 10

// GitHubActions requests a fresh ID token from the Actions runtime: GET
// ACTIONS_ID_TOKEN_REQUEST_URL&audience=A with "Authorization: bearer
// ACTIONS_ID_TOKEN_REQUEST_TOKEN", answered by {"value": "<jwt>"}. The job
// needs `permissions: id-token: write`.
type GitHubActions struct {
	// RequestURL is ACTIONS_ID_TOKEN_REQUEST_URL.
	RequestURL string
	// RequestToken is ACTIONS_ID_TOKEN_REQUEST_TOKEN.
	RequestToken string
	// HTTPClient makes the request; nil means a client with a 30s timeout
	// that follows no redirects.
	HTTPClient *http.Client
}

// IDToken implements IDTokenSource.
func (g *GitHubActions) IDToken(ctx context.Context, audience string) (string, error) {
	if g.RequestURL == "" || g.RequestToken == "" {
		return "", errors.New("client: github actions: ACTIONS_ID_TOKEN_REQUEST_URL or ACTIONS_ID_TOKEN_REQUEST_TOKEN is not set (does the job have `permissions: id-token: write`?)")
	}
	u, err := url.Parse(g.RequestURL)
	if err != nil {
		return "", fmt.Errorf("client: github actions: request URL: %w", err)
	}
	if audience != "" {
		q := u.Query()
		q.Set("audience", audience)
		u.RawQuery = q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", fmt.Errorf("client: github actions: %w", err)
	}
	req.Header.Set("Authorization", "bearer "+g.RequestToken)
	req.Header.Set("Accept", "application/json")
	var body struct {
		Value string `json:"value"`
	}
	if err := doJSON(httpClient(g.HTTPClient), req, &body); err != nil {
		return "", fmt.Errorf("client: github actions: %w", err)
	}
	return nonEmpty("github actions", body.Value)
}

// AzureDevOps requests a fresh ID token from Azure Pipelines: POST
// SYSTEM_OIDCREQUESTURI?api-version=7.1-preview.1 with "Authorization: Bearer
// SYSTEM_ACCESSTOKEN", answered by {"oidcToken": "<jwt>"}. Azure DevOps sets
// the audience itself (api://AzureADTokenExchange), so a policy must name it.
type AzureDevOps struct {
	// RequestURI is SYSTEM_OIDCREQUESTURI.
	RequestURI string
	// AccessToken is SYSTEM_ACCESSTOKEN (map it into the step's env).
	AccessToken string
	// ServiceConnectionID, when set, asks for the token of that service
	// connection.
	ServiceConnectionID string
	// HTTPClient makes the request; nil means a client with a 30s timeout
	// that follows no redirects.
	HTTPClient *http.Client
}

// azureAPIVersion is the version of the oidctoken REST API, as its
// reference documents it (Distributed Task - Oidctoken - Create).
const azureAPIVersion = "7.1-preview.1"

// IDToken implements IDTokenSource; audience is ignored (see AzureDevOps).
func (a *AzureDevOps) IDToken(ctx context.Context, _ string) (string, error) {
	if a.RequestURI == "" || a.AccessToken == "" {
		return "", errors.New("client: azure devops: SYSTEM_OIDCREQUESTURI or SYSTEM_ACCESSTOKEN is not set (map SYSTEM_ACCESSTOKEN: $(System.AccessToken) into the step's env)")
	}
	u, err := url.Parse(a.RequestURI)
	if err != nil {
		return "", fmt.Errorf("client: azure devops: request URI: %w", err)
	}
	q := u.Query()
	q.Set("api-version", azureAPIVersion)
	if a.ServiceConnectionID != "" {
		q.Set("serviceConnectionId", a.ServiceConnectionID)
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader("{}"))
	if err != nil {
		return "", fmt.Errorf("client: azure devops: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+a.AccessToken)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	var body struct {
		OIDCToken string `json:"oidcToken"`
	}
	if err := doJSON(httpClient(a.HTTPClient), req, &body); err != nil {
		return "", fmt.Errorf("client: azure devops: %w", err)
	}
	return nonEmpty("azure devops", body.OIDCToken)
}

// Buildkite runs `buildkite-agent oidc request-token --audience A`, which
// prints a fresh ID token.
type Buildkite struct {
	// Agent is the buildkite-agent executable; empty means "buildkite-agent"
	// looked up in PATH.
	Agent string
	// Lifetime, when positive, is passed as --lifetime (seconds).
	Lifetime time.Duration
	// Timeout bounds the command; zero means 30s.
	Timeout time.Duration
}

// IDToken implements IDTokenSource.
func (b *Buildkite) IDToken(ctx context.Context, audience string) (string, error) {
	agent := b.Agent
	if agent == "" {
		agent = "buildkite-agent"
	}
	timeout := b.Timeout
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	args := []string{"oidc", "request-token"}
	if audience != "" {
		args = append(args, "--audience", audience)
	}
	if b.Lifetime > 0 {
		args = append(args, "--lifetime", fmt.Sprint(int64(b.Lifetime/time.Second)))
	}
	cmd := exec.CommandContext(ctx, agent, args...) //nolint:gosec // G204: the agent path is the job's own buildkite-agent (config or PATH), args are fixed flags; no shell
	stdout := &cappedBuffer{max: maxIDTokenBytes}
	stderr := &cappedBuffer{max: 4 << 10}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg != "" {
			return "", fmt.Errorf("client: buildkite: %s: %w: %s", agent, err, msg)
		}
		return "", fmt.Errorf("client: buildkite: %s: %w", agent, err)
	}
	if stdout.overflow {
		return "", errors.New("client: buildkite: token too large")
	}
	return nonEmpty("buildkite", strings.TrimSpace(stdout.String()))
}

// Env reads the ID token from the first non-empty environment variable of
// Variables: GitLab's id_tokens variable, CircleCI's CIRCLE_OIDC_TOKEN_V2,
// Bitbucket's BITBUCKET_STEP_OIDC_TOKEN, or any other. The CI system mints it
// once per job, so it is the same token on every call: a policy with
// single_use: true (the default) lets the job exchange it only once.
type Env struct {
	// Name names the CI system in messages.
	Name string
	// Variables are tried in order.
	Variables []string
	// Getenv reads the environment; nil means os.Getenv.
	Getenv func(string) string
}

// IDToken implements IDTokenSource; audience is ignored.
func (e *Env) IDToken(context.Context, string) (string, error) {
	getenv := e.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	for _, v := range e.Variables {
		if tok := strings.TrimSpace(getenv(v)); tok != "" {
			if len(tok) > maxIDTokenBytes {
				return "", fmt.Errorf("client: %s: $%s too large", e.Name, v)
			}
			return tok, nil
		}
	}
	return "", fmt.Errorf("client: %s: none of $%s is set", e.Name, strings.Join(e.Variables, ", $"))
}

// File reads the ID token from a file on every call, so a file the platform
// refreshes (e.g. a Kubernetes projected service account token) stays current.
type File struct {
	// Path is the file holding the token.
	Path string
}

// IDToken implements IDTokenSource; audience is ignored.
func (f *File) IDToken(context.Context, string) (string, error) {
	fh, err := os.Open(f.Path)
	if err != nil {
		return "", fmt.Errorf("client: id token file: %w", err)
	}
	defer func() { _ = fh.Close() }()
	b, err := io.ReadAll(io.LimitReader(fh, maxIDTokenBytes+1))
	if err != nil {
		return "", fmt.Errorf("client: id token file: %w", err)
	}
	if len(b) > maxIDTokenBytes {
		return "", fmt.Errorf("client: id token file %s: too large", f.Path)
	}
	return nonEmpty("id token file "+f.Path, strings.TrimSpace(string(b)))
}

// doJSON sends req and decodes a 200 JSON answer of at most
// maxIDTokenBytes into v.
func doJSON(c *http.Client, req *http.Request, v any) error {
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := readCapped(resp.Body, maxIDTokenBytes)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, snippet(body))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("malformed response: %w", err)
	}
	return nil
}

// readCapped reads r, failing when it holds more than max bytes.
func readCapped(r io.Reader, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("response larger than %d bytes", max)
	}
	return b, nil
}

// snippet is the start of a body, printable, for an error message.
func snippet(b []byte) string {
	const n = 200
	s := strings.ToValidUTF8(string(bytes.TrimSpace(b)), "?")
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}

func nonEmpty(source, tok string) (string, error) {
	if tok == "" {
		return "", fmt.Errorf("client: %s: empty ID token", source)
	}
	return tok, nil
}

// cappedBuffer keeps at most max bytes and remembers if more were written.
type cappedBuffer struct {
	bytes.Buffer
	max      int
	overflow bool
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	if room := c.max - c.Len(); len(p) > room {
		c.overflow = true
		if room > 0 {
			c.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return c.Buffer.Write(p)
}
