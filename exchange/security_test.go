package exchange_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/tokenbroker/tokenbroker/exchange"
	"github.com/tokenbroker/tokenbroker/providers"
)

// securityCase is one hostile request and the broker's exact answer.
type securityCase struct {
	name   string
	token  string // the subject_token, checked never to be echoed
	method string // default POST
	ctype  string // default form
	body   string // default form(token)
	status int
	code   string
	// fetches allows outbound requests (to the token's own configured
	// issuer only); every other case must cause none at all.
	fetches bool
}

// hostileIssuer serves a misbehaving discovery document or JWKS.
func hostileIssuer(t *testing.T, h func(base string, w http.ResponseWriter, r *http.Request)) *httptest.Server {
	t.Helper()
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h(srv.URL, w, r) }))
	t.Cleanup(srv.Close)
	return srv
}

// stall blocks a handler until the client gives up.
func stall(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-time.After(20 * time.Second):
	}
}

// TestSecurity runs hostile requests through the whole broker (HTTP layer,
// providers registry, policies, SQLite store). Each is refused with the
// exact status and RFC 6749 error code; nothing is minted, the audit trail
// records a refusal, the response never echoes the token, and no request
// leaves the broker unless the case is about its configured issuer.
func TestSecurity(t *testing.T) {
	clk := newClock()
	gh := newCIIssuer(t, "k1", clk.Now)
	other := newCIIssuer(t, "k1", clk.Now) // another trusted issuer, same kid
	var trapHits atomic.Int64
	trap := hostileIssuer(t, func(_ string, w http.ResponseWriter, _ *http.Request) { trapHits.Add(1) })
	trapHost := strings.TrimPrefix(trap.URL, "http://")

	discoveryOK := func(base string, w http.ResponseWriter) {
		writeJSONDoc(w, map[string]any{"issuer": base, "jwks_uri": base + "/keys"})
	}
	huge := strings.Repeat(" ", 2<<20)
	mismatch := hostileIssuer(t, func(_ string, w http.ResponseWriter, _ *http.Request) {
		writeJSONDoc(w, map[string]any{"issuer": gh.URL(), "jwks_uri": gh.URL() + "/keys"})
	})
	redirect := hostileIssuer(t, func(_ string, w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, trap.URL+r.URL.Path, http.StatusFound)
	})
	hugeDisco := hostileIssuer(t, func(_ string, w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("{" + huge + "}")) })
	slowDisco := hostileIssuer(t, func(_ string, _ http.ResponseWriter, r *http.Request) { stall(r) })
	hugeJWKS := hostileIssuer(t, func(base string, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/keys" {
			_, _ = w.Write([]byte(`{"keys":[]` + huge + "}"))
			return
		}
		discoveryOK(base, w)
	})
	slowJWKS := hostileIssuer(t, func(base string, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/keys" {
			stall(r)
			return
		}
		discoveryOK(base, w)
	})
	generic := func(name string, s *httptest.Server) providers.Config {
		return providers.Config{Name: name, Issuer: s.URL}
	}
	b := newBroker(t, gh, brokerOptions{
		clock: clk,
		providers: []providers.Config{
			{Name: "other", Issuer: other.URL()},
			generic("mismatch", mismatch), generic("redirect", redirect),
			generic("huge-discovery", hugeDisco), generic("slow-discovery", slowDisco),
			generic("huge-jwks", hugeJWKS), generic("slow-jwks", slowJWKS),
		},
		// A long cooldown: after the warm-up fetch, an unknown kid costs no fetch.
		regOpts: providers.Options{FetchTimeout: 500 * time.Millisecond, RefreshCooldown: time.Hour},
	})
	// Control: a valid token is exchanged (and warms the issuer's keys).
	if rec := b.exchange(gh.token(t, nil)); rec.Code != http.StatusOK {
		t.Fatalf("control exchange: %d %s", rec.Code, rec.Body)
	}

	attacker, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	valid := func() map[string]any { return gh.claims(nil) }
	payload := func(over map[string]any) []byte { return mustJSON(t, gh.claims(over)) }
	good := gh.token(t, nil)
	parts := strings.Split(good, ".")
	forged := func(header map[string]any) string { return signRS256(t, attacker, header, payload(nil)) }
	withIss := func(iss string) string { return gh.token(t, map[string]any{"iss": iss}) }
	port, _ := strconv.Atoi(gh.URL()[strings.LastIndex(gh.URL(), ":")+1:])
	host := "127.0.0.1:" + strconv.Itoa(port)
	replayed := gh.token(t, nil)
	if rec := b.exchange(replayed); rec.Code != http.StatusOK {
		t.Fatalf("first use of the replayed token: %d %s", rec.Code, rec.Body)
	}
	rawPayload := string(payload(nil))

	const bad, invalid, unavailable = http.StatusBadRequest, exchange.CodeInvalidRequest, exchange.CodeTemporarilyUnavailable
	cases := []securityCase{
		// RFC 8725 §3.1, §2.1: algorithm confusion.
		{name: "alg none", token: unsigned(t, "none", valid()), status: bad, code: invalid},
		{name: "alg none with a signature", token: unsigned(t, "none", valid()) + "c2ln", status: bad, code: invalid},
		{name: "alg None with a signature", token: unsigned(t, "None", valid()) + "c2ln", status: bad, code: invalid},
		{name: "alg NONE with a signature", token: unsigned(t, "NONE", valid()) + "c2ln", status: bad, code: invalid},
		{name: "alg nOnE with a signature", token: unsigned(t, "nOnE", valid()) + "c2ln", status: bad, code: invalid},
		{name: "alg empty with a signature", token: unsigned(t, "", valid()) + "c2ln", status: bad, code: invalid},
		{name: "alg missing", token: b64([]byte(`{"typ":"JWT"}`)) + "." + b64(payload(nil)) + ".c2ln", status: bad, code: invalid},
		{name: "HS256 keyed with the issuer's public key", token: hmacSigned(t, "HS256", &gh.key.PublicKey, gh.header(map[string]any{"alg": "HS256"}), payload(nil)), status: bad, code: invalid},
		{name: "HS384 keyed with the issuer's public key", token: hmacSigned(t, "HS384", &gh.key.PublicKey, gh.header(map[string]any{"alg": "HS384"}), payload(nil)), status: bad, code: invalid},
		{name: "ES256, an algorithm the issuer does not use", token: joseSigned(t, jose.ES256, ecKey, "k1", payload(nil)), status: bad, code: invalid},
		{name: "PS256 with the issuer's own key", token: joseSigned(t, jose.PS256, gh.key, "k1", payload(nil)), status: bad, code: invalid},
		// Signatures.
		{name: "signature truncated", token: good[:len(good)-10], status: bad, code: invalid},
		{name: "signature empty", token: parts[0] + "." + parts[1] + ".", status: bad, code: invalid},
		{name: "signature from a foreign key with the issuer's kid", token: forged(gh.header(nil)), status: bad, code: invalid},
		{name: "signature from another trusted issuer's key with matching kid", token: signRS256(t, other.key, gh.header(nil), payload(nil)), status: bad, code: invalid},
		{name: "signature of another token spliced in", token: parts[0] + "." + b64(payload(map[string]any{"sub": "repo:octo-org/app:environment:dev"})) + "." + parts[2], status: bad, code: invalid},
		// RFC 8725 §3.10: the token never chooses its key or where to fetch it.
		{name: "jwk header with the attacker's key", token: forged(gh.header(map[string]any{"jwk": &jose.JSONWebKey{Key: &attacker.PublicKey, KeyID: "k1"}})), status: bad, code: invalid},
		{name: "jku header", token: forged(gh.header(map[string]any{"jku": trap.URL + "/jwks"})), status: bad, code: invalid},
		{name: "x5u header", token: forged(gh.header(map[string]any{"x5u": trap.URL + "/cert.pem"})), status: bad, code: invalid},
		{name: "x5c header", token: forged(gh.header(map[string]any{"x5c": []string{selfSignedDER(t, attacker)}})), status: bad, code: invalid},
		{name: "kid a path", token: forged(gh.header(map[string]any{"kid": "../../../../etc/passwd"})), status: bad, code: invalid},
		{name: "kid SQL", token: forged(gh.header(map[string]any{"kid": "k1' OR '1'='1"})), status: bad, code: invalid},
		{name: "kid huge", token: forged(gh.header(map[string]any{"kid": strings.Repeat("k", 8<<10)})), status: bad, code: invalid},
		{name: "kid empty", token: forged(gh.header(map[string]any{"kid": ""})), status: bad, code: invalid},
		{name: "kid not a string", token: forged(gh.header(map[string]any{"kid": 1})), status: bad, code: invalid},
		{name: "crit header, issuer-signed", token: gh.signed(t, gh.header(map[string]any{"crit": []string{"exp"}, "exp": 1}), payload(nil)), status: bad, code: invalid},
		{name: "b64 false with crit, issuer-signed", token: gh.signed(t, gh.header(map[string]any{"b64": false, "crit": []string{"b64"}}), payload(nil)), status: bad, code: invalid},
		{name: "b64 false alone, issuer-signed", token: gh.signed(t, gh.header(map[string]any{"b64": false}), payload(nil)), status: bad, code: invalid},
		// Serialisations other than compact JWS.
		{name: "JWS JSON serialisation, general", token: joseJSON(t, gh, false), status: bad, code: invalid},
		{name: "JWS JSON serialisation, flattened", token: joseJSON(t, gh, true), status: bad, code: invalid},
		{name: "JWE of the claims", token: encrypted(t, &gh.key.PublicKey, payload(nil), ""), status: bad, code: invalid},
		{name: "JWE nesting a valid token", token: encrypted(t, &gh.key.PublicKey, []byte(gh.token(t, nil)), "JWT"), status: bad, code: invalid},
		{name: "JWS nesting a valid token", token: gh.signed(t, gh.header(map[string]any{"cty": "JWT"}), []byte(gh.token(t, nil))), status: bad, code: invalid},
		// Issuers: only configured ones, byte for byte, never fetched otherwise.
		{name: "iss untrusted", token: withIss("https://evil.example.com"), status: bad, code: invalid},
		{name: "iss with a trailing slash", token: withIss(gh.URL() + "/"), status: bad, code: invalid},
		{name: "iss in other case", token: withIss("HTTP://" + host), status: bad, code: invalid},
		{name: "iss on another port", token: withIss("http://127.0.0.1:" + strconv.Itoa(port+1)), status: bad, code: invalid},
		{name: "iss with userinfo", token: withIss("http://user:pw@" + host), status: bad, code: invalid},
		{name: "iss with unicode look-alike", token: withIss("http://127.0.0.1\uff1a" + strconv.Itoa(port)), status: bad, code: invalid},
		{name: "iss with a zero-width space", token: withIss(gh.URL() + "\u200b"), status: bad, code: invalid},
		{name: "iss with leading whitespace", token: withIss(" " + gh.URL()), status: bad, code: invalid},
		{name: "iss with trailing newline", token: withIss(gh.URL() + "\n"), status: bad, code: invalid},
		{name: "iss the cloud metadata address", token: withIss("http://169.254.169.254/latest/meta-data"), status: bad, code: invalid},
		{name: "iss an internal host", token: withIss(trap.URL), status: bad, code: invalid},
		{name: "iss localhost", token: withIss("http://localhost:" + strings.Split(trapHost, ":")[1]), status: bad, code: invalid},
		{name: "iss a file URL", token: withIss("file:///etc/passwd"), status: bad, code: invalid},
		{name: "iss not a string", token: withIss2(t, gh, []string{gh.URL()}), status: bad, code: invalid},
		// Configured issuers that misbehave: bounded, refused, never followed.
		{name: "discovery issuer differs", token: foreignIss(t, mismatch), status: http.StatusServiceUnavailable, code: unavailable, fetches: true},
		{name: "discovery redirects off the issuer", token: foreignIss(t, redirect), status: http.StatusServiceUnavailable, code: unavailable, fetches: true},
		{name: "discovery huge", token: foreignIss(t, hugeDisco), status: http.StatusServiceUnavailable, code: unavailable, fetches: true},
		{name: "discovery slow", token: foreignIss(t, slowDisco), status: http.StatusServiceUnavailable, code: unavailable, fetches: true},
		{name: "JWKS huge", token: foreignIss(t, hugeJWKS), status: http.StatusServiceUnavailable, code: unavailable, fetches: true},
		{name: "JWKS slow", token: foreignIss(t, slowJWKS), status: http.StatusServiceUnavailable, code: unavailable, fetches: true},
		// Audiences (the policy's audience must be in aud, alone).
		{name: "aud wrong", token: gh.token(t, map[string]any{"aud": "https://evil.test"}), status: bad, code: invalid},
		{name: "aud missing", token: gh.token(t, map[string]any{"aud": nil}), status: bad, code: invalid},
		{name: "aud with an extra value", token: gh.token(t, map[string]any{"aud": []string{brokerURL, "https://other.test"}}), status: bad, code: invalid},
		{name: "audience parameter beyond the grant", body: form(gh.token(t, nil)) + "&audience=admin-api", status: bad, code: exchange.CodeInvalidTarget},
		{name: "scope beyond the grant", body: form(gh.token(t, nil)) + "&scope=deploy:prod+admin", status: bad, code: exchange.CodeInvalidScope},
		// Time claims (leeway 30s).
		{name: "exp passed", token: gh.token(t, map[string]any{"iat": clk.Now().Unix() - 600, "nbf": clk.Now().Unix() - 600, "exp": clk.Now().Unix() - 60}), status: bad, code: invalid},
		{name: "exp missing", token: gh.token(t, map[string]any{"exp": nil}), status: bad, code: invalid},
		{name: "nbf in the future", token: gh.token(t, map[string]any{"nbf": clk.Now().Unix() + 120}), status: bad, code: invalid},
		{name: "iat in the future", token: gh.token(t, map[string]any{"iat": clk.Now().Unix() + 120, "exp": clk.Now().Unix() + 400}), status: bad, code: invalid},
		{name: "lifetime over the maximum", token: gh.token(t, map[string]any{"exp": clk.Now().Unix() + 2*3600}), status: bad, code: invalid},
		// Replay (single use is the default).
		{name: "jti replayed", token: replayed, status: bad, code: invalid},
		{name: "jti missing under single use", token: gh.token(t, map[string]any{"jti": nil}), status: bad, code: invalid},
		// Payload encoding and claim types.
		{name: "duplicate sub in the payload", token: gh.signed(t, gh.header(nil), []byte(`{"sub":"repo:evil/x:ref:refs/heads/main",`+rawPayload[1:])), status: bad, code: invalid},
		{name: "invalid UTF-8 in a claim", token: gh.signed(t, gh.header(nil), bytes.Replace([]byte(rawPayload), []byte(`"octo-org/app"`), []byte("\"octo\xff\""), 1)), status: bad, code: invalid},
		{name: "deeply nested claim", token: gh.signed(t, gh.header(nil), []byte(`{"x":`+strings.Repeat("[", 200)+strings.Repeat("]", 200)+","+rawPayload[1:])), status: bad, code: invalid},
		{name: "sub a number", token: gh.token(t, map[string]any{"sub": 42}), status: bad, code: invalid},
		{name: "aud a number", token: gh.token(t, map[string]any{"aud": 7}), status: bad, code: invalid},
		{name: "exp a string", token: gh.token(t, map[string]any{"exp": "tomorrow"}), status: bad, code: invalid},
		{name: "jti a number", token: gh.token(t, map[string]any{"jti": 12345}), status: bad, code: invalid},
		{name: "payload not an object", token: gh.signed(t, gh.header(nil), []byte(`["iss"]`)), status: bad, code: invalid},
		// Size and shape of the request.
		{name: "token oversized", token: gh.signed(t, gh.header(map[string]any{"pad": strings.Repeat("p", 20<<10)}), payload(nil)), status: bad, code: invalid},
		{name: "body oversized", body: form(good) + "&pad=" + strings.Repeat("a", exchange.MaxBodyBytes), status: bad, code: invalid},
		{name: "subject_token repeated", body: form(gh.token(t, nil)) + "&subject_token=" + url.QueryEscape(forged(gh.header(nil))), status: bad, code: invalid},
		{name: "grant_type repeated", body: form(gh.token(t, nil)) + "&grant_type=" + exchange.GrantTypeTokenExchange, status: bad, code: invalid},
		{name: "JSON body with duplicate subject_token", ctype: "application/json", body: `{"grant_type":"` + exchange.GrantTypeTokenExchange + `","subject_token_type":"` + exchange.TokenTypeIDToken + `","subject_token":"x","subject_token":"` + gh.token(t, nil) + `"}`, status: bad, code: invalid},
		{name: "GET instead of POST", method: http.MethodGet, status: http.StatusMethodNotAllowed, code: invalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			checkRefused(t, b, tc, &trapHits)
		})
	}
}

