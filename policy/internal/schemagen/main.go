// Command schemagen writes the JSON Schema of policy files from the Go types
// of package policy: it reads their source (struct fields, yaml and schema
// tags, doc comments), so the schema and its descriptions follow the code.
//
//	go run ./internal/schemagen -dir . -out policy.schema.json
//
// Tags: `yaml:"key"` names a property (`yaml:"-"` hides the field);
// `schema:"required"` marks it required; `schema:"enum=a|b"` lists its values.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
)

// schemaID is the $id of the generated schema.
const schemaID = "https://github.com/tokenbroker/tokenbroker/policy/policy.schema.json"

// durationPattern is what time.ParseDuration accepts, as policies write it.
const durationPattern = `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`

func main() {
	dir := flag.String("dir", ".", "directory of package policy")
	out := flag.String("out", "policy.schema.json", "output file")
	flag.Parse()
	data, err := generate(*dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "schemagen:", err)
		os.Exit(1)
	}
	if err := os.WriteFile(*out, data, 0o644); err != nil { //nolint:gosec // G306: a source file committed to the repository, readable by design
		fmt.Fprintln(os.Stderr, "schemagen:", err)
		os.Exit(1)
	}
}

// generate returns the schema of a policy file, rooted at type File.
func generate(dir string) ([]byte, error) {
	types, err := structTypes(dir)
	if err != nil {
		return nil, err
	}
	g := &gen{types: types, defs: map[string]any{}}
	root, err := g.object("File")
	if err != nil {
		return nil, err
	}
	root["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	root["$id"] = schemaID
	root["title"] = "tokenbroker trust policy file"
	root["$defs"] = g.defs
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(root); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

type typeDecl struct {
	doc string
	st  *ast.StructType
}

// structTypes returns the struct types declared in the non-test Go files of dir.
func structTypes(dir string) (map[string]typeDecl, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	fset := token.NewFileSet()
	out := map[string]typeDecl{}
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
		if err != nil {
			return nil, err
		}
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, spec := range gd.Specs {
				ts := spec.(*ast.TypeSpec)
				if st, ok := ts.Type.(*ast.StructType); ok {
					out[ts.Name.Name] = typeDecl{doc: text(gd.Doc, ts.Name.Name, ""), st: st}
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no struct types found in " + dir)
	}
	return out, nil
}

type gen struct {
	types map[string]typeDecl
	defs  map[string]any
}

// object returns the schema of a struct type: its tagged fields.
func (g *gen) object(name string) (map[string]any, error) {
	td, ok := g.types[name]
	if !ok {
		return nil, fmt.Errorf("type %s not found", name)
	}
	props := map[string]any{}
	var required []string
	for _, f := range td.st.Fields.List {
		if f.Tag == nil || len(f.Names) != 1 {
			continue
		}
		tagText, err := strconv.Unquote(f.Tag.Value)
		if err != nil {
			return nil, err
		}
		tag := reflect.StructTag(tagText)
		key, _, _ := strings.Cut(tag.Get("yaml"), ",")
		if key == "" || key == "-" {
			continue
		}
		s, err := g.fieldType(f.Type)
		if err != nil {
			return nil, fmt.Errorf("%s.%s: %w", name, f.Names[0].Name, err)
		}
		if d := text(f.Doc, f.Names[0].Name, key); d != "" {
			s["description"] = d
		}
		for _, opt := range strings.Split(tag.Get("schema"), ",") {
			switch {
			case opt == "required":
				required = append(required, key)
			case strings.HasPrefix(opt, "enum="):
				values := strings.Split(strings.TrimPrefix(opt, "enum="), "|")
				if items, ok := s["items"].(map[string]any); ok {
					items["enum"] = values
				} else {
					s["enum"] = values
				}
			}
		}
		props[key] = s
	}
	out := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if td.doc != "" {
		out["description"] = td.doc
	}
	if len(required) > 0 {
		out["required"] = required
	}
	return out, nil
}

// fieldType maps a Go field type to its schema.
func (g *gen) fieldType(e ast.Expr) (map[string]any, error) {
	switch t := e.(type) {
	case *ast.Ident:
		switch t.Name {
		case "string":
			return map[string]any{"type": "string"}, nil
		case "bool":
			return map[string]any{"type": "boolean"}, nil
		case "int":
			return map[string]any{"type": "integer", "minimum": 0}, nil
		}
		if _, ok := g.types[t.Name]; ok {
			if _, done := g.defs[t.Name]; !done {
				g.defs[t.Name] = nil // guard against recursion
				def, err := g.object(t.Name)
				if err != nil {
					return nil, err
				}
				g.defs[t.Name] = def
			}
			return map[string]any{"$ref": "#/$defs/" + t.Name}, nil
		}
	case *ast.StarExpr:
		return g.fieldType(t.X)
	case *ast.SelectorExpr:
		if x, ok := t.X.(*ast.Ident); ok && x.Name == "time" && t.Sel.Name == "Duration" {
			return map[string]any{"type": "string", "pattern": durationPattern}, nil
		}
	case *ast.ArrayType:
		items, err := g.fieldType(t.Elt)
		if err != nil {
			return nil, err
		}
		return map[string]any{"type": "array", "items": items}, nil
	case *ast.MapType:
		if k, ok := t.Key.(*ast.Ident); ok && k.Name == "string" {
			if v, ok := t.Value.(*ast.Ident); ok && v.Name == "string" {
				// Values are read as text: numbers and booleans are accepted
				// and compared as their JSON text.
				return map[string]any{"type": "object", "additionalProperties": map[string]any{"type": []string{"string", "number", "boolean"}}}, nil
			}
		}
	}
	return nil, fmt.Errorf("unsupported field type %T", e)
}

// text returns a doc comment as one line; a leading Go name is replaced by
// the YAML key the user writes.
func text(cg *ast.CommentGroup, goName, key string) string {
	if cg == nil {
		return ""
	}
	s := strings.Join(strings.Fields(cg.Text()), " ")
	if key != "" {
		if rest, ok := strings.CutPrefix(s, goName+" "); ok {
			s = key + " " + rest
		}
	}
	return s
}
