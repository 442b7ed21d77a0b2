package policy

import _ "embed"

//go:generate go run ./internal/schemagen -dir . -out policy.schema.json

//go:embed policy.schema.json
var schema []byte

// Schema returns the JSON Schema (draft 2020-12) of a policy file,
// generated from the Go types of this package, for editor completion: e.g.
// a `# yaml-language-server: $schema=...` line at the top of a policy file.
func Schema() []byte { return append([]byte(nil), schema...) }