// checkRefused sends one case and asserts the broker's exact refusal.
func checkRefused(t *testing.T, b *broker, tc securityCase, trapHits *atomic.Int64) {
	t.Helper()
	method, ctype, body := tc.method, tc.ctype, tc.body
	if method == "" {
		method = http.MethodPost
	}
	if ctype == "" {
		ctype = "application/x-www-form-urlencoded"
	}
	if body == "" && method == http.MethodPost {
		body = form(tc.token)
	}
	events, outbound, traps := b.audit.len(), b.outbound.Total(), trapHits.Load()
	req := httptest.NewRequest(method, "/token", strings.NewReader(body))
	req.Header.Set("Content-Type", ctype)
	rec := httptest.NewRecorder()
	b.h.ServeHTTP(rec, req)

	a := decode(t, rec)
	if rec.Code != tc.status || a.Error != tc.code {
		t.Errorf("got %d %q, want %d %q; body %s", rec.Code, a.Error, tc.status, tc.code, rec.Body)
	}
	if a.AccessToken != "" || strings.Contains(rec.Body.String(), "access_token") {
		t.Errorf("something was minted: %s", rec.Body)
	}
	if tc.token != "" && strings.Contains(rec.Body.String(), tc.token) {
		t.Errorf("the response echoes the token")
	}
	if tc.status == http.StatusServiceUnavailable && rec.Header().Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	evs := b.audit.since(events)
	if method == http.MethodPost && len(evs) != 1 {
		t.Errorf("%d audit events, want 1", len(evs))
	}
	for _, ev := range evs {
		if ev.Outcome == exchange.OutcomeAllowed || ev.Reason == "" {
			t.Errorf("audit event %q with reason %q", ev.Outcome, ev.Reason)
		}
	}
	if n := trapHits.Load() - traps; n != 0 {
		t.Errorf("%d requests reached an address named by the token", n)
	}
	if n := b.outbound.Total() - outbound; n != 0 && !tc.fetches {
		t.Errorf("%d outbound requests", n)
	}
}

