package policy

import (
	"encoding/json"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"unicode/utf8"
)

// matchKind says how a matcher compares.
type matchKind int

const (
	matchExact matchKind = iota + 1
	matchGlob
	matchRegexp
)

// regexpPrefix marks a value as an RE2 regular expression.
const regexpPrefix = "re:"

// matcher is a compiled subject or claim value.
type matcher struct {
	raw  string
	kind matchKind
	re   *regexp.Regexp // glob and regexp
	// prefix is a literal every matching value starts with.
	prefix string
}

// isPattern reports whether a claim value is a glob or a regular expression.
func isPattern(v string) bool {
	return strings.HasPrefix(v, regexpPrefix) || strings.ContainsAny(v, "*?")
}

// compileExact returns a byte-for-byte matcher.
func compileExact(v string) *matcher {
	return &matcher{raw: v, kind: matchExact, prefix: v}
}

// compilePattern compiles a glob, or an RE2 pattern when v starts with "re:".
func compilePattern(v string) (*matcher, error) {
	if body, ok := strings.CutPrefix(v, regexpPrefix); ok {
		// Anchor the expression as a whole so that "a|b" cannot escape ^ and $.
		re, err := regexp.Compile(`^(?:` + body + `)$`)
		if err != nil {
			return nil, fmt.Errorf("invalid regular expression %q: %w", body, err)
		}
		return &matcher{raw: v, kind: matchRegexp, re: re}, nil
	}
	re, prefix, err := compileGlob(v)
	if err != nil {
		return nil, err
	}
	return &matcher{raw: v, kind: matchGlob, re: re, prefix: prefix}, nil
}

// compileClaim compiles a claim value: a pattern when it looks like one,
// an exact value otherwise.
func compileClaim(v string) (*matcher, error) {
	if isPattern(v) {
		return compilePattern(v)
	}
	return compileExact(v), nil
}

// compileGlob turns an anchored glob into a regular expression: '*' is any
// run of characters except '/' and ':', '**' any run, '?' one character
// except '/' and ':'; everything else is literal (QuoteMeta). It also returns
// the glob's literal prefix, which the index keys on.
func compileGlob(glob string) (*regexp.Regexp, string, error) {
	if !utf8.ValidString(glob) {
		return nil, "", fmt.Errorf("invalid pattern %q: not valid UTF-8", glob)
	}
	var b strings.Builder
	b.WriteString("^")
	prefix, literal := "", true
	for i := 0; i < len(glob); {
		switch {
		case strings.HasPrefix(glob[i:], "**"):
			b.WriteString(`.*`)
			i += 2
		case glob[i] == '*':
			b.WriteString(`[^/:]*`)
			i++
		case glob[i] == '?':
			b.WriteString(`[^/:]`)
			i++
		default:
			j := i
			for j < len(glob) && glob[j] != '*' && glob[j] != '?' {
				j++
			}
			b.WriteString(regexp.QuoteMeta(glob[i:j]))
			if literal {
				prefix = glob[i:j]
			}
			i = j
			continue
		}
		literal = false
	}
	b.WriteString("$")
	re, err := regexp.Compile(b.String())
	if err != nil {
		return nil, "", fmt.Errorf("invalid pattern %q: %w", glob, err)
	}
	return re, prefix, nil
}

// match reports whether the text matches.
func (m *matcher) match(s string) bool {
	if m.kind == matchExact {
		return s == m.raw
	}
	return m.re.MatchString(s)
}

// matchClaim matches a claim value of the token: strings as they are,
// numbers and bools as their JSON text, arrays when any element matches.
// Absent claims, null and objects never match.
func (m *matcher) matchClaim(v any, present bool) bool {
	if !present {
		return false
	}
	if list, ok := v.([]any); ok {
		for _, e := range list {
			if s, ok := claimText(e); ok && m.match(s) {
				return true
			}
		}
		return false
	}
	if list, ok := v.([]string); ok {
		for _, s := range list {
			if m.match(s) {
				return true
			}
		}
		return false
	}
	s, ok := claimText(v)
	return ok && m.match(s)
}

// claimText returns the text a scalar claim compares as.
func claimText(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case json.Number:
		return v.String(), true
	case bool:
		return strconv.FormatBool(v), true
	case float64, float32, int, int64, int32, uint, uint64, uint32:
		b, err := json.Marshal(v)
		return string(b), err == nil
	}
	return "", false
}

// describeClaim renders an actual claim value for explanations.
func describeClaim(v any, present bool) string {
	if !present {
		return "<absent>"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%v", v)
	}
	return string(b)
}

// wide reports whether the matcher can match '/' or ':' through a wildcard:
// a glob with '**', or a regular expression with '.' or a character class
// that admits '/' or ':'. Literal '/' and ':' in the pattern do not count.
func (m *matcher) wide() bool {
	switch m.kind {
	case matchGlob:
		return strings.Contains(m.raw, "**")
	case matchRegexp:
		re, err := syntax.Parse(strings.TrimPrefix(m.raw, regexpPrefix), syntax.Perl)
		return err != nil || wideRegexp(re)
	}
	return false
}

func wideRegexp(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return true
	case syntax.OpCharClass:
		for i := 0; i+1 < len(re.Rune); i += 2 {
			lo, hi := re.Rune[i], re.Rune[i+1]
			if (lo <= '/' && '/' <= hi) || (lo <= ':' && ':' <= hi) {
				return true
			}
		}
	}
	for _, s := range re.Sub {
		if wideRegexp(s) {
			return true
		}
	}
	return false
}

// anyRepository reports whether a pattern admits any repository: the
// segment after a literal scheme ("repo:", "project_path:"), or the first
// segment when there is no scheme, is made of wildcards and '/' only (e.g.
// "**", "repo:**", "repo:*/*:environment:prod", "re:.*"). Segments are
// separated by ':' as in GitHub, GitLab and Buildkite subjects.
func (m *matcher) anyRepository() bool {
	switch m.kind {
	case matchGlob:
		segs := strings.Split(m.raw, ":")
		seg := segs[0]
		if len(segs) > 1 && !strings.ContainsAny(segs[0], "*?") {
			seg = segs[1]
		}
		return strings.Trim(seg, "*?/") == ""
	case matchRegexp:
		body := strings.TrimPrefix(m.raw, regexpPrefix)
		if i := strings.Index(body, ":"); i > 0 && regexp.QuoteMeta(body[:i]) == body[:i] {
			body = body[i+1:]
		}
		switch body {
		case ".*", ".+", ".*?", ".+?", "(.*)", "(.+)", `\S*`, `\S+`, `[\s\S]*`, `[\s\S]+`:
			return true
		}
	}
	return false
}
