package exchange

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tokenbroker/tokenbroker/policy"
	"github.com/tokenbroker/tokenbroker/providers"
)

// TokenVerifier verifies a CI ID token (providers.Registry does).
type TokenVerifier interface {
	Verify(ctx context.Context, raw string) (*providers.Token, error)
}

// Authorizer evaluates trust policies (policy.Set and policy.Holder do).
type Authorizer interface {
	Evaluate(req policy.Request) (*policy.Decision, error)
}

// Signer signs minted JWTs (KeyManager does).
type Signer interface {
	Sign(payload []byte) (jws, kid string, err error)
}

// DefaultMaxTTL caps the lifetime of every minted credential, whatever a
// policy's ttl says.
const DefaultMaxTTL = time.Hour

// DefaultReplayLeeway is added to a token's exp when remembering its jti, so
// a token still accepted within the clock leeway is still known.
const DefaultReplayLeeway = 30 * time.Second

// Config wires an Exchanger. Every interface field is required.
type Config struct {
	// Issuer is the iss of minted JWTs (the broker's public URL).
	Issuer   string
	Verifier TokenVerifier
	Policies Authorizer
	Replay   ReplayCache
	Signer   Signer
	// MaxTTL caps minted lifetimes (zero: DefaultMaxTTL).
	MaxTTL time.Duration
	// ReplayLeeway extends replay entries past the token's exp (zero:
	// DefaultReplayLeeway). It must be at least the clock leeway the
	// Verifier accepts past exp, or a single-use token that still verifies
	// after its entry ended could be replayed.
	ReplayLeeway time.Duration
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// SubjectLimiter, when set, rate-limits exchanges per verified subject
	// (iss + sub); over the limit the answer is 429.
	SubjectLimiter *RateLimiter
	// APIKeys, when set, enables requested_token_type api_key.
	APIKeys *APIKeys
	// ReplayCommit tunes the group commit of replay claims (single-use
	// policies).
	ReplayCommit GroupCommitOptions
}

// Exchanger turns a verified CI ID token into a credential:
// parse, verify, authorize, claim the jti, mint.
type Exchanger struct {
	cfg Config
	// replay commits the jti claims of single-use exchanges in groups.
	replay *GroupCommitter[*ReplayClaim]
}

// NewExchanger checks cfg, fills its defaults and starts the group
// committer of replay claims; Close stops it.
func NewExchanger(cfg Config) (*Exchanger, error) {
	if cfg.Issuer == "" || cfg.Verifier == nil || cfg.Policies == nil || cfg.Replay == nil || cfg.Signer == nil {
		return nil, errors.New("exchange: Config needs Issuer, Verifier, Policies, Replay and Signer")
	}
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = DefaultMaxTTL
	}
	if cfg.ReplayLeeway <= 0 {
		cfg.ReplayLeeway = DefaultReplayLeeway
	}
	// A verifier that accepts tokens until exp + its leeway needs replay
	// entries that live at least as long, or a token could be replayed once
	// its entry has expired.
	if v, ok := cfg.Verifier.(interface{ Leeway() time.Duration }); ok && v.Leeway() > cfg.ReplayLeeway {
		cfg.ReplayLeeway = v.Leeway()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Exchanger{cfg: cfg, replay: NewGroupCommitter(cfg.Replay.ClaimAll, cfg.ReplayCommit)}, nil
}

// Close commits the replay claims already submitted and stops the
// committer; exchanges of single-use tokens fail after it. Call it once the
// HTTP server has shut down.
func (x *Exchanger) Close() error { return x.replay.Close() }

