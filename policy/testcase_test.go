package policy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
)

func TestParseExpectation(t *testing.T) {
	tests := []struct {
		in      string
		want    Expectation
		wantErr string
	}{
		{"allow deploy-prod", Expectation{Allow: true, Policy: "deploy-prod"}, ""},
		{"  allow   x ", Expectation{Allow: true, Policy: "x"}, ""},
		{"deny", Expectation{}, ""},
		{"deny invalid_scope", Expectation{Code: CodeInvalidScope}, ""},
		{"deny invalid_target", Expectation{Code: CodeInvalidTarget}, ""},
		{"deny invalid_request", Expectation{Code: CodeInvalidRequest}, ""},
		{"deny nope", Expectation{}, `unknown deny code "nope"`},
		{"allow", Expectation{}, `want "allow POLICY"`},
		{"allow a b", Expectation{}, `want "allow POLICY"`},
		{"", Expectation{}, `want "allow POLICY"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseExpectation(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseExpectation(%q) error = %v, want %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("ParseExpectation(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if back, _ := ParseExpectation(got.String()); back != got {
				t.Errorf("String() = %q does not parse back", got.String())
			}
		})
	}
}

func loadTestSet(t *testing.T) *Set {
	t.Helper()
	s, err := LoadPath("testdata/tests", LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRunTestPasses(t *testing.T) {
	s := loadTestSet(t)
	cases, err := LoadTests("testdata/tests")
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) != 5 {
		t.Fatalf("LoadTests found %d cases, want 5", len(cases))
	}
	for _, tc := range cases {
		if r := s.RunTest(tc); !r.Pass {
			t.Errorf("%s:%d %s: got %s, want %s, err %v, details %q", tc.File, tc.Line, tc.Name, r.Got, tc.Expect, r.Err, r.Details)
		}
	}
	if got := cases[0].Claims["run_number"]; got != json.Number("7") {
		t.Errorf("YAML number claim = %#v, want json.Number(\"7\")", got)
	}
}

func TestRunTestFailures(t *testing.T) {
	s := loadTestSet(t)
	data, err := os.ReadFile("testdata/tests/fail.yaml.txt")
	if err != nil {
		t.Fatal(err)
	}
	cases, err := ParseTests("fail_test.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		Got     string
		Details []string
		Err     string
	}
	want := map[string]result{
		"wrong policy": {Got: "allow read-any-branch", Details: []string{
			`allowed by policy "read-any-branch" (candidates in selection order: read-any-branch)`,
			`policy "deploy" (testdata/tests/policies.yaml:2) fails at subject: expected "repo:org/app:ref:refs/heads/main", got "repo:org/app:ref:refs/heads/dev"`,
		}},
		"wrong code": {Got: "deny invalid_scope", Details: []string{
			`reason: policy "read-any-branch" matches the token but grant.scopes: expected one of ["read"], got requested "deploy"`,
		}},
		"allowed but expected deny": {Got: "allow read-any-branch", Details: []string{
			`allowed by policy "read-any-branch" (candidates in selection order: read-any-branch)`,
		}},
		"unknown policy": {Got: "allow read-any-branch", Details: []string{
			`allowed by policy "read-any-branch" (candidates in selection order: read-any-branch)`,
			`no policy is named "nope" (policies: deploy, read-any-branch)`,
		}},
		"no jti for a single-use policy": {Got: "deny invalid_request", Details: []string{
			`reason: subject_token has no jti, required by a single-use policy: policy "read-any-branch" is single_use (the default); add a jti to the claims, or set single_use: false if the issuer's tokens carry none`,
		}},
		"no issuer": {Err: "policy: claims need iss (a string)"},
	}
	for _, tc := range cases {
		r := s.RunTest(tc)
		if r.Pass {
			t.Errorf("%s: passed, want a failure", tc.Name)
		}
		got := result{Got: r.Got, Details: r.Details}
		if r.Err != nil {
			got.Err = r.Err.Error()
		}
		if diff := cmp.Diff(want[tc.Name], got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.Name, diff)
		}
	}
}

