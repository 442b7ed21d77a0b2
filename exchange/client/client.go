// Package client is the pipeline side of tokenbroker: it gets the CI
// system's OIDC ID token (IDTokenSource), exchanges it at the broker's
// POST /token (RFC 8693) and hands the result to golang.org/x/oauth2, so a
// deploy job calls its downstream API with
//
//	c, err := client.New(client.Config{BrokerURL: broker, Audience: []string{"deploy-api"}, IDTokenSource: src})
//	httpClient := c.HTTPClient(ctx) // or c.TokenSource(ctx) with other oauth2 users
//
// The package depends on neither the broker nor its storage.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// RFC 8693 identifiers, the same strings as the exchange package's
// constants (repeated so pipelines don't link the broker).
const (
	grantTypeTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	tokenTypeIDToken       = "urn:ietf:params:oauth:token-type:id_token"
	// TokenTypeJWT asks for a signed JWT (the default).
	TokenTypeJWT = "urn:ietf:params:oauth:token-type:jwt"
	// TokenTypeAPIKey asks for an ephemeral tbk_ API key.
	TokenTypeAPIKey = "urn:tokenbroker:token-type:api_key"
)

// Defaults of Config.
const (
	// DefaultExpiryDelta is how long before expiry a cached credential is
	// replaced; for credentials living less than twice as long, half their
	// lifetime is used instead.
	DefaultExpiryDelta = 30 * time.Second
	// defaultTimeout bounds each HTTP call and command.
	defaultTimeout = 30 * time.Second
	// maxResponseBytes caps a POST /token answer.
	maxResponseBytes = 64 << 10
	// headerRequestID is the broker's request id header.
	headerRequestID = "X-Request-Id"
)

// Config configures a Client.
type Config struct {
	// BrokerURL is the broker's base URL; the exchange goes to
	// BrokerURL/token. It must be https, or http on a loopback address.
	BrokerURL string
	// Audience lists the downstream APIs the credential is for (repeatable
	// audience parameter); empty lets the policy decide.
	Audience []string
	// Scopes are requested; empty lets the policy decide.
	Scopes []string
	// TokenType is "jwt" (the default) or "api_key", or a full
	// requested_token_type URI.
	TokenType string
	// IDTokenSource supplies the CI ID token; required.
	IDTokenSource IDTokenSource
	// IDTokenAudience is the audience requested for the CI ID token, where
	// the CI system lets the job choose it; empty means BrokerURL, which is
	// what broker policies name by convention.
	IDTokenAudience string
	// HTTPClient calls the broker; nil means a client with a 30s timeout.
	// Redirects are never followed: the request carries the ID token.
	HTTPClient *http.Client
	// ExpiryDelta is how long before expiry TokenSource exchanges again;
	// zero means DefaultExpiryDelta.
	ExpiryDelta time.Duration
	// InsecureAllowHTTP allows a plain-http broker on a non-loopback host.
	InsecureAllowHTTP bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Client exchanges CI ID tokens at one broker for one kind of credential.
type Client struct {
	cfg       Config
	tokenURL  string
	tokenType string
	http      *http.Client
}

// New checks cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.BrokerURL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("client: broker URL %q is not an absolute http(s) URL", cfg.BrokerURL)
	}
	if u.Scheme == "http" && !cfg.InsecureAllowHTTP && !isLoopback(u.Hostname()) {
		return nil, fmt.Errorf("client: broker URL %q: plain http would expose the ID token; use https", cfg.BrokerURL)
	}
	if cfg.IDTokenSource == nil {
		return nil, errors.New("client: an IDTokenSource is required")
	}
	tt, err := requestedTokenType(cfg.TokenType)
	if err != nil {
		return nil, err
	}
	if cfg.ExpiryDelta <= 0 {
		cfg.ExpiryDelta = DefaultExpiryDelta
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	base := strings.TrimRight(cfg.BrokerURL, "/")
	if cfg.IDTokenAudience == "" {
		cfg.IDTokenAudience = base
	}
	return &Client{cfg: cfg, tokenURL: base + "/token", tokenType: tt, http: noRedirects(cfg.HTTPClient)}, nil
}

// requestedTokenType maps Config.TokenType to the requested_token_type URI.
func requestedTokenType(t string) (string, error) {
	switch t {
	case "", "jwt", TokenTypeJWT:
		return TokenTypeJWT, nil
	case "api_key", TokenTypeAPIKey:
		return TokenTypeAPIKey, nil
	default:
		return "", fmt.Errorf("client: token type %q: want jwt or api_key", t)
	}
}

// IDTokenError reports that the CI ID token could not be obtained; the
// exchange was not attempted.
type IDTokenError struct {
	Err error
}

func (e *IDTokenError) Error() string { return "client: getting the CI ID token: " + e.Err.Error() }

func (e *IDTokenError) Unwrap() error { return e.Err }

