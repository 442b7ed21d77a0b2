package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestCommittedSchemaIsGenerated fails when policy.schema.json is stale:
// run `go generate ./policy` after changing the policy types.
func TestCommittedSchemaIsGenerated(t *testing.T) {
	dir := filepath.Join("..", "..")
	want, err := generate(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "policy.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("policy/policy.schema.json is stale; run go generate ./policy (-generated +committed):\n%s", diff)
	}
}

func TestGenerateRefusesUnknownTypes(t *testing.T) {
	dir := t.TempDir()
	src := "package policy\n\ntype File struct {\n\tC chan int `yaml:\"c\"`\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "x.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := generate(dir); err == nil {
		t.Fatal("generate accepted a chan field")
	}
}
