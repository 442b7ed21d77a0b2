package policy

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestGlob(t *testing.T) {
	tests := []struct {
		name, glob, value string
		want              bool
	}{
		{"literal equal", "repo:o/r:ref:main", "repo:o/r:ref:main", true},
		{"literal is anchored at end", "repo:o/r", "repo:o/r:ref:main", false},
		{"literal is anchored at start", "o/r", "repo:o/r", false},
		{"star within segment", "repo:octo/*:ref:main", "repo:octo/app:ref:main", true},
		{"star matches empty", "repo:octo/*:ref:main", "repo:octo/:ref:main", true},
		{"star stops at slash", "repo:octo/*:ref:main", "repo:octo/a/b:ref:main", false},
		{"star stops at colon", "repo:octo/*", "repo:octo/app:ref:main", false},
		{"double star crosses slash and colon", "repo:octo/**", "repo:octo/app:ref:refs/heads/main", true},
		{"question one char", "v?", "v1", true},
		{"question not zero chars", "v?", "v", false},
		{"question not two chars", "v?", "v12", false},
		{"question not slash", "a?b", "a/b", false},
		{"question not colon", "a?b", "a:b", false},
		{"question one multibyte rune", "a?b", "aéb", true},
		{"dot is literal", "a.b", "axb", false},
		{"regexp metachar literal", "a+(b)", "a+(b)", true},
		{"regexp metachar not special", "a+", "aa", false},
		{"star matches newline", "a*b", "a\nb", true},
		{"star prefix attack", "*octo/app", "evil/octo/app", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := compilePattern(tt.glob)
			if err != nil {
				t.Fatal(err)
			}
			if got := m.match(tt.value); got != tt.want {
				t.Errorf("glob %q on %q = %v, want %v (regexp %s)", tt.glob, tt.value, got, tt.want, m.re)
			}
		})
	}
}

func TestRegexpValue(t *testing.T) {
	tests := []struct {
		name, pattern, value string
		want                 bool
	}{
		{"anchored whole", "re:main|dev", "main", true},
		{"alternation cannot escape start anchor", "re:main|dev", "xdev", false},
		{"alternation cannot escape end anchor", "re:main|dev", "mainx", false},
		{"class", "re:v[0-9]+", "v12", true},
		{"class no match", "re:v[0-9]+", "v1a", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := compilePattern(tt.pattern)
			if err != nil {
				t.Fatal(err)
			}
			if got := m.match(tt.value); got != tt.want {
				t.Errorf("%q on %q = %v, want %v", tt.pattern, tt.value, got, tt.want)
			}
		})
	}
	if _, err := compilePattern("re:(unclosed"); err == nil {
		t.Error("compilePattern(re:(unclosed) succeeded, want error")
	}
}

func TestClaimMatch(t *testing.T) {
	tests := []struct {
		name    string
		value   string // the policy's claim value
		claim   any
		present bool
		want    bool
	}{
		{"string exact", "refs/heads/main", "refs/heads/main", true, true},
		{"string exact is byte for byte", "main", "Main", true, false},
		{"exact with trailing space differs", "main", "main ", true, false},
		{"json number as text", "1234567", json.Number("1234567"), true, true},
		{"json number other text", "1234567", json.Number("1234568"), true, false},
		{"json number keeps its text", "1.0", json.Number("1.0"), true, true},
		{"float64 as JSON text", "42", float64(42), true, true},
		{"bool true", "true", true, true, true},
		{"bool false", "true", false, true, false},
		{"array any element", "b", []any{"a", "b"}, true, true},
		{"array no element", "c", []any{"a", "b"}, true, false},
		{"array of numbers", "2", []any{json.Number("1"), json.Number("2")}, true, true},
		{"string array", "b", []string{"a", "b"}, true, true},
		{"absent never matches", "x", nil, false, false},
		{"absent never matches a wildcard", "**", nil, false, false},
		{"null never matches", "null", nil, true, false},
		{"object never matches", "x", map[string]any{"x": "x"}, true, false},
		{"nested array never matches", "x", []any{[]any{"x"}}, true, false},
		{"glob on claim", "octo-org/*", "octo-org/app", true, true},
		{"glob on claim stops at slash", "octo-org/*", "octo-org/app/x", true, false},
		{"regexp on claim", "re:push|workflow_dispatch", "push", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := compileClaim(tt.value)
			if err != nil {
				t.Fatal(err)
			}
			if got := m.matchClaim(tt.claim, tt.present); got != tt.want {
				t.Errorf("claim %q on %#v = %v, want %v", tt.value, tt.claim, got, tt.want)
			}
		})
	}
}