// BrokerError is the broker's refusal of an exchange. It unwraps to the
// *oauth2.RetrieveError carrying the RFC 6749 error code and description.
type BrokerError struct {
	// RequestID is the broker's X-Request-Id, which its audit trail records.
	RequestID string
	// StatusCode is the HTTP status.
	StatusCode int
	// RetrieveError has ErrorCode and ErrorDescription set when the broker
	// answered in the RFC 6749 §5.2 shape.
	RetrieveError *oauth2.RetrieveError
}

func (e *BrokerError) Error() string {
	msg := fmt.Sprintf("client: broker refused the exchange: HTTP %d", e.StatusCode)
	if r := e.RetrieveError; r.ErrorCode != "" {
		msg += ": " + r.ErrorCode
		if r.ErrorDescription != "" {
			msg += ": " + r.ErrorDescription
		}
	}
	if e.RequestID != "" {
		msg += " (request id " + e.RequestID + ")"
	}
	return msg
}

func (e *BrokerError) Unwrap() error { return e.RetrieveError }

// Temporary reports whether trying again later may succeed (rate limits,
// outages, server errors).
func (e *BrokerError) Temporary() bool {
	return e.StatusCode == http.StatusTooManyRequests || e.StatusCode >= 500
}

// Exchange gets a CI ID token and exchanges it once. The returned token has
// Extra("issued_token_type"), Extra("scope") and Extra("request_id").
// Failures are an *IDTokenError, a *BrokerError, or a transport error.
func (c *Client) Exchange(ctx context.Context) (*oauth2.Token, error) {
	idTok, err := c.cfg.IDTokenSource.IDToken(ctx, c.cfg.IDTokenAudience)
	if err != nil {
		return nil, &IDTokenError{Err: err}
	}
	form := url.Values{
		"grant_type":           {grantTypeTokenExchange},
		"subject_token":        {idTok},
		"subject_token_type":   {tokenTypeIDToken},
		"requested_token_type": {c.tokenType},
	}
	for _, a := range c.cfg.Audience {
		form.Add("audience", a)
	}
	if len(c.cfg.Scopes) > 0 {
		form.Set("scope", strings.Join(c.cfg.Scopes, " "))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("client: exchange: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	start := c.cfg.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("client: exchange at %s: %w", c.tokenURL, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := readCapped(resp.Body, maxResponseBytes)
	if err != nil {
		return nil, fmt.Errorf("client: exchange at %s: %w", c.tokenURL, err)
	}
	return parseTokenResponse(resp, body, start)
}

// tokenResponse is the RFC 8693 §2.2.1 success body, and the RFC 6749 §5.2
// error body.
type tokenResponse struct {
	AccessToken      string `json:"access_token"`
	IssuedTokenType  string `json:"issued_token_type"`
	TokenType        string `json:"token_type"`
	ExpiresIn        int64  `json:"expires_in"`
	Scope            string `json:"scope"`
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
	ErrorURI         string `json:"error_uri"`
}

// parseTokenResponse turns a POST /token answer into a token or a
// *BrokerError. start is when the request was sent: expires_in counts from
// the response, so counting from the request errs on the early side.
func parseTokenResponse(resp *http.Response, body []byte, start time.Time) (*oauth2.Token, error) {
	rid := resp.Header.Get(headerRequestID)
	var tr tokenResponse
	jsonErr := json.Unmarshal(body, &tr)
	if resp.StatusCode != http.StatusOK {
		re := &oauth2.RetrieveError{Response: resp, Body: body}
		if jsonErr == nil {
			re.ErrorCode, re.ErrorDescription, re.ErrorURI = tr.Error, tr.ErrorDescription, tr.ErrorURI
		}
		return nil, &BrokerError{RequestID: rid, StatusCode: resp.StatusCode, RetrieveError: re}
	}
	bad := func(why string) error {
		return fmt.Errorf("client: malformed broker response (request id %s): %s", rid, why)
	}
	switch {
	case jsonErr != nil:
		return nil, bad(jsonErr.Error())
	case tr.AccessToken == "":
		return nil, bad("no access_token")
	case !strings.EqualFold(tr.TokenType, "bearer"):
		return nil, bad(fmt.Sprintf("token_type %q is not Bearer", tr.TokenType))
	case tr.ExpiresIn < 0:
		return nil, bad("negative expires_in")
	}
	tok := &oauth2.Token{AccessToken: tr.AccessToken, TokenType: "Bearer", ExpiresIn: tr.ExpiresIn}
	if tr.ExpiresIn > 0 {
		tok.Expiry = start.Add(time.Duration(tr.ExpiresIn) * time.Second)
	}
	return tok.WithExtra(map[string]any{
		"issued_token_type": tr.IssuedTokenType,
		"scope":             tr.Scope,
		"request_id":        rid,
	}), nil
}

// noRedirects returns a copy of c (or a default client) that follows no
// redirects: a 307 would re-post the ID token to wherever it points.
func noRedirects(c *http.Client) *http.Client {
	out := &http.Client{Timeout: defaultTimeout}
	if c != nil {
		cp := *c
		out = &cp
	}
	out.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return out
}

// httpClient is c made safe, or the default client.
func httpClient(c *http.Client) *http.Client { return noRedirects(c) }

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
