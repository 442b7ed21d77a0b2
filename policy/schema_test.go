package policy

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestSchemaMatchesLanguage checks what the generator cannot see in the
// types: the enums of schema tags against the constants of the language.
// (internal/schemagen tests that policy.schema.json is freshly generated.)
func TestSchemaMatchesLanguage(t *testing.T) {
	var s struct {
		Required   []string `json:"required"`
		Properties map[string]struct {
			Items struct {
				Ref string `json:"$ref"`
			} `json:"items"`
		} `json:"properties"`
		Defs map[string]struct {
			Required   []string `json:"required"`
			Properties map[string]struct {
				Enum  []string `json:"enum"`
				Items struct {
					Enum []string `json:"enum"`
				} `json:"items"`
			} `json:"properties"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(Schema(), &s); err != nil {
		t.Fatalf("Schema() is not JSON: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"top-level keys", []string{s.Properties["policies"].Items.Ref, s.Properties["guardrails"].Items.Ref}, []string{"#/$defs/Policy", "#/$defs/Guardrail"}},
		// The preset guardrails' allow keys come from providers (which
		// providers/integration checks against this enum).
		{"allow enum", s.Defs["Policy"].Properties["allow"].Items.Enum, append(slices.Clone(lintKeys), "pull_request_target", "ssh_rerun")},
		{"grant type enum", s.Defs["GrantSpec"].Properties["type"].Enum, []string{GrantJWT, GrantAPIKey}},
		{"policy required", s.Defs["Policy"].Required, []string{"name", "audience", "grant"}},
		{"grant required", s.Defs["GrantSpec"].Required, []string{"audience", "ttl"}},
		{"guardrail required", s.Defs["Guardrail"].Required, []string{"name"}},
	}
	for _, c := range checks {
		if diff := cmp.Diff(c.want, c.got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", c.name, diff)
		}
	}
}
