package exchange

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/url"
	"strings"
	"unicode/utf8"
)

// Token exchange identifiers (RFC 8693 §2.1, §3) and the broker's own type
// for API keys.
const (
	GrantTypeTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	TokenTypeIDToken       = "urn:ietf:params:oauth:token-type:id_token"
	TokenTypeJWT           = "urn:ietf:params:oauth:token-type:jwt"
	TokenTypeAccessToken   = "urn:ietf:params:oauth:token-type:access_token"
	TokenTypeAPIKey        = "urn:tokenbroker:token-type:api_key"
)

// Limits on the request. The token cap matches providers' default so a
// too-large token is refused before any parsing.
const (
	// MaxBodyBytes caps a POST /token body.
	MaxBodyBytes = 64 << 10
	// MaxAudiences caps the repeated audience parameter.
	MaxAudiences = 16
	// MaxScopes caps the number of space-separated scopes.
	MaxScopes = 64
	// maxParamBytes caps any single parameter but subject_token.
	maxParamBytes = 1024
)

// Request is an RFC 8693 token exchange request.
type Request struct {
	GrantType          string
	SubjectToken       string
	SubjectTokenType   string
	Audiences          []string
	Scopes             []string
	RequestedTokenType string
}

// singleParams may appear at most once (RFC 6749 §3.2: "Request and
// response parameters MUST NOT be included more than once").
var singleParams = []string{"grant_type", "subject_token", "subject_token_type", "scope", "requested_token_type"}

// unsupportedParams are RFC 8693 parameters this broker does not implement;
// they are refused rather than silently ignored, so that a client never
// believes they were honoured.
var unsupportedParams = []string{"resource", "actor_token", "actor_token_type"}

// ParseRequest decodes a token exchange request body of the given content
// type: application/x-www-form-urlencoded (RFC 8693) or application/json.
func ParseRequest(contentType string, body []byte) (*Request, error) {
	if len(body) > MaxBodyBytes {
		return nil, newError(CodeInvalidRequest, "request body too large", nil)
	}
	if !utf8.Valid(body) {
		return nil, newError(CodeInvalidRequest, "request body is not valid UTF-8", nil)
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil, newError(CodeInvalidRequest, "missing or invalid Content-Type", err)
	}
	var vals url.Values
	switch mt {
	case "application/x-www-form-urlencoded":
		vals, err = url.ParseQuery(string(body))
		if err != nil {
			return nil, newError(CodeInvalidRequest, "malformed form body", err)
		}
	case "application/json":
		vals, err = jsonValues(body)
		if err != nil {
			return nil, newError(CodeInvalidRequest, "malformed JSON body", err)
		}
	default:
		return nil, newError(CodeInvalidRequest, "Content-Type must be application/x-www-form-urlencoded or application/json", nil)
	}
	return fromValues(vals)
}

func fromValues(vals url.Values) (*Request, error) {
	for _, p := range singleParams {
		if len(vals[p]) > 1 {
			return nil, newError(CodeInvalidRequest, "parameter "+p+" repeated", nil)
		}
	}
	for _, p := range unsupportedParams {
		if _, ok := vals[p]; ok {
			return nil, newError(CodeInvalidRequest, "parameter "+p+" is not supported", nil)
		}
	}
	for k, vs := range vals {
		if k == "subject_token" {
			continue
		}
		for _, v := range vs {
			if len(v) > maxParamBytes {
				return nil, newError(CodeInvalidRequest, "parameter "+k+" too long", nil)
			}
		}
	}
	r := &Request{
		GrantType:          vals.Get("grant_type"),
		SubjectToken:       vals.Get("subject_token"),
		SubjectTokenType:   vals.Get("subject_token_type"),
		RequestedTokenType: vals.Get("requested_token_type"),
	}
	// Counted before de-duplication, which is quadratic: a body full of
	// audience parameters must not buy a quadratic amount of work.
	if len(vals["audience"]) > MaxAudiences {
		return nil, newError(CodeInvalidRequest, fmt.Sprintf("more than %d audiences", MaxAudiences), nil)
	}
	for _, a := range vals["audience"] {
		if a == "" {
			return nil, newError(CodeInvalidRequest, "empty audience", nil)
		}
		r.Audiences = appendUnique(r.Audiences, a)
	}
	if len(r.Audiences) > MaxAudiences {
		return nil, newError(CodeInvalidRequest, fmt.Sprintf("more than %d audiences", MaxAudiences), nil)
	}
	if s := vals.Get("scope"); s != "" {
		n := 0
		for _, sc := range strings.Split(s, " ") {
			if sc == "" {
				continue
			}
			// Counted before de-duplication, as audiences are.
			if n++; n > MaxScopes {
				return nil, newError(CodeInvalidScope, fmt.Sprintf("more than %d scopes", MaxScopes), nil)
			}
			if !validScopeToken(sc) {
				return nil, newError(CodeInvalidScope, "malformed scope", nil)
			}
			r.Scopes = appendUnique(r.Scopes, sc)
		}
	}
	return r, nil
}

// validScopeToken reports whether s is a scope-token of RFC 6749 §3.3:
// 1*( %x21 / %x23-5B / %x5D-7E ).
func validScopeToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e {
			return false
		}
	}
	return true
}

func appendUnique(list []string, v string) []string {
	for _, x := range list {
		if x == v {
			return list
		}
	}
	return append(list, v)
}

// jsonValues reads a flat JSON object into url.Values. Values must be
// strings, except audience, which may be an array of strings. Duplicate keys
// are refused: encoding/json would silently keep the last one, and two
// parsers disagreeing on which one counts is a classic smuggling vector.
func jsonValues(body []byte) (url.Values, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("body must be a JSON object")
	}
	vals := url.Values{}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key := kt.(string)
		if _, dup := vals[key]; dup {
			return nil, fmt.Errorf("duplicate key %q", key)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		var s string
		if err := json.Unmarshal(raw, &s); err == nil {
			vals[key] = []string{s}
			continue
		}
		var list []string
		if key == "audience" && json.Unmarshal(raw, &list) == nil {
			vals[key] = list
			continue
		}
		return nil, fmt.Errorf("key %q must be a string", key)
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after JSON object")
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New("trailing data after JSON object")
	}
	return vals, nil
}
