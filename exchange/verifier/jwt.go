package verifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
)

// jwtAlgorithms are the algorithms the broker can sign with (DESIGN.md
// signing.algorithm); the discovery document narrows them further.
var jwtAlgorithms = []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.EdDSA}

// VerifyJWT verifies a JWT the broker minted:
//  1. the JWS header's typ is at+jwt (RFC 9068 §2.1), which go-oidc does not
//     check: it keeps an ID token or any other JWT the same key might sign
//     from passing as an access token;
//  2. signature (the broker's JWKS), issuer, audience and expiry, by go-oidc;
//  3. the claims are read into an Identity.
func (v *Verifier) VerifyJWT(ctx context.Context, raw string) (*Identity, error) {
	if err := checkTyp(raw); err != nil {
		return nil, err
	}
	idv, err := v.oidcVerifier(ctx)
	if err != nil {
		return nil, err
	}
	tok, err := idv.Verify(ctx, raw)
	if err != nil {
		var exp *oidc.TokenExpiredError
		if errors.As(err, &exp) {
			return nil, invalid("the credential expired", err)
		}
		return nil, invalid("the credential is invalid", err)
	}
	var c jwtClaims
	if err := tok.Claims(&c); err != nil {
		return nil, invalid("malformed claims", err)
	}
	var all map[string]any
	if err := tok.Claims(&all); err != nil {
		return nil, invalid("malformed claims", err)
	}
	id := &Identity{
		Kind:      KindJWT,
		ID:        c.ID,
		Subject:   tok.Subject,
		Audience:  tok.Audience,
		Scopes:    strings.Fields(c.Scope),
		Policy:    c.ClientID,
		Source:    c.Src,
		Claims:    all,
		ExpiresAt: tok.Expiry,
	}
	id.Repository = firstString(all["repository"], c.Src["repository"], c.Src["project_path"])
	return id, nil
}

// jwtClaims are the broker's claims beyond what oidc.IDToken exposes.
type jwtClaims struct {
	ID       string         `json:"jti"`
	Scope    string         `json:"scope"`
	ClientID string         `json:"client_id"`
	Src      map[string]any `json:"src"`
}

// checkTyp parses the JWS header and requires typ at+jwt (or its media type
// form application/at+jwt, RFC 7515 §4.1.9), case-insensitively.
func checkTyp(raw string) error {
	jws, err := jose.ParseSignedCompact(raw, jwtAlgorithms)
	if err != nil {
		return invalid("malformed token", err)
	}
	if len(jws.Signatures) != 1 {
		return invalid("malformed token", errors.New("want exactly one signature"))
	}
	typ, _ := jws.Signatures[0].Protected.ExtraHeaders[jose.HeaderType].(string)
	typ = strings.ToLower(typ)
	if typ != "at+jwt" && typ != "application/at+jwt" {
		return invalid("not an access token", fmt.Errorf("JWT typ %q is not at+jwt", typ))
	}
	return nil
}

// oidcVerifier discovers the broker once and returns the go-oidc verifier.
// A failed discovery is remembered for discoveryRetry. The discovery runs
// outside v.mu, shared by concurrent callers (singleflight), and each caller
// waits for it only as long as its own ctx allows: a slow broker does not
// hold every request on a lock.
func (v *Verifier) oidcVerifier(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	if idv, err := v.discovered(); idv != nil || err != nil {
		return idv, err
	}
	ch := v.discovery.DoChan("discovery", func() (any, error) {
		// Another flight may have finished since the check above.
		if idv, err := v.discovered(); idv != nil || err != nil {
			return idv, err
		}
		// Shared by every waiting caller: not cancelled by the first one,
		// bounded on its own.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), defaultTimeout)
		defer cancel()
		idv, err := v.discover(dctx)
		v.mu.Lock()
		defer v.mu.Unlock()
		if err != nil {
			v.lastFail, v.lastErr = v.cfg.Now(), err
			return nil, err
		}
		v.idVerifier = idv
		return idv, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*oidc.IDTokenVerifier), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: discovery at %s: %w", ErrUnavailable, v.cfg.Issuer, ctx.Err())
	}
}

// discovered returns the verifier of a past discovery, or the error of a
// discovery that failed less than discoveryRetry ago; both nil mean a
// discovery is due.
func (v *Verifier) discovered() (*oidc.IDTokenVerifier, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.idVerifier != nil {
		return v.idVerifier, nil
	}
	if !v.lastFail.IsZero() && v.cfg.Now().Sub(v.lastFail) < discoveryRetry {
		return nil, v.lastErr
	}
	return nil, nil
}

// discover fetches the broker's discovery document and builds the go-oidc
// verifier for it.
func (v *Verifier) discover(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, v.http), v.cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("%w: discovery at %s: %w", ErrUnavailable, v.cfg.Issuer, err)
	}
	var meta struct {
		Algs []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := p.Claims(&meta); err != nil {
		return nil, fmt.Errorf("%w: discovery at %s: %w", ErrUnavailable, v.cfg.Issuer, err)
	}
	// The key set outlives this request: its context carries only the
	// bounded client.
	keyCtx := oidc.ClientContext(context.Background(), v.http)
	return p.VerifierContext(keyCtx, &oidc.Config{
		ClientID:             v.cfg.Audience,
		SupportedSigningAlgs: supportedAlgs(meta.Algs),
		Now:                  v.cfg.Now,
	}), nil
}

// supportedAlgs keeps the advertised algorithms the broker may use; none
// advertised means all of them.
func supportedAlgs(advertised []string) []string {
	var out []string
	for _, a := range jwtAlgorithms {
		if len(advertised) == 0 || contains(advertised, string(a)) {
			out = append(out, string(a))
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// firstString returns the first value that is a non-empty string.
func firstString(vals ...any) string {
	for _, v := range vals {
		if s, ok := v.(string); ok && s != "" {
			return s
		}
	}
	return ""
}

// decodeStrict decodes one JSON object into v; nothing may follow it.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after JSON object")
	}
	return nil
}
