package policy

import (
	"encoding/json"
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
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
	// syn is the parsed body of a regexp (without the anchors), for lint.
	syn *syntax.Regexp
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
		return compileRegexp(v, body)
	}
	re, prefix, err := compileGlob(v)
	if err != nil {
		return nil, err
	}
	return &matcher{raw: v, kind: matchGlob, re: re, prefix: prefix}, nil
}

// compileRegexp compiles the body of a "re:" value anchored as a whole.
// The body is parsed on its own first: only a body that is a complete
// expression by itself can be wrapped in ^(?:...)$ safely. Otherwise an
// unbalanced ')' closes the group early and escapes the anchors:
// "main)|(evil" would become ^(?:main)|(evil)$, which matches "main-x".
func compileRegexp(raw, body string) (*matcher, error) {
	syn, err := syntax.Parse(body, syntax.Perl)
	if err != nil {
		return nil, fmt.Errorf("invalid regular expression %q: %w", body, err)
	}
	re, err := regexp.Compile(`^(?:` + body + `)$`)
	if err != nil {
		// E.g. an unterminated \Q quotes the closing ")$" away.
		return nil, fmt.Errorf("invalid regular expression %q: %w", body, err)
	}
	return &matcher{raw: raw, kind: matchRegexp, re: re, syn: syn}, nil
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
		return m.syn == nil || wideRegexp(m.syn)
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

// repositoryKeys are the subject keys whose value names the repository,
// project, pipeline or workspace: repo (GitHub), project_path (GitLab),
// pipeline (Buildkite), project and workspace (Terraform Cloud; project in
// CircleCI's "org/ID/project/ID/..." form too).
var repositoryKeys = []string{"repo", "project_path", "pipeline", "project", "workspace"}

// segment is one ':'-separated (or '/'-separated) piece of a pattern.
type segment struct {
	// text is the piece's literal text; literal reports that the piece is
	// only that text (no wildcard, no regexp operator).
	text    string
	literal bool
	// wild reports that the piece stands for any name: wildcards only
	// ("*", "*/*", "**", ".*", "[a-z-]+"), no literal character.
	wild bool
}

// anyRepository reports whether a pattern admits any repository: the first
// segment, the segment after a literal first segment (a scheme such as
// "repo:"), or the segment after a repository key anywhere (repositoryKeys,
// e.g. Buildkite's "organization:acme:pipeline:*:..."), is wild (e.g. "**",
// "repo:**", "repo:*/*:environment:prod", "re:.*", "re:repo:[a-z-]+").
// Segments are separated by ':' as in GitHub, GitLab, Buildkite and
// Terraform subjects, or by '/' in a pattern without ':' (CircleCI).
func (m *matcher) anyRepository() bool {
	switch m.kind {
	case matchGlob:
		return anySegmentWild(globSegments(m.raw, ':'), func() []segment { return globSegments(m.raw, '/') })
	case matchRegexp:
		if m.syn == nil {
			return true // unreachable: compileRegexp sets syn; fail closed
		}
		return slices.ContainsFunc(branches(m.syn), func(re *syntax.Regexp) bool {
			return anySegmentWild(regexpSegments(re, ':'), func() []segment { return regexpSegments(re, '/') })
		})
	}
	return false
}

// anySegmentWild applies the rule of anyRepository to a pattern cut at
// ':'; a pattern without ':' is also cut at '/', for the key rule only (a
// claim value "octo/*" names the org, like "repo:octo/*").
func anySegmentWild(segs []segment, slashSegs func() []segment) bool {
	if segs[0].wild || (len(segs) > 1 && segs[0].literal && segs[1].wild) {
		return true
	}
	if len(segs) == 1 {
		segs = slashSegs()
	}
	for i := 0; i+1 < len(segs); i++ {
		if segs[i].literal && slices.Contains(repositoryKeys, segs[i].text) && segs[i+1].wild {
			return true
		}
	}
	return false
}

// globSegments cuts a glob at sep. A piece is wild when it is wildcards
// and '/' only; an empty piece is wild only as the second one, as in
// "repo:" (an over-cautious refusal, kept from the first version).
func globSegments(glob string, sep rune) []segment {
	parts := strings.Split(glob, string(sep))
	out := make([]segment, len(parts))
	for i, p := range parts {
		out[i] = segment{
			text:    p,
			literal: !strings.ContainsAny(p, "*?"),
			wild:    strings.Trim(p, "*?/") == "" && (p != "" || i == 1),
		}
	}
	return out
}

// regexpSegments cuts the top level of a parsed regexp at the literal
// separator sep. Working on the parse tree, not the text, keeps a ':'
// inside a class or group ("[^:]+", "(a:b)") from cutting it. Empty-width
// assertions (^, $, \b) are skipped.
func regexpSegments(re *syntax.Regexp, sep rune) []segment {
	subs := []*syntax.Regexp{re}
	if re.Op == syntax.OpConcat {
		subs = re.Sub
	}
	var out []segment
	cur := segment{literal: true}
	var nodes int // non-literal nodes in cur
	var tame bool // cur has a non-literal node that is not wild
	next := func() {
		cur.wild = nodes > 0 && cur.text == "" && !tame
		out = append(out, cur)
		cur, nodes, tame = segment{literal: true}, 0, false
	}
	for _, sub := range subs {
		switch {
		case emptyWidth(sub):
		case sub.Op == syntax.OpLiteral && sub.Flags&syntax.FoldCase == 0:
			for _, r := range sub.Rune {
				if r == sep {
					next()
				} else {
					cur.text += string(r)
				}
			}
		default:
			nodes++
			cur.literal = false
			tame = tame || !wildNode(sub)
		}
	}
	next()
	return out
}

// branches returns the top-level alternatives of a regexp, each of which
// is cut into segments on its own.
func branches(re *syntax.Regexp) []*syntax.Regexp {
	for re.Op == syntax.OpCapture {
		re = re.Sub[0]
	}
	if re.Op == syntax.OpAlternate {
		return re.Sub
	}
	return []*syntax.Regexp{re}
}

// wildNode reports whether a (non-literal) regexp node stands for any name:
// a repetition of a class or of '.' (".*", "[a-z-]+", "\\S{2,}"), or a
// group or alternation holding one. A single class ("[ab]", which the
// parser makes of "a|b") or a repeated literal is not.
func wildNode(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpStar, syntax.OpPlus:
		return repeatsAnyChar(re.Sub[0])
	case syntax.OpRepeat:
		return (re.Max == -1 || re.Max > 1) && repeatsAnyChar(re.Sub[0])
	case syntax.OpQuest, syntax.OpCapture:
		return wildNode(re.Sub[0])
	case syntax.OpAlternate:
		return slices.ContainsFunc(re.Sub, wildNode)
	case syntax.OpConcat:
		wild := false
		for _, sub := range re.Sub {
			switch {
			case emptyWidth(sub):
			case wildNode(sub):
				wild = true
			default:
				return false
			}
		}
		return wild
	}
	return false
}

// repeatsAnyChar reports whether a repeated node makes names of more than
// one character: '.', a class of several characters, or a wild node.
func repeatsAnyChar(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return true
	case syntax.OpCharClass:
		return len(re.Rune) > 2 || (len(re.Rune) == 2 && re.Rune[0] != re.Rune[1])
	}
	return wildNode(re)
}

func emptyWidth(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText,
		syntax.OpEndText, syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return true
	}
	return false
}
