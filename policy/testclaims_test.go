package policy

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

// RunTest must refuse what the broker refuses: a single_use decision for a
// token without a jti (exchange: claimOnce), and a jti that is not a string
// (the verifier).
func TestRunTestJTI(t *testing.T) {
	f, err := Parse("p.yaml", []byte(`policies:
  - name: once
    issuer: https://ci.example
    audience: broker
    subject: s
    grant: {audience: [api], scopes: [x], ttl: 5m}
  - name: reusable
    issuer: https://ci.example
    audience: broker
    subject: r
    single_use: false
    grant: {audience: [api], scopes: [x], ttl: 5m}
`))
	if err != nil {
		t.Fatal(err)
	}
	set, err := NewSet([]*File{f}, LoadOptions{AllowUnknownIssuers: true})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		sub    string
		jti    any // nil: absent
		expect string
		got    string
		pass   bool
	}{
		{"single use without jti", "s", nil, "allow once", "deny invalid_request", false},
		{"single use without jti, deny expected", "s", nil, "deny invalid_request", "deny invalid_request", true},
		{"single use without jti, any deny expected", "s", nil, "deny", "deny invalid_request", true},
		{"single use with an empty jti", "s", "", "allow once", "deny invalid_request", false},
		{"single use with a jti", "s", "8d3f0c1e-2a4b-4c5d-9e6f-7a8b9c0d1e2f", "allow once", "allow once", true},
		{"not single use, without jti", "r", nil, "allow reusable", "allow reusable", true},
		{"a number jti is an invalid token", "r", json.Number("7"), "allow reusable", "deny invalid_request", false},
		{"a number jti, deny expected", "s", json.Number("7"), "deny invalid_request", "deny invalid_request", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			claims := map[string]any{"iss": "https://ci.example", "sub": tt.sub, "aud": "broker"}
			if tt.jti != nil {
				claims["jti"] = tt.jti
			}
			e, err := ParseExpectation(tt.expect)
			if err != nil {
				t.Fatal(err)
			}
			r := set.RunTest(&TestCase{Name: tt.name, Claims: claims, Expect: e})
			if r.Err != nil || r.Got != tt.got || r.Pass != tt.pass {
				t.Fatalf("RunTest = %s (pass %v, err %v, details %q), want %s (pass %v)", r.Got, r.Pass, r.Err, r.Details, tt.got, tt.pass)
			}
			if !r.Pass && tt.got == "deny invalid_request" && (len(r.Details) == 0 || !strings.Contains(r.Details[0], "jti")) {
				t.Errorf("details %q do not name the jti", r.Details)
			}
		})
	}
}

// Claims decode by their source text: YAML's reading of 017 (15), 0x1F
// (31), 1.0 (1) or 2024-01-02 (a time) is not what a token would carry.
func TestYAMLClaimsBySourceText(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		want    map[string]any
		wantErr string // substring, with the line
	}{
		{"canonical numbers stay as written", "{a: 31, b: -2, c: 1.5, d: 0, e: 12345678901234567890}",
			map[string]any{"a": json.Number("31"), "b": json.Number("-2"), "c": json.Number("1.5"), "d": json.Number("0"), "e": json.Number("12345678901234567890")}, ""},
		{"a date stays a string", "d: 2024-01-02\nt: 2024-01-02T03:04:05Z", map[string]any{"d": "2024-01-02", "t": "2024-01-02T03:04:05Z"}, ""},
		{"quoted numbers are strings", `{a: "017", b: "0x1F", c: "1.0"}`, map[string]any{"a": "017", "b": "0x1F", "c": "1.0"}, ""},
		{"bools, nulls, lists, objects", "{b: True, n: null, l: [x, 1], o: {k: v}}",
			map[string]any{"b": true, "n": nil, "l": []any{"x", json.Number("1")}, "o": map[string]any{"k": "v"}}, ""},
		{"merge keys: own keys win, earlier merges win", "base: &b {x: 1, y: 2}\nmore: &m {y: 3, z: 4}\nc: {<<: [*b, *m], x: 9}",
			map[string]any{"base": map[string]any{"x": json.Number("1"), "y": json.Number("2")}, "more": map[string]any{"y": json.Number("3"), "z": json.Number("4")},
				"c": map[string]any{"x": json.Number("9"), "y": json.Number("2"), "z": json.Number("4")}}, ""},
		{"octal-looking", "a: x\nb: 017", nil, "line 2: b: number 017 is not in canonical JSON form"},
		{"hex", "a: 0x1F", nil, "line 1: a: number 0x1F"},
		{"float with a trailing zero", "a: 1.0", nil, "number 1.0"},
		{"exponent", "a: 1e3", nil, "number 1e3"},
		{"underscores", "a: 1_000", nil, "number 1_000"},
		{"nested", "o:\n  l:\n    - 0o17", nil, "line 3: o.l[0]: number 0o17"},
		{"infinity", "a: .inf", nil, "number .inf"},
		{"binary", "a: !!binary aGk=", nil, "!!binary is not JSON data"},
		{"duplicate", "a: 1\na: 2", nil, "line 2: a: duplicate claim"},
		{"not a mapping", "[a]", nil, "must be a mapping of claims"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var doc yaml.Node
			if err := yaml.Unmarshal([]byte(tt.src), &doc); err != nil {
				t.Fatal(err)
			}
			got, err := yamlClaims(doc.Content[0])
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("yamlClaims error = %v, want %q", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), "quote") && strings.Contains(tt.wantErr, "number") {
					t.Errorf("error %q does not say to quote the value", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("yamlClaims (-want +got):\n%s", diff)
			}
		})
	}
}

// A non-canonical number in a test file is refused with the file and the
// line of the value, and the claim's path.
func TestParseTestsRefusesRetypedNumbers(t *testing.T) {
	src := "tests:\n  - name: a\n    claims:\n      iss: i\n      sub: s\n      aud: a\n      repository_id: 0x1F\n    expect: deny\n"
	_, err := ParseTests("x_test.yaml", []byte(src))
	if err == nil || !strings.Contains(err.Error(), "x_test.yaml:7") || !strings.Contains(err.Error(), "claims.repository_id") {
		t.Fatalf("ParseTests error = %v, want x_test.yaml:7 ... claims.repository_id", err)
	}
}

// Aliases repeat nodes; a claim set that expands past the limit is
// refused, not decoded.
func TestYAMLClaimsAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 8; i++ {
		b.WriteString("a" + string(rune('0'+i)) + ": &a" + string(rune('0'+i)) + " [")
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*a" + string(rune('0'+i-1)))
		}
		b.WriteString("]\n")
	}
	if _, err := ParseClaims([]byte(b.String())); err == nil || !strings.Contains(err.Error(), "too deep or too large") {
		t.Fatalf("ParseClaims error = %v, want too large", err)
	}
}

func FuzzYAMLClaims(f *testing.F) {
	for _, s := range []string{"{a: 1, b: 017, c: [x, {d: 2024-01-02}]}", "a: &x {b: 1}\nc: {<<: *x}", "{a: 1.0}", `{"iss": "i", "n": 5}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		claims, err := ParseClaims([]byte(src))
		if err != nil {
			return
		}
		// What decodes is JSON data whose numbers survive a round trip.
		data, err := json.Marshal(claims)
		if err != nil {
			t.Fatalf("claims %#v are not JSON data: %v", claims, err)
		}
		back, err := decodeClaims(data)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(claims, back); diff != "" {
			t.Fatalf("round trip (-decoded +json):\n%s", diff)
		}
	})
}
