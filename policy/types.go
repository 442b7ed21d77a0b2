package policy

import (
	"fmt"
	"time"
)

// Grant types a policy may hand out.
const (
	// GrantJWT mints a signed JWT (RFC 9068 access token).
	GrantJWT = "jwt"
	// GrantAPIKey mints an ephemeral API key.
	GrantAPIKey = "api_key"
)

// Request is what a policy set is asked: may this verified identity have a
// credential of this type for these audiences and scopes?
type Request struct {
	// Issuer, Subject and Audience come from the verified CI token.
	Issuer   string
	Subject  string
	Audience []string
	// Claims are all the verified token's claims (numbers as json.Number).
	Claims map[string]any
	// TokenType is GrantJWT or GrantAPIKey.
	TokenType string
	// Targets are the requested audiences of the credential; empty means
	// every audience of the selected policy's grant.
	Targets []string
	// Scopes are the requested scopes; empty means every scope of the grant.
	Scopes []string
}

// Decision is an allowed request: the selected policy and what to mint.
type Decision struct {
	// Policy is the name of the selected policy.
	Policy string
	// SingleUse reports whether the token's (iss, jti) may be exchanged once only.
	SingleUse bool
	// Grant is what to mint: audience and scopes already narrowed to the
	// request, claims already rendered from the token.
	Grant Grant
	// Candidates names every policy that allowed the request, in selection
	// order (Candidates[0] == Policy), for the audit trail.
	Candidates []string
	// Lifted lists the lint refusals the selected policy lifts with allow:.
	Lifted []string
}

// Grant is a resolved grant.
type Grant struct {
	Type     string
	Audience []string
	Scopes   []string
	TTL      time.Duration
	// Uses is the api_key's number of uses; 0 means unlimited.
	Uses int
	// Claims are rendered values to copy into the minted credential.
	Claims map[string]string
}

// DenyCode says why a request was refused, so the HTTP edge can pick the
// RFC 8693 error code.
type DenyCode int

const (
	// DenyNoMatch: no policy matches the token's identity (invalid_request).
	DenyNoMatch DenyCode = iota + 1
	// DenyGuardrail: a guardrail matched (invalid_request).
	DenyGuardrail
	// DenyTokenType: matching policies grant another credential type (invalid_request).
	DenyTokenType
	// DenyTarget: matching policies do not grant a requested audience (invalid_target).
	DenyTarget
	// DenyScope: matching policies do not grant a requested scope (invalid_scope).
	DenyScope
)

// DenyError is returned by Set.Evaluate for a refused request. Reason is the
// full explanation for the audit trail; it is not meant for the client.
type DenyError struct {
	Code   DenyCode
	Reason string
	// Policy names the guardrail, or the closest policy, where one applies.
	Policy string
}

func (e *DenyError) Error() string { return fmt.Sprintf("policy: denied: %s", e.Reason) }
