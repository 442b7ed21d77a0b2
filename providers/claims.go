package providers

import (
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// maxNumericDate is 9999-12-31T23:59:59Z: later dates are refused as
// nonsense rather than risking overflow.
const maxNumericDate = 253402300799

// buildToken is step (5) of Verify: the time claims with leeway, sub and
// aud, then the Token. u's claims are the verified payload.
func (r *Registry) buildToken(iss *issuer, u *unverified, kid string) (*Token, error) {
	c := u.claims
	now := r.opts.Now()
	leeway := r.opts.Leeway

	exp, ok, err := numericDate(c, "exp")
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, fmt.Errorf("%w: exp is missing", ErrExpired)
	case now.After(exp.Add(leeway)):
		return nil, fmt.Errorf("%w: exp %s is before %s (leeway %s)", ErrExpired, exp.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), leeway)
	}
	nbf, ok, err := numericDate(c, "nbf")
	switch {
	case err != nil:
		return nil, err
	case ok && nbf.After(now.Add(leeway)):
		return nil, fmt.Errorf("%w: nbf %s is after %s (leeway %s)", ErrNotYetValid, nbf.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), leeway)
	}
	iat, ok, err := numericDate(c, "iat")
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, fmt.Errorf("%w: iat is missing", ErrClaims)
	case iat.After(now.Add(leeway)):
		return nil, fmt.Errorf("%w: iat %s is after %s (leeway %s)", ErrIssuedInFuture, iat.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), leeway)
	case exp.Sub(iat) > r.opts.MaxLifetime:
		return nil, fmt.Errorf("%w: exp - iat is %s, limit %s", ErrLifetime, exp.Sub(iat), r.opts.MaxLifetime)
	}

	sub, ok := c["sub"].(string)
	if !ok || sub == "" {
		return nil, fmt.Errorf("%w: sub is missing or not a string", ErrClaims)
	}
	aud, err := audience(c["aud"])
	if err != nil {
		return nil, err
	}
	var jti string
	if v, present := c["jti"]; present {
		if jti, ok = v.(string); !ok {
			return nil, fmt.Errorf("%w: jti is not a string", ErrClaims)
		}
	}
	return &Token{
		Provider:  iss.name,
		Issuer:    u.iss,
		Subject:   sub,
		Audience:  aud,
		Expiry:    exp,
		IssuedAt:  iat,
		NotBefore: nbf,
		ID:        jti,
		Algorithm: u.alg,
		KeyID:     kid,
		Claims:    c,
	}, nil
}

// numericDate reads an RFC 7519 NumericDate claim: a JSON number of seconds
// since the epoch, fractions allowed. ok is false when the claim is absent.
func numericDate(c map[string]any, name string) (t time.Time, ok bool, err error) {
	v, present := c[name]
	if !present {
		return time.Time{}, false, nil
	}
	n, isNum := v.(json.Number)
	if !isNum {
		return time.Time{}, false, fmt.Errorf("%w: %s is not a number", ErrClaims, name)
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return time.Time{}, false, fmt.Errorf("%w: %s %q is not a valid date", ErrClaims, name, n)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, nil
}

// audience reads aud: a non-empty string or a non-empty array of non-empty
// strings (RFC 7519 §4.1.3).
func audience(v any) ([]string, error) {
	switch a := v.(type) {
	case string:
		if a != "" {
			return []string{a}, nil
		}
	case []any:
		out := make([]string, 0, len(a))
		for _, e := range a {
			s, ok := e.(string)
			if !ok || s == "" {
				return nil, fmt.Errorf("%w: aud holds a value that is not a non-empty string", ErrClaims)
			}
			out = append(out, s)
		}
		if len(out) > 0 {
			return out, nil
		}
	}
	return nil, fmt.Errorf("%w: aud is missing, empty, or not a string or list of strings", ErrClaims)
}
