package verifier

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Key verification codes of POST /v1/keys/verify (DESIGN.md).
const (
	KeyValid         = "VALID"
	KeyNotFound      = "NOT_FOUND"
	KeyExpired       = "EXPIRED"
	KeyRevoked       = "REVOKED"
	KeyUsageExceeded = "USAGE_EXCEEDED"
)

// keyVerifyResponse is the answer of POST /v1/keys/verify.
type keyVerifyResponse struct {
	Valid     bool              `json:"valid"`
	Code      string            `json:"code"`
	KeyID     string            `json:"key_id"`
	Subject   string            `json:"subject"`
	Policy    string            `json:"policy"`
	Audience  []string          `json:"audience"`
	Scopes    []string          `json:"scopes"`
	Metadata  map[string]string `json:"metadata"`
	ExpiresAt time.Time         `json:"expires_at"`
	Remaining *int              `json:"remaining"`
}

// keyEntry is a cached verification.
type keyEntry struct {
	id *Identity
}

// VerifyAPIKey checks an API key with the broker: it must be valid, not
// expired, and for this API's audience. A valid key without a use limit is
// cached for KeyCacheTTL, never past its expiry; a key with remaining uses is
// checked every time, since each check may spend one.
func (v *Verifier) VerifyAPIKey(ctx context.Context, key string) (*Identity, error) {
	if len(key) > maxKeyBytes {
		return nil, invalid("the credential is invalid", errors.New("API key too long"))
	}
	sum := sha256.Sum256([]byte(key))
	cacheKey := string(sum[:])
	now := v.cfg.Now()
	if v.keyCache != nil {
		if e, ok := v.keyCache.Get(cacheKey); ok {
			if now.Before(e.id.ExpiresAt) {
				return e.id, nil
			}
			v.keyCache.Remove(cacheKey)
		}
	}
	res, err := v.askBroker(ctx, key)
	if err != nil {
		return nil, err
	}
	id, err := v.keyIdentity(res, now)
	if err != nil {
		return nil, err
	}
	if v.keyCache != nil && res.Remaining == nil {
		v.keyCache.Add(cacheKey, &keyEntry{id: id})
	}
	return id, nil
}

// maxKeyBytes caps an API key before it is sent anywhere.
const maxKeyBytes = 512

// keyIdentity checks a verify answer and turns it into an Identity.
func (v *Verifier) keyIdentity(res *keyVerifyResponse, now time.Time) (*Identity, error) {
	if !res.Valid || res.Code != KeyValid {
		return nil, invalid(keyCodeText(res.Code), fmt.Errorf("API key: broker says %s", res.Code))
	}
	// The broker said valid; these guard against a broker and verifier that
	// disagree on the clock or a key minted for another API.
	if res.ExpiresAt.IsZero() || !now.Before(res.ExpiresAt) {
		return nil, invalid("the credential expired", errors.New("API key past its expires_at"))
	}
	if !contains(res.Audience, v.cfg.Audience) {
		return nil, invalid("the credential is not for this API", fmt.Errorf("API key audience %q lacks %q", res.Audience, v.cfg.Audience))
	}
	id := &Identity{
		Kind:      KindAPIKey,
		ID:        res.KeyID,
		Subject:   res.Subject,
		Audience:  res.Audience,
		Scopes:    res.Scopes,
		Policy:    res.Policy,
		Metadata:  res.Metadata,
		ExpiresAt: res.ExpiresAt,
		Remaining: res.Remaining,
	}
	id.Repository = res.Metadata["repository"]
	return id, nil
}

func keyCodeText(code string) string {
	switch code {
	case KeyNotFound:
		return "unknown credential"
	case KeyExpired:
		return "the credential expired"
	case KeyRevoked:
		return "the credential was revoked"
	case KeyUsageExceeded:
		return "the credential has no uses left"
	default:
		return "the credential is invalid"
	}
}

// askBroker posts the key to the verify endpoint.
func (v *Verifier) askBroker(ctx context.Context, key string) (*keyVerifyResponse, error) {
	body, _ := json.Marshal(map[string]string{"key": key})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.verifyURL, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := v.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: key verify: %w", ErrUnavailable, err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%w: key verify: %w", ErrUnavailable, err)
	}
	switch st := resp.StatusCode; {
	case st == http.StatusOK:
	case st == http.StatusNotFound, st == http.StatusRequestTimeout, st == http.StatusTooManyRequests, st >= 500:
		// 404: the broker has no verify endpoint (too old) or a wrong URL.
		return nil, fmt.Errorf("%w: key verify: HTTP %d", ErrUnavailable, st)
	case st >= 400:
		// The broker refused the key itself (e.g. malformed).
		return nil, invalid("the credential is invalid", fmt.Errorf("key verify: HTTP %d", st))
	default:
		return nil, fmt.Errorf("%w: key verify: HTTP %d", ErrUnavailable, st)
	}
	res, err := parseKeyVerify(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: key verify: %w", ErrUnavailable, err)
	}
	return res, nil
}

// parseKeyVerify decodes a verify answer strictly.
func parseKeyVerify(raw []byte) (*keyVerifyResponse, error) {
	var res keyVerifyResponse
	if err := decodeStrict(raw, &res); err != nil {
		return nil, fmt.Errorf("malformed answer: %w", err)
	}
	if res.Valid != (res.Code == KeyValid) {
		return nil, fmt.Errorf("inconsistent answer: valid=%t code=%q", res.Valid, res.Code)
	}
	if res.Remaining != nil && *res.Remaining < 0 {
		return nil, fmt.Errorf("negative remaining")
	}
	return &res, nil
}
