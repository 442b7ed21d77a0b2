package exchange

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/tokenbroker/tokenbroker/policy"
)

// DefaultKeyRetryAfter is the Retry-After of a 503 caused by the store.
const DefaultKeyRetryAfter = 5 * time.Second

// issue mints the credential kind asks for: a JWT or an API key.
func (x *Exchanger) issue(ctx context.Context, req *Request, out *Outcome, kind string) (*Response, error) {
	if kind == policy.GrantAPIKey {
		return x.mintAPIKey(ctx, out)
	}
	return x.mint(req, out)
}

// mintAPIKey makes the API key the decision grants and returns it once it is
// committed to the store.
func (x *Exchanger) mintAPIKey(ctx context.Context, out *Outcome) (*Response, error) {
	d, tok := out.Decision, out.Token
	ttl := d.Grant.TTL
	if ttl <= 0 || ttl > x.cfg.MaxTTL {
		ttl = x.cfg.MaxTTL
	}
	now := x.cfg.Now().Truncate(time.Second)
	exp := now.Add(ttl)
	key, k, err := x.cfg.APIKeys.Issue(ctx, APIKey{
		Subject:   tok.Subject,
		Issuer:    tok.Issuer,
		Policy:    d.Policy,
		Audience:  d.Grant.Audience,
		Scopes:    d.Grant.Scopes,
		Metadata:  d.Grant.Claims,
		CreatedAt: now,
		ExpiresAt: exp,
		Uses:      int64(d.Grant.Uses),
	})
	if errors.Is(err, errAPIKeyText) {
		return nil, newError(CodeInvalidRequest, "subject_token claims cannot be carried by an API key", err)
	}
	if err != nil {
		return nil, unavailable(err)
	}
	out.CredentialID, out.ExpiresAt = k.ID, exp
	return &Response{
		AccessToken:     key,
		IssuedTokenType: TokenTypeAPIKey,
		TokenType:       "Bearer",
		ExpiresIn:       int64(ttl / time.Second),
		Scope:           strings.Join(d.Grant.Scopes, " "),
	}, nil
}

// unavailable is the 503 answer to a store failure.
func unavailable(err error) *Error {
	e := newError(CodeTemporarilyUnavailable, "storage unavailable; retry later", err)
	e.RetryAfter = DefaultKeyRetryAfter
	return e
}
