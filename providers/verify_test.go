package providers

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
)

func TestVerifyValidToken(t *testing.T) {
	key := newRSAKey(t, "k1")
	ti := newTestIssuer(t, key)
	clock := newFakeClock()
	r := newTestRegistry(t, ti, clock, Options{})
	now := clock.Now()

	claims := with(claimsAt(ti.URL(), now), map[string]any{"aud": []string{"a", "b"}, "run_attempt": 2})
	tok, err := r.Verify(context.Background(), key.sign(t, claims, nil))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	want := &Token{
		Provider:  "ci",
		Issuer:    ti.URL(),
		Subject:   "repo:octo-org/app:ref:refs/heads/main",
		Audience:  []string{"a", "b"},
		Expiry:    time.Unix(now.Add(5*time.Minute).Unix(), 0),
		IssuedAt:  time.Unix(now.Unix(), 0),
		NotBefore: time.Unix(now.Unix(), 0),
		ID:        "jti-1",
		Algorithm: "RS256",
		KeyID:     "k1",
		Claims: map[string]any{
			"iss":                 ti.URL(),
			"sub":                 "repo:octo-org/app:ref:refs/heads/main",
			"aud":                 []any{"a", "b"},
			"iat":                 json.Number(itoa(now.Unix())),
			"nbf":                 json.Number(itoa(now.Unix())),
			"exp":                 json.Number(itoa(now.Add(5 * time.Minute).Unix())),
			"jti":                 "jti-1",
			"repository":          "octo-org/app",
			"repository_owner_id": "1234567",
			"run_attempt":         json.Number("2"),
		},
	}
	if diff := cmp.Diff(want, tok); diff != "" {
		t.Errorf("Verify token (-want +got):\n%s", diff)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// b64json encodes v as base64url JSON, for hand-made tokens.
func b64json(v any) string { return base64.RawURLEncoding.EncodeToString(mustJSON(v)) }

func TestVerifyRefuses(t *testing.T) {
	key := newRSAKey(t, "k1")
	ecKey := newECKey(t, "k1")
	impostor := newRSAKey(t, "k1")
	ti := newTestIssuer(t, key)
	clock := newFakeClock()
	r := newTestRegistry(t, ti, clock, Options{})
	now := clock.Now()
	good := claimsAt(ti.URL(), now)

	pubDER, err := x509.MarshalPKIXPublicKey(key.public().Key)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	hmacSigner, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: pubPEM}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	hdr := func(h map[string]any) *jose.SignerOptions {
		o := &jose.SignerOptions{}
		for k, v := range h {
			o = o.WithHeader(jose.HeaderKey(k), v)
		}
		return o
	}
	noneHeader := b64json(map[string]any{"alg": "none", "typ": "JWT"})
	valid := key.sign(t, good, nil)
	parts := strings.Split(valid, ".")
	deep := strings.Repeat(`{"a":`, 20) + `1` + strings.Repeat(`}`, 20)
	lw := DefaultLeeway

	tests := []struct {
		name string
		raw  string
		want error
	}{
		{"alg none without signature", noneHeader + "." + b64json(good) + ".", ErrMalformed},
		{"alg none with a signature", noneHeader + "." + b64json(good) + ".c2ln", ErrAlgorithm},
		{"HS256 keyed with the public key", signRaw(t, hmacSigner, good), ErrAlgorithm},
		{"crit header", key.sign(t, good, hdr(map[string]any{"crit": []string{"exp"}, "exp": 1})), ErrMalformed},
		{"jku header", key.sign(t, good, hdr(map[string]any{"jku": ti.URL() + "/jwks"})), ErrMalformed},
		{"jwk header", key.sign(t, good, &jose.SignerOptions{EmbedJWK: true}), ErrMalformed},
		{"x5u header", key.sign(t, good, hdr(map[string]any{"x5u": "https://example.com/cert"})), ErrMalformed},
		{"x5c header", key.sign(t, good, hdr(map[string]any{"x5c": []string{"MIIB"}})), ErrMalformed},
		{"b64 header", key.sign(t, good, (&jose.SignerOptions{}).WithBase64(false)), ErrMalformed},
		{"JWE shape", valid + ".a.b", ErrMalformed},
		{"JSON serialisation", `{"payload":"` + parts[1] + `","signatures":[]}`, ErrMalformed},
		{"oversized", key.sign(t, with(good, map[string]any{"pad": strings.Repeat("x", 17<<10)}), nil), ErrMalformed},
		{"padded base64", parts[0] + "=." + parts[1] + "." + parts[2], ErrMalformed},
		{"signed by another key with the same kid", impostor.sign(t, good, nil), ErrSignature},
		{"ES256 under the kid of an RS256 key", ecKey.sign(t, good, nil), ErrUnknownKey},
		{"tampered payload", parts[0] + "." + b64json(with(good, map[string]any{"sub": "repo:evil/app:ref:refs/heads/main"})) + "." + parts[2], ErrSignature},
		{"duplicate claim", key.sign(t, []byte(`{"iss":"`+ti.URL()+`","sub":"a","sub":"b"}`), nil), ErrMalformed},
		{"nesting too deep", key.sign(t, []byte(`{"iss":"`+ti.URL()+`","x":`+deep+`}`), nil), ErrMalformed},
		{"invalid UTF-8", key.sign(t, []byte("{\"iss\":\""+ti.URL()+"\",\"sub\":\"\xff\"}"), nil), ErrMalformed},
		{"iss not a string", key.sign(t, with(good, map[string]any{"iss": 1}), nil), ErrClaims},
		{"sub missing", key.sign(t, with(good, map[string]any{"sub": nil}), nil), ErrClaims},
		{"aud missing", key.sign(t, with(good, map[string]any{"aud": nil}), nil), ErrClaims},
		{"aud a number", key.sign(t, with(good, map[string]any{"aud": 7}), nil), ErrClaims},
		{"exp a string", key.sign(t, with(good, map[string]any{"exp": "soon"}), nil), ErrClaims},
		{"exp missing", key.sign(t, with(good, map[string]any{"exp": nil}), nil), ErrExpired},
		{"iat missing", key.sign(t, with(good, map[string]any{"iat": nil}), nil), ErrClaims},
		{"exp beyond leeway", key.sign(t, with(good, map[string]any{"exp": now.Add(-lw - time.Second).Unix(), "iat": now.Add(-time.Hour).Unix(), "nbf": nil}), nil), ErrExpired},
		{"nbf beyond leeway", key.sign(t, with(good, map[string]any{"nbf": now.Add(lw + time.Second).Unix()}), nil), ErrNotYetValid},
		{"iat beyond leeway", key.sign(t, with(good, map[string]any{"iat": now.Add(lw + time.Second).Unix()}), nil), ErrIssuedInFuture},
		{"lifetime over an hour", key.sign(t, with(good, map[string]any{"exp": now.Add(time.Hour + time.Second).Unix()}), nil), ErrLifetime},
		{"unknown kid", newRSAKey(t, "k2").sign(t, good, nil), ErrUnknownKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.Verify(context.Background(), tt.raw)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestVerifyAlgorithmNotAllowedForIssuer(t *testing.T) {
	key := newRSAKey(t, "k1")
	ti := newTestIssuer(t, key)
	clock := newFakeClock()
	r, err := New([]Config{{Name: "ci", Issuer: ti.URL(), Algorithms: []string{"ES256"}}}, Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Verify(context.Background(), key.sign(t, claimsAt(ti.URL(), clock.Now()), nil))
	if !errors.Is(err, ErrAlgorithm) {
		t.Fatalf("Verify error = %v, want ErrAlgorithm", err)
	}
	if n := ti.discovery.Load(); n != 0 {
		t.Errorf("discovery requests = %d, want 0", n)
	}
}

func TestVerifyLeewayBoundaries(t *testing.T) {
	key := newRSAKey(t, "k1")
	ti := newTestIssuer(t, key)
	clock := newFakeClock()
	r := newTestRegistry(t, ti, clock, Options{MaxLifetime: 10 * time.Minute})
	now := clock.Now()
	good := claimsAt(ti.URL(), now)
	lw := DefaultLeeway

	tests := []struct {
		name    string
		changes map[string]any
		want    error
	}{
		{"exp exactly leeway ago", map[string]any{"exp": now.Add(-lw).Unix(), "iat": now.Add(-5 * time.Minute).Unix()}, nil},
		{"exp a second past leeway", map[string]any{"exp": now.Add(-lw - time.Second).Unix(), "iat": now.Add(-5 * time.Minute).Unix()}, ErrExpired},
		{"nbf exactly leeway ahead", map[string]any{"nbf": now.Add(lw).Unix()}, nil},
		{"nbf a second past leeway", map[string]any{"nbf": now.Add(lw + time.Second).Unix()}, ErrNotYetValid},
		{"iat exactly leeway ahead", map[string]any{"iat": now.Add(lw).Unix()}, nil},
		{"iat a second past leeway", map[string]any{"iat": now.Add(lw + time.Second).Unix()}, ErrIssuedInFuture},
		{"lifetime exactly the maximum", map[string]any{"exp": now.Add(10 * time.Minute).Unix()}, nil},
		{"lifetime a second over", map[string]any{"exp": now.Add(10*time.Minute + time.Second).Unix()}, ErrLifetime},
		{"fractional dates", map[string]any{"iat": json.Number(itoa(now.Unix()) + ".5"), "exp": json.Number(itoa(now.Unix()) + ".5")}, nil},
		{"negative exp", map[string]any{"exp": -1}, ErrClaims},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.Verify(context.Background(), key.sign(t, with(good, tt.changes), nil))
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("Verify error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestVerifyUntrustedIssuerDoesNoIO(t *testing.T) {
	key := newRSAKey(t, "k1")
	trusted := newTestIssuer(t, key)
	stranger := newTestIssuer(t, key)
	clock := newFakeClock()
	r := newTestRegistry(t, trusted, clock, Options{})
	u := trusted.URL()

	for _, iss := range []string{
		stranger.URL(),
		u + "/",
		strings.ToUpper(u[:4]) + u[4:],
		strings.Replace(u, "127.0.0.1", "localhost", 1),
		u + "#",
		u + "/.",
		" " + u,
	} {
		t.Run(iss, func(t *testing.T) {
			_, err := r.Verify(context.Background(), key.sign(t, claimsAt(iss, clock.Now()), nil))
			if !errors.Is(err, ErrUntrustedIssuer) {
				t.Fatalf("Verify error = %v, want ErrUntrustedIssuer", err)
			}
		})
	}
	for name, ti := range map[string]*testIssuer{"trusted": trusted, "stranger": stranger} {
		if n := ti.discovery.Load() + ti.jwks.Load(); n != 0 {
			t.Errorf("%s issuer got %d requests, want 0", name, n)
		}
	}
	if diff := cmp.Diff(map[string]IssuerStats{"ci": {}}, r.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}