func TestParseTestsErrors(t *testing.T) {
	const claims = "claims: {iss: i, sub: s, aud: a}"
	tests := []struct {
		name, src, want string
	}{
		{"unknown top key", "cases: []\n", `t_test.yaml:1: cases: unknown key (want tests)`},
		{"unknown case key", "tests:\n  - name: a\n    " + claims + "\n    expect: deny\n    extra: 1\n", `t_test.yaml:5: test "a": extra: unknown key`},
		{"missing name", "tests:\n  - " + claims + "\n    expect: deny\n", `t_test.yaml:2: test "": name: required`},
		{"missing expect", "tests:\n  - name: a\n    " + claims + "\n", `t_test.yaml:2: test "a": expect: required`},
		{"claims and token", "tests:\n  - name: a\n    " + claims + "\n    token: x.y.z\n    expect: deny\n", `set exactly one of claims and token`},
		{"neither claims nor token", "tests:\n  - name: a\n    expect: deny\n", `set exactly one of claims and token`},
		{"bad expect", "tests:\n  - name: a\n    " + claims + "\n    expect: maybe\n", `t_test.yaml:4: test "a": expect: expect "maybe"`},
		{"bad token type", "tests:\n  - name: a\n    " + claims + "\n    request: {token_type: saml}\n    expect: deny\n", `request.token_type: must be jwt or api_key`},
		{"bad request key", "tests:\n  - name: a\n    " + claims + "\n    request: {scopes: [x]}\n    expect: deny\n", `request.scopes: unknown key`},
		{"claims not a mapping", "tests:\n  - name: a\n    claims: [1]\n    expect: deny\n", `claims: must be a mapping of claims`},
		{"bad token", "tests:\n  - name: a\n    token: abc\n    expect: deny\n", `token: token: want a compact JWS`},
		{"duplicate name", "tests:\n  - name: a\n    " + claims + "\n    expect: deny\n  - name: a\n    " + claims + "\n    expect: deny\n", `t_test.yaml:5: test "a": name: duplicate test name, first defined at line 2`},
		{"invalid yaml", "tests: [\n", `t_test.yaml: invalid YAML`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseTests("t_test.yaml", []byte(tt.src))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseTests error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// signedToken returns a compact JWS over claims, signed with a fresh key.
func signedToken(t testing.TB, claims map[string]any) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := sig.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestTokenClaims(t *testing.T) {
	good := signedToken(t, map[string]any{"iss": "https://ci.example", "sub": "s", "aud": []string{"a", "b"}, "run": 12})
	parts := strings.Split(good, ".")
	tests := []struct {
		name    string
		token   string
		want    map[string]any
		wantErr string
	}{
		{"signed token", good, map[string]any{"iss": "https://ci.example", "sub": "s", "aud": []any{"a", "b"}, "run": json.Number("12")}, ""},
		{"surrounding space", " " + good + "\n", map[string]any{"iss": "https://ci.example", "sub": "s", "aud": []any{"a", "b"}, "run": json.Number("12")}, ""},
		{"two parts", parts[0] + "." + parts[1], nil, "three dot-separated parts"},
		{"bad base64", parts[0] + ".!!!." + parts[2], nil, "token payload"},
		{"array payload", parts[0] + ".WzFd." + parts[2], nil, "not a JSON object"},
		{"null payload", parts[0] + ".bnVsbA." + parts[2], nil, "not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := TokenClaims(tt.token)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("TokenClaims error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("TokenClaims (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTestCaseFromToken(t *testing.T) {
	s := loadTestSet(t)
	tok := signedToken(t, map[string]any{"iss": "https://ci.example", "sub": "repo:org/app:ref:refs/heads/main", "aud": "broker", "jti": "a1b2c3", "run_number": 7, "protected": true})
	cases, err := ParseTests("t_test.yaml", []byte("tests:\n  - name: from a token\n    token: "+tok+"\n    expect: allow deploy\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r := s.RunTest(cases[0]); !r.Pass {
		t.Errorf("got %s, details %q, err %v; want allow deploy", r.Got, r.Details, r.Err)
	}
}

func TestParseClaims(t *testing.T) {
	for _, src := range []string{
		`{"iss": "i", "n": 5, "b": true}`,
		"iss: i\nn: 5\nb: true\n",
	} {
		got, err := ParseClaims([]byte(src))
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]any{"iss": "i", "n": json.Number("5"), "b": true}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("ParseClaims(%q) (-want +got):\n%s", src, diff)
		}
	}
	for _, bad := range []string{"", "[1, 2]", "just text", "{"} {
		if _, err := ParseClaims([]byte(bad)); err == nil {
			t.Errorf("ParseClaims(%q) succeeded", bad)
		}
	}
}

func TestIsTestFile(t *testing.T) {
	for name, want := range map[string]bool{
		"a_test.yaml": true, "a_test.yml": true, "a.test.yaml": true, "a.test.yml": true,
		"a.yaml": false, "test.yaml": false, "a_test.json": false, "a_testyaml": false,
	} {
		if got := IsTestFile(name); got != want {
			t.Errorf("IsTestFile(%q) = %t, want %t", name, got, want)
		}
		if want && isPolicyFile(name) {
			t.Errorf("%q is both a test file and a policy file", name)
		}
	}
}

func FuzzParseTests(f *testing.F) {
	for _, name := range []string{"testdata/tests/pass_test.yaml", "testdata/tests/fail.yaml.txt"} {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("tests:\n  - name: a\n    token: a.e30.c\n    expect: deny\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cases, err := ParseTests("f_test.yaml", data)
		for _, tc := range cases {
			if tc.Name == "" || tc.Claims == nil {
				t.Fatalf("parsed case without name or claims: %+v (err %v)", tc, err)
			}
		}
	})
}

func FuzzTokenClaims(f *testing.F) {
	f.Add("eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJpIn0.c2ln")
	f.Add("a.bnVsbA.c")
	f.Add("..")
	f.Fuzz(func(t *testing.T, token string) {
		claims, err := TokenClaims(token)
		if err == nil && claims == nil {
			t.Fatal("nil claims without an error")
		}
	})
}
