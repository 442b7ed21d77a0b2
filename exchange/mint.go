package exchange

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"

	"github.com/tokenbroker/tokenbroker/providers"
)

// identityClaims are the CI token claims copied into the minted JWT's src
// claim when present, so a downstream API can tell which pipeline it is
// talking to without a policy having to template them.
var identityClaims = []string{
	// GitHub Actions
	"repository", "repository_id", "repository_owner", "repository_owner_id",
	"ref", "ref_type", "sha", "environment", "event_name", "workflow_ref",
	"job_workflow_ref", "run_id", "run_attempt", "actor", "runner_environment",
	// GitLab CI and others
	"project_path", "project_id", "namespace_path", "namespace_id", "pipeline_id", "job_id",
}

// registeredClaims may not be overwritten by a policy's grant.claims.
var registeredClaims = map[string]bool{
	"iss": true, "sub": true, "aud": true, "exp": true, "iat": true, "nbf": true,
	"jti": true, "scope": true, "client_id": true, "src": true,
}

// mint signs the JWT the decision grants.
func (x *Exchanger) mint(req *Request, out *Outcome) (*Response, error) {
	d, tok := out.Decision, out.Token
	ttl := d.Grant.TTL
	if ttl <= 0 || ttl > x.cfg.MaxTTL {
		ttl = x.cfg.MaxTTL
	}
	now := x.cfg.Now().Truncate(time.Second)
	exp := now.Add(ttl)
	jti := newJTI()
	claims := make(map[string]any, 16)
	for k, v := range d.Grant.Claims {
		if !registeredClaims[k] {
			claims[k] = v
		}
	}
	claims["iss"] = x.cfg.Issuer
	claims["sub"] = tok.Subject
	claims["aud"] = d.Grant.Audience
	claims["iat"] = now.Unix()
	claims["nbf"] = now.Unix()
	claims["exp"] = exp.Unix()
	claims["jti"] = jti
	claims["client_id"] = d.Policy
	if len(d.Grant.Scopes) > 0 {
		claims["scope"] = strings.Join(d.Grant.Scopes, " ")
	}
	claims["src"] = sourceIdentity(tok)
	payload, err := json.Marshal(claims)
	if err != nil {
		return nil, newError(CodeServerError, "internal error", err)
	}
	jws, _, err := x.cfg.Signer.Sign(payload)
	if err != nil {
		return nil, newError(CodeServerError, "internal error", err)
	}
	out.CredentialID, out.ExpiresAt = jti, exp
	issued := TokenTypeJWT
	if req.RequestedTokenType == TokenTypeAccessToken {
		issued = TokenTypeAccessToken
	}
	return &Response{
		AccessToken:     jws,
		IssuedTokenType: issued,
		TokenType:       "Bearer",
		ExpiresIn:       int64(ttl / time.Second),
		Scope:           strings.Join(d.Grant.Scopes, " "),
	}, nil
}

// sourceIdentity is the src claim: who the CI token said the caller was.
func sourceIdentity(tok *providers.Token) map[string]any {
	src := map[string]any{"iss": tok.Issuer, "sub": tok.Subject, "provider": tok.Provider}
	if tok.ID != "" {
		src["jti"] = tok.ID
	}
	for _, c := range identityClaims {
		if v, ok := tok.Claims[c]; ok {
			switch v.(type) {
			case string, json.Number, bool:
				src[c] = v
			}
		}
	}
	return src
}

// newJTI returns 128 random bits, base64url.
func newJTI() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b[:])
}
