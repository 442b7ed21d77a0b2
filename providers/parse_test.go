package providers

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func FuzzParseUnverified(f *testing.F) {
	enc := base64.RawURLEncoding.EncodeToString
	f.Add(enc([]byte(`{"alg":"RS256","kid":"k"}`)) + "." + enc([]byte(`{"iss":"https://a","sub":"s","exp":1e10}`)) + ".c2ln")
	f.Add(enc([]byte(`{"alg":"none"}`)) + "." + enc([]byte(`{"iss":"x"}`)) + ".")
	f.Add(enc([]byte(`{"alg":"RS256","crit":["b64"],"b64":false}`)) + ".e30.c2ln")
	f.Add(enc([]byte(`{"alg":"RS256","alg":"none"}`)) + ".e30.c2ln")
	f.Add(enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(`{"iss":"a","x":[[[[{"y":1.5e400}]]]]}`)) + ".c2ln")
	f.Add("a.b.c.d.e")
	f.Add(`{"payload":"e30","signatures":[]}`)
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := parseUnverified(raw, DefaultMaxTokenBytes)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrClaims) {
				t.Fatalf("error %v wraps neither ErrMalformed nor ErrClaims", err)
			}
			return
		}
		if strings.Count(raw, ".") != 2 || len(raw) > DefaultMaxTokenBytes {
			t.Fatalf("accepted a token that is not a bounded compact JWS: %q", raw)
		}
		if u.alg == "" || u.iss == "" || u.claims["iss"] != u.iss {
			t.Fatalf("accepted without alg or iss: %+v", u)
		}
	})
}

func TestDecodeObject(t *testing.T) {
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"object", `{"a":1,"b":[true,null,"x"],"c":{"d":2}}`, true},
		{"nested duplicate", `{"a":{"b":1,"b":2}}`, false},
		{"top duplicate", `{"a":1,"a":1}`, false},
		{"array", `[1]`, false},
		{"trailing data", `{"a":1}{"b":2}`, false},
		{"trailing garbage", `{"a":1} x`, false},
		{"depth 15", `{"a":` + strings.Repeat(`[`, maxJSONDepth-1) + strings.Repeat(`]`, maxJSONDepth-1) + `}`, true},
		{"depth 16", `{"a":` + strings.Repeat(`[`, maxJSONDepth) + strings.Repeat(`]`, maxJSONDepth) + `}`, false},
		{"invalid UTF-8", "{\"a\":\"\xc3\"}", false},
		{"unterminated", `{"a":1`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeObject([]byte(tt.in))
			if (err == nil) != tt.ok {
				t.Fatalf("decodeObject(%q) error = %v, want ok=%v", tt.in, err, tt.ok)
			}
		})
	}
}
