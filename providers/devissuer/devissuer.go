// Package devissuer is a real OpenID Connect issuer for development and
// tests. It mints GitHub Actions-shaped ID tokens for anyone who asks, so its
// discovery document says "tokenbroker_development_only": true and the broker
// refuses it unless it runs in development mode.
package devissuer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// TokenLifetime is the lifetime of minted tokens (exp - iat), as GitHub's.
const TokenLifetime = 5 * time.Minute

// maxFormBytes caps the body of POST /token.
const maxFormBytes = 64 << 10

// Options configures an Issuer.
type Options struct {
	// URL is the issuer URL, the iss of every token; required. Start sets it
	// to the address it listens on.
	URL string
	// Algorithm is the signing algorithm, RS256 (the default, like GitHub)
	// or ES256.
	Algorithm string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// ProductionLike omits the development-only marker from the discovery
	// document, so the issuer looks like a real GitHub-shaped issuer. It is
	// for end-to-end tests of `serve`; never use it outside tests.
	ProductionLike bool
}

// Issuer is a development OIDC issuer holding one signing key.
type Issuer struct {
	opts   Options
	signer jose.Signer
	public jose.JSONWebKey
}

// New returns an issuer with a fresh signing key.
func New(opts Options) (*Issuer, error) {
	if opts.URL == "" {
		return nil, errors.New("devissuer: issuer URL is required")
	}
	if u, err := url.Parse(opts.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("devissuer: issuer URL %q is not an absolute http(s) URL", opts.URL)
	}
	if opts.Algorithm == "" {
		opts.Algorithm = string(jose.RS256)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	var key any
	var err error
	switch opts.Algorithm {
	case string(jose.RS256):
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	case string(jose.ES256):
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		return nil, fmt.Errorf("devissuer: algorithm %q not supported (RS256 or ES256)", opts.Algorithm)
	}
	if err != nil {
		return nil, fmt.Errorf("devissuer: generating key: %w", err)
	}
	priv := jose.JSONWebKey{Key: key, Algorithm: opts.Algorithm, Use: "sig"}
	pub := priv.Public()
	thumb, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("devissuer: key thumbprint: %w", err)
	}
	priv.KeyID = base64.RawURLEncoding.EncodeToString(thumb)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(opts.Algorithm), Key: priv},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("devissuer: signer: %w", err)
	}
	return &Issuer{opts: opts, signer: signer, public: priv.Public()}, nil
}

// URL returns the issuer URL.
func (i *Issuer) URL() string { return i.opts.URL }

// KeyID returns the kid of the signing key.
func (i *Issuer) KeyID() string { return i.public.KeyID }

// Handler serves discovery at /.well-known/openid-configuration, the key set
// at /.well-known/jwks and the mint endpoint POST /token, each below the
// issuer URL's path (so an issuer http://HOST/org/ID serves
// /org/ID/.well-known/openid-configuration, as CircleCI's does).
func (i *Issuer) Handler() http.Handler {
	base := i.basePath()
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+base+"/.well-known/openid-configuration", i.serveDiscovery)
	mux.HandleFunc("GET "+base+"/.well-known/jwks", i.serveJWKS)
	mux.HandleFunc("POST "+base+"/token", i.serveToken)
	return mux
}

// basePath is the issuer URL's path without a trailing slash.
func (i *Issuer) basePath() string {
	u, err := url.Parse(i.opts.URL)
	if err != nil { // New validated the URL
		return ""
	}
	return strings.TrimSuffix(u.EscapedPath(), "/")
}

// serveDiscovery serves the OpenID Connect discovery document.
func (i *Issuer) serveDiscovery(w http.ResponseWriter, _ *http.Request) {
	base := strings.TrimSuffix(i.opts.URL, "/")
	doc := map[string]any{
		"issuer":                                i.opts.URL,
		"jwks_uri":                              base + "/.well-known/jwks",
		"subject_types_supported":               []string{"public", "pairwise"},
		"response_types_supported":              []string{"id_token"},
		"id_token_signing_alg_values_supported": []string{i.opts.Algorithm},
		"scopes_supported":                      []string{"openid"},
		"claims_supported":                      claimNames,
	}
	if !i.opts.ProductionLike {
		doc["tokenbroker_development_only"] = true
	}
	writeJSON(w, doc)
}

// serveJWKS serves the public key set.
func (i *Issuer) serveJWKS(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{i.public}})
}

// serveToken mints a token from form fields: audience, and any claim of
// claimNames as an override.
func (i *Issuer) serveToken(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "devissuer: bad form: "+err.Error(), http.StatusBadRequest)
		return
	}
	overrides := map[string]any{}
	if aud := r.PostForm["audience"]; len(aud) == 1 {
		overrides["aud"] = aud[0]
	} else if len(aud) > 1 {
		overrides["aud"] = aud
	}
	for _, name := range claimNames {
		if v := r.PostForm.Get(name); v != "" {
			overrides[name] = v
		}
	}
	raw, err := i.Mint(overrides)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprint(w, raw)
}

// Mint signs a token: realistic GitHub Actions claims for a push to main of
// octo-org/app, overridden by claims. sub, repository_owner, ref_type,
// workflow_ref and job_workflow_ref follow repository, ref, environment and
// event_name unless given. A claim set to nil is removed, so tests can mint
// tokens lacking exp, sub, ...
func (i *Issuer) Mint(claims map[string]any) (string, error) {
	c, err := i.claimsFor(claims)
	if err != nil {
		return "", err
	}
	return i.sign(c)
}

// MintClaims signs exactly the given claims, with no GitHub defaults: only
// iss, iat, nbf, exp and jti are filled in when absent, so tests can mimic
// any CI provider's token. A claim set to nil is removed.
func (i *Issuer) MintClaims(claims map[string]any) (string, error) {
	jti, err := randomID()
	if err != nil {
		return "", err
	}
	now := i.opts.Now().Unix()
	c := map[string]any{
		"iss": i.opts.URL,
		"jti": jti,
		"iat": now,
		"nbf": now,
		"exp": now + int64(TokenLifetime.Seconds()),
	}
	for k, v := range claims {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return i.sign(c)
}

// sign serialises and signs a claim set.
func (i *Issuer) sign(c map[string]any) (string, error) {
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("devissuer: claims: %w", err)
	}
	jws, err := i.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("devissuer: signing: %w", err)
	}
	return jws.CompactSerialize()
}

// writeJSON writes v as a JSON response.
func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// Start listens on addr, which must be a loopback address (the mint
// endpoint gives tokens to anyone who can reach it), and serves an issuer
// whose URL is http://ADDR. opts.URL is ignored. Stop it with
// server.Close or server.Shutdown.
func Start(addr string, opts Options) (*Issuer, *http.Server, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("devissuer: address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, nil, fmt.Errorf("devissuer: address %q is not a loopback address", addr)
	}
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("devissuer: %w", err)
	}
	opts.URL = "http://" + ln.Addr().String()
	iss, err := New(opts)
	if err != nil {
		ln.Close()
		return nil, nil, err
	}
	srv := &http.Server{Handler: iss.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return iss, srv, nil
}
