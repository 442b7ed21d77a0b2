package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Parse parses one policy file. It checks the shape only (known keys, value
// types, durations); NewSet compiles and lints. Every error of the file is
// returned, joined; each is an *Error naming file, line, policy and key.
func Parse(filename string, data []byte) (*File, error) {
	f := &File{Name: filename}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return f, nil // an empty file holds no policies
		}
		return nil, &Error{File: filename, Err: fmt.Errorf("invalid YAML: %w", err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, &Error{File: filename, Line: extra.Line, Err: errors.New("only one YAML document per file is allowed")}
	}
	p := &parser{file: filename}
	root := deref(&doc)
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return f, nil
		}
		root = deref(root.Content[0])
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return f, nil
	}
	p.mapping(root, "", "", func(key string, v *yaml.Node) {
		switch key {
		case "policies":
			for _, n := range p.seq(v, "", key) {
				if pol := p.policy(n); pol != nil {
					f.Policies = append(f.Policies, pol)
				}
			}
		case "guardrails":
			for _, n := range p.seq(v, "", key) {
				if g := p.guardrail(n); g != nil {
					f.Guardrails = append(f.Guardrails, g)
				}
			}
		default:
			p.errf(v, "", key, "unknown key (want policies or guardrails)")
		}
	})
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return f, nil
}

type parser struct {
	file string
	errs []error
}

func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 16; i++ {
		n = n.Alias
	}
	return n
}

func (p *parser) errf(n *yaml.Node, rule, key, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: n.Line, Rule: rule, Key: key, Err: fmt.Errorf(format, args...)})
}

// mapping calls fn for each key of a mapping node, refusing duplicate keys
// and non-scalar keys.
func (p *parser) mapping(n *yaml.Node, rule, path string, fn func(key string, v *yaml.Node)) {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		p.errf(n, rule, path, "must be a mapping")
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		key := join(path, k.Value)
		if k.Kind != yaml.ScalarNode {
			p.errf(k, rule, path, "keys must be scalars")
			continue
		}
		if seen[k.Value] {
			p.errf(k, rule, key, "duplicate key")
			continue
		}
		seen[k.Value] = true
		fn(k.Value, v)
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (p *parser) seq(n *yaml.Node, rule, key string) []*yaml.Node {
	n = deref(n)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.errf(n, rule, key, "must be a list")
		return nil
	}
	out := make([]*yaml.Node, 0, len(n.Content))
	for _, c := range n.Content {
		out = append(out, deref(c))
	}
	return out
}

// scalar returns the text of a string, number or bool scalar. Claim values
// compare with the token's numbers and booleans as their JSON text, so an
// unquoted YAML bool or number must mean that text:
//   - a bool is canonicalised (True, TRUE -> true);
//   - a number is refused unless its text is already the JSON text a token
//     would carry (0x1F, +1, 1.0, 1e3, .inf are refused, with a hint to
//     quote the value), rather than silently compared as written;
//   - a string (quoted or plain) stays exactly as written.
func (p *parser) scalar(n *yaml.Node, rule, key string) string {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.errf(n, rule, key, "must be a string")
		return ""
	}
	switch n.Tag {
	case "!!str", "":
		return n.Value
	case "!!bool":
		b, ok := yamlBool(n.Value)
		if !ok {
			p.errf(n, rule, key, "invalid bool %q: write true or false, or quote it", n.Value)
			return ""
		}
		return strconv.FormatBool(b)
	case "!!int", "!!float":
		if !canonicalNumber(n.Value) {
			p.errf(n, rule, key, "number %s is not in canonical JSON form (claims compare as the token's JSON text): write it as JSON does (e.g. 31, -2, 1.5), or quote it to compare as written", n.Value)
			return ""
		}
		return n.Value
	}
	p.errf(n, rule, key, "must be a string, number or bool, not %s", n.Tag)
	return ""
}

// yamlBool reads the YAML 1.2 core schema booleans (true, True, TRUE and
// the same for false), the only ones the decoder tags !!bool unless the
// tag is explicit.
func yamlBool(s string) (bool, bool) {
	switch s {
	case "true", "True", "TRUE":
		return true, true
	case "false", "False", "FALSE":
		return false, true
	}
	return false, false
}

// canonicalNumber reports whether s is the shortest JSON text of the number
// it denotes: an integer without sign, leading zeros or base prefix, or a
// decimal fraction without exponent or trailing zeros.
func canonicalNumber(s string) bool {
	if digits := strings.TrimPrefix(s, "-"); canonicalDigits(digits) {
		return s != "-0" // any length: compared as text, never parsed
	}
	f, err := strconv.ParseFloat(s, 64)
	return err == nil && strings.Contains(s, ".") && strconv.FormatFloat(f, 'f', -1, 64) == s
}