// Response is a successful exchange (RFC 8693 §2.2.1).
type Response struct {
	AccessToken     string `json:"access_token"`
	IssuedTokenType string `json:"issued_token_type"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int64  `json:"expires_in"`
	Scope           string `json:"scope,omitempty"`
}

// Outcome is what an exchange did, for the audit trail: filled as far as
// the exchange got, whether it succeeded or not.
type Outcome struct {
	Token        *providers.Token
	Decision     *policy.Decision
	TokenType    string
	CredentialID string
	ExpiresAt    time.Time
}

// Exchange runs one token exchange. On failure the error is an *Error.
func (x *Exchanger) Exchange(ctx context.Context, req *Request) (*Response, *Outcome, error) {
	out := &Outcome{}
	kind, err := x.checkRequest(req)
	if err != nil {
		return nil, out, err
	}
	out.TokenType = kind
	if out.Token, err = x.verify(ctx, req.SubjectToken); err != nil {
		return nil, out, err
	}
	if err := x.limitSubject(out.Token); err != nil {
		return nil, out, err
	}
	if out.Decision, err = x.authorize(req, out.Token, kind); err != nil {
		return nil, out, err
	}
	if err := x.claimOnce(ctx, out.Token, out.Decision); err != nil {
		return nil, out, err
	}
	resp, err := x.issue(ctx, req, out, kind)
	if err != nil {
		return nil, out, err
	}
	return resp, out, nil
}

// checkRequest validates the RFC 8693 parameters and returns the policy
// grant type asked for.
func (x *Exchanger) checkRequest(req *Request) (string, error) {
	switch {
	case req.GrantType == "":
		return "", newError(CodeInvalidRequest, "missing grant_type", nil)
	case req.GrantType != GrantTypeTokenExchange:
		return "", newError(CodeUnsupportedGrantType, "grant_type must be "+GrantTypeTokenExchange, nil)
	case req.SubjectToken == "":
		return "", newError(CodeInvalidRequest, "missing subject_token", nil)
	case req.SubjectTokenType != TokenTypeIDToken && req.SubjectTokenType != TokenTypeJWT:
		return "", newError(CodeInvalidRequest, "subject_token_type must be "+TokenTypeIDToken+" or "+TokenTypeJWT, nil)
	}
	switch req.RequestedTokenType {
	case "", TokenTypeJWT, TokenTypeAccessToken:
		return policy.GrantJWT, nil
	case TokenTypeAPIKey:
		if x.cfg.APIKeys != nil {
			return policy.GrantAPIKey, nil
		}
		return "", newError(CodeInvalidRequest, "requested_token_type "+TokenTypeAPIKey+" is not enabled on this broker", nil)
	default:
		return "", newError(CodeInvalidRequest, "unsupported requested_token_type", nil)
	}
}

func (x *Exchanger) verify(ctx context.Context, raw string) (*providers.Token, error) {
	tok, err := x.cfg.Verifier.Verify(ctx, raw)
	if err == nil {
		return tok, nil
	}
	if errors.Is(err, providers.ErrUnavailable) {
		e := newError(CodeTemporarilyUnavailable, "the token issuer cannot be reached; retry later", err)
		e.RetryAfter = 10 * time.Second
		return nil, e
	}
	return nil, newError(CodeInvalidRequest, "subject_token is invalid", err)
}

func (x *Exchanger) authorize(req *Request, tok *providers.Token, kind string) (*policy.Decision, error) {
	d, err := x.cfg.Policies.Evaluate(policy.Request{
		Issuer:    tok.Issuer,
		Subject:   tok.Subject,
		Audience:  tok.Audience,
		Claims:    tok.Claims,
		TokenType: kind,
		Targets:   req.Audiences,
		Scopes:    req.Scopes,
	})
	if err == nil {
		return d, nil
	}
	var deny *policy.DenyError
	if !errors.As(err, &deny) {
		return nil, newError(CodeServerError, "policy evaluation failed", err)
	}
	switch deny.Code {
	case policy.DenyTarget:
		return nil, newError(CodeInvalidTarget, "audience not allowed", err)
	case policy.DenyScope:
		return nil, newError(CodeInvalidScope, "scope not allowed", err)
	case policy.DenyTokenType:
		return nil, newError(CodeInvalidRequest, "requested_token_type not allowed", err)
	default:
		return nil, newError(CodeInvalidRequest, "subject_token not allowed by any trust policy", err)
	}
}

// claimOnce burns the token's (iss, jti) for single-use policies. It runs
// after authorization, so a refused token never burns the jti of its
// legitimate holder.
func (x *Exchanger) claimOnce(ctx context.Context, tok *providers.Token, d *policy.Decision) error {
	if !d.SingleUse {
		return nil
	}
	if tok.ID == "" {
		return newError(CodeInvalidRequest, "subject_token has no jti, required by a single-use policy", fmt.Errorf("policy %q is single_use", d.Policy))
	}
	err := x.claim(ctx, tok)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrReplay):
		return newError(CodeInvalidRequest, "subject_token already used", err)
	case errors.Is(err, errClaimIncomplete):
		return newError(CodeServerError, "single-use check failed", err)
	default:
		e := newError(CodeTemporarilyUnavailable, "storage unavailable; retry later", err)
		e.RetryAfter = 5 * time.Second
		return e
	}
}