// unsigned is a token with the given alg and no signature (RFC 7519 §6).
func unsigned(t *testing.T, alg string, claims map[string]any) string {
	return b64(mustJSON(t, map[string]any{"alg": alg, "typ": "JWT", "kid": "k1"})) + "." + b64(mustJSON(t, claims)) + "."
}

// hmacSigned signs with HMAC keyed by the PKIX DER of a public key: the
// classic confusion where a verifier uses the RSA public key as HS secret.
func hmacSigned(t *testing.T, alg string, pub *rsa.PublicKey, header map[string]any, payload []byte) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	input := b64(mustJSON(t, header)) + "." + b64(payload)
	h := hmac.New(sha256.New, der)
	if alg == "HS384" {
		h = hmac.New(sha384, der)
	}
	h.Write([]byte(input))
	return input + "." + b64(h.Sum(nil))
}

// joseSigned signs payload with go-jose.
func joseSigned(t *testing.T, alg jose.SignatureAlgorithm, key any, kid string, payload []byte) string {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// joseJSON is a valid token of the issuer in the JWS JSON serialisation.
func joseJSON(t *testing.T, i *ciIssuer, flattened bool) string {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: i.key, KeyID: i.kid}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(mustJSON(t, i.claims(nil)))
	if err != nil {
		t.Fatal(err)
	}
	if flattened {
		var m map[string]any
		if err := json.Unmarshal([]byte(jws.FullSerialize()), &m); err != nil {
			t.Fatal(err)
		}
		return string(mustJSON(t, m))
	}
	return jws.FullSerialize()
}