func TestGlobPrefix(t *testing.T) {
	tests := []struct{ glob, want string }{
		{"repo:octo/*:ref:main", "repo:octo/"},
		{"**", ""},
		{"abc", "abc"},
		{"a?c*", "a"},
	}
	for _, tt := range tests {
		if _, got, _ := compileGlob(tt.glob); got != tt.want {
			t.Errorf("prefix of %q = %q, want %q", tt.glob, got, tt.want)
		}
	}
}

func TestWideAndAnyRepository(t *testing.T) {
	tests := []struct {
		value         string
		wide, anyRepo bool
	}{
		{"repo:octo/app:*", false, false},
		{"repo:octo/**", true, false},
		{"**", true, true},
		{"repo:**", true, true},
		{"repo:*/*:**", true, true},
		{"repo:*/*:environment:prod", false, true},
		{"re:repo:octo/(app|lib):ref:main", false, false},
		{"re:repo:octo/.*", true, false},
		{`re:repo:octo/\S+`, true, false},
		{"re:repo:octo/[^x]+", true, false},
		{"re:repo:octo/[a-z]+", false, false},
		{"re:.*", true, true},
		{"re:repo:.*", true, true},
	}
	for _, tt := range tests {
		m, err := compilePattern(tt.value)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.wide(); got != tt.wide {
			t.Errorf("wide(%q) = %v, want %v", tt.value, got, tt.wide)
		}
		if got := m.anyRepository(); got != tt.anyRepo {
			t.Errorf("anyRepository(%q) = %v, want %v", tt.value, got, tt.anyRepo)
		}
	}
}

// FuzzCompileGlob checks the glob compiler's invariants: it never fails, a
// glob without wildcards matches only itself, every match starts with the
// literal prefix, and without "**" a match has exactly the glob's literal
// '/' and ':' characters (a single '*' or '?' never crosses them).
func FuzzCompileGlob(f *testing.F) {
	f.Add("repo:octo-org/*:ref:refs/heads/main", "repo:octo-org/app:ref:refs/heads/main")
	f.Add("repo:*/*:**", "repo:a/b:c:d")
	f.Add("a?b", "a/b")
	f.Add(`\E.*(`, `\E.*(`)
	f.Fuzz(func(t *testing.T, glob, s string) {
		re, prefix, err := compileGlob(glob)
		if !utf8.ValidString(glob) {
			if err == nil {
				t.Fatalf("compileGlob(%q) accepted invalid UTF-8", glob)
			}
			return
		}
		if err != nil {
			t.Fatalf("compileGlob(%q): %v", glob, err)
		}
		if !strings.ContainsAny(glob, "*?") {
			if !re.MatchString(glob) {
				t.Fatalf("literal glob %q does not match itself", glob)
			}
			if re.MatchString(glob+"x") || re.MatchString("x"+glob) {
				t.Fatalf("literal glob %q is not anchored", glob)
			}
		}
		if !re.MatchString(s) {
			return
		}
		if !strings.HasPrefix(s, prefix) {
			t.Fatalf("%q matches %q but lacks prefix %q", glob, s, prefix)
		}
		if !strings.Contains(glob, "**") {
			lit := strings.NewReplacer("*", "", "?", "").Replace(glob)
			for _, sep := range []string{"/", ":"} {
				if strings.Count(s, sep) != strings.Count(lit, sep) {
					t.Fatalf("%q matches %q across %q", glob, s, sep)
				}
			}
		}
	})
}
