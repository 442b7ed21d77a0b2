package exchange

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseRequest(t *testing.T) {
	const form = "application/x-www-form-urlencoded"
	base := "grant_type=" + GrantTypeTokenExchange + "&subject_token=abc&subject_token_type=" + TokenTypeIDToken
	tests := []struct {
		name     string
		ctype    string
		body     string
		want     *Request
		wantCode string
	}{
		{
			name:  "form minimal",
			ctype: form,
			body:  base,
			want:  &Request{GrantType: GrantTypeTokenExchange, SubjectToken: "abc", SubjectTokenType: TokenTypeIDToken},
		},
		{
			name:  "form with repeated audience and scopes",
			ctype: form + "; charset=utf-8",
			body:  base + "&audience=a&audience=b&audience=a&scope=x+y++x&requested_token_type=" + TokenTypeJWT,
			want: &Request{GrantType: GrantTypeTokenExchange, SubjectToken: "abc", SubjectTokenType: TokenTypeIDToken,
				Audiences: []string{"a", "b"}, Scopes: []string{"x", "y"}, RequestedTokenType: TokenTypeJWT},
		},
		{
			name:  "json with audience list",
			ctype: "application/json",
			body:  `{"grant_type":"` + GrantTypeTokenExchange + `","subject_token":"abc","subject_token_type":"` + TokenTypeJWT + `","audience":["a","b"],"scope":"x"}`,
			want: &Request{GrantType: GrantTypeTokenExchange, SubjectToken: "abc", SubjectTokenType: TokenTypeJWT,
				Audiences: []string{"a", "b"}, Scopes: []string{"x"}},
		},
		{
			name:  "json with audience string",
			ctype: "application/json",
			body:  `{"subject_token":"abc","audience":"a"}`,
			want:  &Request{SubjectToken: "abc", Audiences: []string{"a"}},
		},
		{name: "repeated grant_type", ctype: form, body: base + "&grant_type=x", wantCode: CodeInvalidRequest},
		{name: "repeated subject_token", ctype: form, body: base + "&subject_token=def", wantCode: CodeInvalidRequest},
		{name: "repeated scope", ctype: form, body: base + "&scope=a&scope=b", wantCode: CodeInvalidRequest},
		{name: "resource unsupported", ctype: form, body: base + "&resource=https://x", wantCode: CodeInvalidRequest},
		{name: "actor token unsupported", ctype: form, body: base + "&actor_token=x", wantCode: CodeInvalidRequest},
		{name: "empty audience", ctype: form, body: base + "&audience=", wantCode: CodeInvalidRequest},
		{name: "too many audiences", ctype: form, body: base + strings.Repeat("&audience=a", 1) + manyAudiences(MaxAudiences+1), wantCode: CodeInvalidRequest},
		{name: "one audience repeated up to the cap", ctype: form, body: base + strings.Repeat("&audience=a", MaxAudiences),
			want: &Request{GrantType: GrantTypeTokenExchange, SubjectToken: "abc", SubjectTokenType: TokenTypeIDToken, Audiences: []string{"a"}}},
		{name: "one audience repeated past the cap", ctype: form, body: base + strings.Repeat("&audience=a", MaxAudiences+1), wantCode: CodeInvalidRequest},
		{name: "a body full of distinct audiences", ctype: form, body: base + manyAudiences(600), wantCode: CodeInvalidRequest},
		{name: "one scope repeated past the cap", ctype: form, body: base + "&scope=" + strings.Repeat("x+", MaxScopes+1), wantCode: CodeInvalidScope},
		{name: "scope with quote", ctype: form, body: base + "&scope=%22x", wantCode: CodeInvalidScope},
		{name: "scope with backslash", ctype: form, body: base + "&scope=a%5Cb", wantCode: CodeInvalidScope},
		{name: "long parameter", ctype: form, body: base + "&audience=" + strings.Repeat("a", maxParamBytes+1), wantCode: CodeInvalidRequest},
		{name: "malformed form", ctype: form, body: "a=%zz", wantCode: CodeInvalidRequest},
		{name: "invalid utf8", ctype: form, body: base + "&audience=\xff", wantCode: CodeInvalidRequest},
		{name: "no content type", ctype: "", body: base, wantCode: CodeInvalidRequest},
		{name: "text plain", ctype: "text/plain", body: base, wantCode: CodeInvalidRequest},
		{name: "json duplicate key", ctype: "application/json", body: `{"subject_token":"a","subject_token":"b"}`, wantCode: CodeInvalidRequest},
		{name: "json number value", ctype: "application/json", body: `{"subject_token":1}`, wantCode: CodeInvalidRequest},
		{name: "json nested object", ctype: "application/json", body: `{"subject_token":{"a":"b"}}`, wantCode: CodeInvalidRequest},
		{name: "json array body", ctype: "application/json", body: `["a"]`, wantCode: CodeInvalidRequest},
		{name: "json trailing data", ctype: "application/json", body: `{"subject_token":"a"}{}`, wantCode: CodeInvalidRequest},
		{name: "json truncated", ctype: "application/json", body: `{"subject_token":"a"`, wantCode: CodeInvalidRequest},
		{name: "body too large", ctype: form, body: base + "&x=" + strings.Repeat("a", MaxBodyBytes), wantCode: CodeInvalidRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRequest(tc.ctype, []byte(tc.body))
			if tc.wantCode != "" {
				var e *Error
				if !errors.As(err, &e) || e.Code != tc.wantCode {
					t.Fatalf("ParseRequest() error = %v, want code %s", err, tc.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRequest() error = %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseRequest() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func manyAudiences(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString("&audience=a")
		b.WriteByte(byte('a' + i%26))
		b.WriteByte(byte('a' + i/26))
	}
	return b.String()
}

// FuzzParseRequest checks that no body makes the request decoder panic, and
// that whatever it accepts respects the documented bounds.
func FuzzParseRequest(f *testing.F) {
	f.Add("application/x-www-form-urlencoded", "grant_type=a&subject_token=b&audience=c&scope=d+e")
	f.Add("application/json", `{"grant_type":"a","audience":["b","c"]}`)
	f.Add("application/json", `{"a":"b","a":"c"}`)
	f.Add("application/json; charset=utf-8", `{"audience":[1]}`)
	f.Fuzz(func(t *testing.T, ctype, body string) {
		r, err := ParseRequest(ctype, []byte(body))
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error is not *Error: %v", err)
			}
			return
		}
		if len(r.Audiences) > MaxAudiences || len(r.Scopes) > MaxScopes {
			t.Fatalf("bounds exceeded: %d audiences, %d scopes", len(r.Audiences), len(r.Scopes))
		}
		for _, s := range r.Scopes {
			if !validScopeToken(s) {
				t.Fatalf("invalid scope accepted: %q", s)
			}
		}
	})
}