// encrypted is a compact JWE of plaintext to pub.
func encrypted(t *testing.T, pub *rsa.PublicKey, plaintext []byte, cty string) string {
	opts := &jose.EncrypterOptions{}
	if cty != "" {
		opts = opts.WithContentType(jose.ContentType(cty))
	}
	enc, err := jose.NewEncrypter(jose.A256GCM, jose.Recipient{Algorithm: jose.RSA_OAEP_256, Key: pub}, opts)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := enc.Encrypt(plaintext)
	if err != nil {
		t.Fatal(err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// foreignIss is a token of a configured generic issuer served by s.
func foreignIss(t *testing.T, s *httptest.Server) string {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	claims := map[string]any{"iss": s.URL, "sub": "x", "aud": brokerURL, "iat": now, "exp": now + 300, "jti": randomJTI()}
	return signRS256(t, key, map[string]any{"alg": "RS256", "kid": "k1"}, mustJSON(t, claims))
}

// withIss2 signs the issuer's claims with an iss of any JSON type.
func withIss2(t *testing.T, i *ciIssuer, iss any) string {
	return i.signed(t, i.header(nil), mustJSON(t, i.claims(map[string]any{"iss": iss})))
}

// sha384 is the HS384 hash.
var sha384 = sha512.New384

// selfSignedDER is an x5c entry: a self-signed certificate of key, base64.
func selfSignedDER(t *testing.T, key *rsa.PrivateKey) string {
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "attacker"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}
