package policy

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Limits on the YAML of a claim set: aliases may repeat a node, and each
// repetition is decoded again.
const (
	maxClaimDepth = 32
	maxClaimNodes = 100_000
)

// claimError is a claim of a YAML claim set that is not JSON data as a
// verifier hands it over, at the node that holds it.
type claimError struct {
	node *yaml.Node
	path string
	msg  string
}

func (e *claimError) Error() string {
	if e.path == "" {
		return fmt.Sprintf("line %d: %s", e.node.Line, e.msg)
	}
	return fmt.Sprintf("line %d: %s: %s", e.node.Line, e.path, e.msg)
}

// claimDecoder converts YAML nodes to the JSON data model by their source
// text, never by what YAML makes of it: 017, 0x1F, 1.0, 1e3 are not the
// numbers a token carries (write them as JSON does, or quote them), and a
// date stays the string it is written as.
type claimDecoder struct {
	nodes    int
	tooLarge bool
	errs     []*claimError
}

func (d *claimDecoder) errorf(n *yaml.Node, path, format string, args ...any) any {
	d.errs = append(d.errs, &claimError{node: n, path: path, msg: fmt.Sprintf(format, args...)})
	return nil
}

func (d *claimDecoder) value(n *yaml.Node, path string, depth int) any {
	n = deref(n)
	if d.nodes++; d.nodes > maxClaimNodes || depth > maxClaimDepth {
		if !d.tooLarge {
			d.tooLarge = true
			d.errorf(n, path, "too deep or too large (aliases included): at most %d levels and %d values", maxClaimDepth, maxClaimNodes)
		}
		return nil
	}
	switch n.Kind {
	case yaml.MappingNode:
		return d.mapping(n, path, depth)
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for i, c := range n.Content {
			out = append(out, d.value(c, fmt.Sprintf("%s[%d]", path, i), depth+1))
		}
		return out
	case yaml.ScalarNode:
		return d.scalar(n, path)
	}
	return d.errorf(n, path, "not JSON data")
}

func (d *claimDecoder) scalar(n *yaml.Node, path string) any {
	switch tag := n.ShortTag(); tag {
	case "!!str", "!!timestamp":
		return n.Value
	case "!!null":
		return nil
	case "!!bool":
		if b, ok := yamlBool(n.Value); ok {
			return b
		}
		return d.errorf(n, path, "invalid bool %q: write true or false, or quote it", n.Value)
	case "!!int", "!!float":
		if canonicalNumber(n.Value) {
			return json.Number(n.Value)
		}
		return d.errorf(n, path, "number %s is not in canonical JSON form, which is how a token carries numbers: write it as JSON does (e.g. 31, -2, 1.5), or quote it for a string", n.Value)
	default:
		return d.errorf(n, path, "%s is not JSON data: quote the value", tag)
	}
}

// mapping decodes a mapping, applying YAML merge keys (<<: *anchor, or a
// list of them): the mapping's own keys win over merged ones, and an
// earlier merged mapping over a later one.
func (d *claimDecoder) mapping(n *yaml.Node, path string, depth int) map[string]any {
	out := map[string]any{}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!null" {
			d.errorf(k, path, "claim names must be strings")
			continue
		}
		if k.ShortTag() == "!!merge" {
			merges = append(merges, v)
			continue
		}
		if _, dup := out[k.Value]; dup {
			d.errorf(k, join(path, k.Value), "duplicate claim")
			continue
		}
		out[k.Value] = d.value(v, join(path, k.Value), depth+1)
	}
	for _, m := range merges {
		srcs := []*yaml.Node{deref(m)}
		if srcs[0].Kind == yaml.SequenceNode {
			srcs = srcs[0].Content
		}
		for _, src := range srcs {
			if deref(src).Kind != yaml.MappingNode {
				d.errorf(src, path, "<< merges a mapping or a list of mappings")
				continue
			}
			for name, v := range d.mapping(deref(src), path, depth+1) {
				if _, set := out[name]; !set {
					out[name] = v
				}
			}
		}
	}
	return out
}

// decodeYAMLClaims converts a YAML mapping to the claims a verifier hands
// over (the JSON data model, numbers as json.Number), with every claim
// that is not such data.
func decodeYAMLClaims(n *yaml.Node) (map[string]any, []*claimError) {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		return nil, []*claimError{{node: n, msg: "must be a mapping of claims"}}
	}
	var d claimDecoder
	claims := d.mapping(n, "", 0)
	if len(d.errs) > 0 {
		return nil, d.errs
	}
	return claims, nil
}

// yamlClaims is decodeYAMLClaims with the errors joined.
func yamlClaims(n *yaml.Node) (map[string]any, error) {
	claims, cerrs := decodeYAMLClaims(n)
	errs := make([]error, 0, len(cerrs))
	for _, e := range cerrs {
		errs = append(errs, e)
	}
	return claims, errors.Join(errs...)
}

// ParseClaims parses a token's claims written as a JSON or YAML object, as
// `policy explain --claims` reads them; numbers become json.Number, and a
// number not written as JSON writes it (017, 0x1F, 1.0) is refused.
func ParseClaims(data []byte) (map[string]any, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("policy: claims: %w", err)
	}
	if len(doc.Content) == 0 {
		return nil, errors.New("policy: claims: empty document")
	}
	claims, err := yamlClaims(doc.Content[0])
	if err != nil {
		return nil, fmt.Errorf("policy: claims: %w", err)
	}
	return claims, nil
}

// TokenClaims decodes the payload of a compact JWS without checking its
// signature: it is for test cases and `policy explain`, never for
// authorizing anything.
func TokenClaims(token string) (map[string]any, error) {
	parts := strings.Split(strings.TrimSpace(token), ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("policy: token: want a compact JWS (three dot-separated parts), got %d parts", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return nil, fmt.Errorf("policy: token payload: %w", err)
	}
	claims, err := decodeClaims(payload)
	if err != nil {
		return nil, fmt.Errorf("policy: token payload: %w", err)
	}
	return claims, nil
}

// decodeClaims decodes a JSON object with numbers as json.Number.
func decodeClaims(data []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	if claims == nil {
		return nil, errors.New("not a JSON object")
	}
	if dec.More() {
		return nil, errors.New("trailing data after the JSON object")
	}
	return claims, nil
}
