package providers

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// maxJSONDepth bounds the nesting of objects and arrays in a token's header
// and payload, so a hostile token cannot make the decoder recurse deeply.
const maxJSONDepth = 16

// forbiddenHeaders are JWS header parameters that are refused outright.
// crit: extensions we do not implement must not be silently ignored (RFC 7515
// §4.1.11). jwk, jku, x5u, x5c: a token must never choose its own
// verification key or where to fetch it (CVE-2018-0114 and friends); keys come
// only from the configured issuer's JWKS. b64: unencoded payloads (RFC 7797)
// change what is signed. x5t is allowed: it is only a hint that some issuers
// (Microsoft's) send next to kid, and the key still comes from the JWKS.
var forbiddenHeaders = []string{"crit", "jwk", "jku", "x5u", "x5c", "b64"}

// unverified is a compact JWS split and decoded, before any signature check.
// Nothing in it may be trusted except to select a configured issuer.
type unverified struct {
	alg    string
	kid    string
	iss    string
	claims map[string]any
}

// b64 is the strict unpadded base64url decoder: padding, the standard
// alphabet and non-zero trailing bits are refused, so one token has one
// encoding.
var b64 = base64.RawURLEncoding.Strict()

// parseUnverified is step (1) and the first half of step (2) of Verify: it
// splits a compact JWS, decodes and checks the header, and decodes the
// payload into claims. It does no cryptography and no I/O.
func parseUnverified(raw string, maxBytes int) (*unverified, error) {
	if len(raw) > maxBytes {
		return nil, fmt.Errorf("%w: token is %d bytes, limit %d", ErrMalformed, len(raw), maxBytes)
	}
	// Only the compact serialisation: JSON serialisation starts with '{' and
	// has no dots in the right places; JWE has five parts.
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: compact JWS needs 3 parts, got %d", ErrMalformed, len(parts))
	}
	if parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return nil, fmt.Errorf("%w: empty JWS part", ErrMalformed)
	}
	headerJSON, err := b64.DecodeString(parts[0])
	if err != nil {
		return nil, fmt.Errorf("%w: header is not base64url: %w", ErrMalformed, err)
	}
	header, err := decodeObject(headerJSON)
	if err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrMalformed, err)
	}
	u := &unverified{}
	if u.alg, u.kid, err = checkHeader(header); err != nil {
		return nil, err
	}
	if _, err := b64.DecodeString(parts[2]); err != nil {
		return nil, fmt.Errorf("%w: signature is not base64url: %w", ErrMalformed, err)
	}
	payload, err := b64.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("%w: payload is not base64url: %w", ErrMalformed, err)
	}
	if u.claims, err = decodeObject(payload); err != nil {
		return nil, fmt.Errorf("%w: payload: %w", ErrMalformed, err)
	}
	iss, ok := u.claims["iss"].(string)
	if !ok || iss == "" {
		return nil, fmt.Errorf("%w: iss is missing or not a string", ErrClaims)
	}
	u.iss = iss
	return u, nil
}

// checkHeader refuses forbidden header parameters and returns alg and kid.
func checkHeader(h map[string]any) (alg, kid string, err error) {
	for _, name := range forbiddenHeaders {
		if _, ok := h[name]; ok {
			return "", "", fmt.Errorf("%w: header %q is not accepted", ErrMalformed, name)
		}
	}
	alg, ok := h["alg"].(string)
	if !ok || alg == "" {
		return "", "", fmt.Errorf("%w: header alg is missing or not a string", ErrMalformed)
	}
	if v, present := h["kid"]; present {
		if kid, ok = v.(string); !ok {
			return "", "", fmt.Errorf("%w: header kid is not a string", ErrMalformed)
		}
	}
	return alg, kid, nil
}

// decodeObject decodes one JSON object with numbers kept as json.Number. It
// refuses invalid UTF-8, nesting deeper than maxJSONDepth, a key repeated in
// the same object (RFC 7515 §5.2 and RFC 7519 §4 allow refusing them, and two
// parsers reading different values is a classic confusion), and trailing data.
func decodeObject(data []byte) (map[string]any, error) {
	if !utf8.Valid(data) {
		return nil, errors.New("invalid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	obj, err := decodeObjectBody(dec, 1)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data after JSON object")
	}
	return obj, nil
}

// decodeObjectBody reads the members of an object whose '{' was consumed.
func decodeObjectBody(dec *json.Decoder, depth int) (map[string]any, error) {
	obj := map[string]any{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("invalid JSON: %w", err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, errors.New("invalid JSON: object key is not a string")
		}
		if _, dup := obj[key]; dup {
			return nil, fmt.Errorf("duplicate key %q", key)
		}
		v, err := decodeValue(dec, depth)
		if err != nil {
			return nil, err
		}
		obj[key] = v
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	return obj, nil
}

// decodeValue reads one JSON value at the given nesting depth.
func decodeValue(dec *json.Decoder, depth int) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil // string, json.Number, bool or nil
	}
	if depth >= maxJSONDepth {
		return nil, fmt.Errorf("JSON nested deeper than %d", maxJSONDepth)
	}
	switch d {
	case '{':
		return decodeObjectBody(dec, depth+1)
	case '[':
		arr := []any{}
		for dec.More() {
			v, err := decodeValue(dec, depth+1)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		if _, err := dec.Token(); err != nil { // the closing ']'
			return nil, fmt.Errorf("invalid JSON: %w", err)
		}
		return arr, nil
	default:
		return nil, fmt.Errorf("invalid JSON: unexpected %q", d)
	}
}