// canonicalDigits reports whether s is a run of ASCII digits without a
// leading zero (or "0" itself).
func canonicalDigits(s string) bool {
	if s == "" || (s[0] == '0' && len(s) > 1) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func (p *parser) boolean(n *yaml.Node, rule, key string) bool {
	b, ok := yamlBool(n.Value)
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || !ok {
		p.errf(n, rule, key, "must be true or false, not %q", n.Value)
		return false
	}
	return b
}

func (p *parser) list(n *yaml.Node, rule, key string) []string {
	var out []string
	for _, c := range p.seq(n, rule, key) {
		out = append(out, p.scalar(c, rule, key))
	}
	return out
}

func (p *parser) strmap(n *yaml.Node, rule, key string, lines map[string]int) map[string]string {
	out := map[string]string{}
	p.mapping(n, rule, key, func(k string, v *yaml.Node) {
		lines[join(key, k)] = v.Line
		out[k] = p.scalar(v, rule, join(key, k))
	})
	return out
}

func (p *parser) policy(n *yaml.Node) *Policy {
	pol := &Policy{File: p.file, Line: n.Line, lines: map[string]int{}}
	if n.Kind == yaml.MappingNode {
		pol.Name = nameOf(n)
	}
	rule := fmt.Sprintf("policy %q", pol.Name)
	before := len(p.errs)
	p.mapping(n, rule, "", func(key string, v *yaml.Node) {
		pol.lines[key] = v.Line
		switch key {
		case "name":
			pol.Name = p.scalar(v, rule, key)
		case "issuer":
			pol.Issuer = p.scalar(v, rule, key)
		case "provider":
			pol.Provider = p.scalar(v, rule, key)
		case "audience":
			pol.Audience = p.scalar(v, rule, key)
		case "subject":
			pol.Subject = p.scalar(v, rule, key)
		case "subject_pattern":
			pol.SubjectPattern = p.scalar(v, rule, key)
		case "claims":
			pol.Claims = p.strmap(v, rule, key, pol.lines)
		case "condition":
			pol.Condition = p.scalar(v, rule, key)
		case "single_use":
			b := p.boolean(v, rule, key)
			pol.SingleUse = &b
		case "allow":
			pol.Allow = p.list(v, rule, key)
		case "allow_extra_audiences":
			pol.AllowExtraAudiences = p.boolean(v, rule, key)
		case "grant":
			p.grant(v, rule, pol)
		default:
			p.errf(v, rule, key, "unknown key")
		}
	})
	if len(p.errs) > before {
		return nil
	}
	return pol
}

func (p *parser) grant(n *yaml.Node, rule string, pol *Policy) {
	g := &pol.Grant
	p.mapping(n, rule, "grant", func(key string, v *yaml.Node) {
		path := "grant." + key
		pol.lines[path] = v.Line
		switch key {
		case "type":
			g.Type = p.scalar(v, rule, path)
		case "audience":
			g.Audience = p.list(v, rule, path)
		case "scopes":
			g.Scopes = p.list(v, rule, path)
		case "ttl":
			s := p.scalar(v, rule, path)
			d, err := time.ParseDuration(s)
			if err != nil {
				p.errf(v, rule, path, "invalid duration %q", s)
			}
			g.TTL = d
		case "uses":
			s := p.scalar(v, rule, path)
			u, err := strconv.Atoi(s)
			if err != nil {
				p.errf(v, rule, path, "invalid number %q", s)
			}
			g.Uses = u
		case "claims":
			g.Claims = p.strmap(v, rule, path, pol.lines)
		default:
			p.errf(v, rule, path, "unknown key")
		}
	})
}

func (p *parser) guardrail(n *yaml.Node) *Guardrail {
	g := &Guardrail{File: p.file, Line: n.Line, lines: map[string]int{}}
	if n.Kind == yaml.MappingNode {
		g.Name = nameOf(n)
	}
	rule := fmt.Sprintf("guardrail %q", g.Name)
	before := len(p.errs)
	p.mapping(n, rule, "", func(key string, v *yaml.Node) {
		g.lines[key] = v.Line
		switch key {
		case "name":
			g.Name = p.scalar(v, rule, key)
		case "issuer":
			g.Issuer = p.scalar(v, rule, key)
		case "provider":
			g.Provider = p.scalar(v, rule, key)
		case "subject":
			g.Subject = p.scalar(v, rule, key)
		case "subject_pattern":
			g.SubjectPattern = p.scalar(v, rule, key)
		case "claims":
			g.Claims = p.strmap(v, rule, key, g.lines)
		case "condition":
			g.Condition = p.scalar(v, rule, key)
		default:
			p.errf(v, rule, key, "unknown key")
		}
	})
	if len(p.errs) > before {
		return nil
	}
	return g
}

// nameOf peeks at the name key so that every error of the rule names it.
func nameOf(n *yaml.Node) string {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k, v := deref(n.Content[i]), deref(n.Content[i+1]); k.Value == "name" && v.Kind == yaml.ScalarNode {
			return v.Value
		}
	}
	return ""
}
