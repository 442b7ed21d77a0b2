package main

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tokenbroker/tokenbroker/providers"
)

// providersCmd is `tokenbroker providers list|show NAME`: the CI provider
// presets, their issuers, subjects, claims and tenant pins.
func providersCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "providers",
		Short: "Describe the CI provider presets",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the presets with their issuer and tenant pin",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			w := cmd.OutOrStdout()
			for _, p := range providers.Presets() {
				issuer := "(configured issuer)"
				if len(p.Issuers) > 0 {
					issuer = p.Issuers[0].Template
				}
				pin := "-"
				if p.Shared {
					pin = strings.Join(p.TenantClaims, " | ")
				}
				fmt.Fprintf(w, "%-20s %-50s pin: %s\n", p.Name, issuer, pin)
			}
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "show NAME",
		Short: "Show a preset: issuers, subject formats, claims, tenant pin, guardrails",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, ok := providers.LookupPreset(args[0])
			if !ok {
				return fmt.Errorf("unknown preset %q (see `tokenbroker providers list`)", args[0])
			}
			showPreset(cmd.OutOrStdout(), p)
			return nil
		},
	})
	return cmd
}

// showPreset prints one preset for humans; the guardrails as YAML to paste
// into a policy file.
func showPreset(w io.Writer, p providers.Preset) {
	fmt.Fprintf(w, "%s: %s\n\nissuers:\n", p.Name, p.Description)
	if len(p.Issuers) == 0 {
		fmt.Fprintln(w, "  set issuer: in the provider's configuration")
	}
	for _, it := range p.Issuers {
		fmt.Fprintf(w, "  %s  (%s)\n", it.Template, it.Doc)
	}
	if p.Shared {
		fmt.Fprintf(w, "\nshared issuer: every policy must pin claims.%s\n", strings.Join(p.TenantClaims, " or claims."))
	}
	section(w, "subject formats", p.SubjectFormats)
	if p.Claims != nil {
		var lines []string
		for _, n := range p.ClaimNames() {
			lines = append(lines, fmt.Sprintf("%-45s %s", n, p.Claims[n]))
		}
		section(w, "claims", lines)
	}
	fmt.Fprintf(w, "\nalgorithms: %s\ntoken: %s\n", strings.Join(p.Algorithms, ", "), p.TokenSource)
	if p.Audience != "" {
		fmt.Fprintf(w, "audience: %s\n", p.Audience)
	}
	if len(p.Guardrails) > 0 {
		fmt.Fprintln(w, "\nguardrails applied to every token of this issuer (a policy opts out only with allow: [KEY]):")
		for _, g := range p.Guardrails {
			fmt.Fprintf(w, "  - name: %s    # %s\n    allow key: %s\n    claims:\n", g.QualifiedName(p.Name), g.Why, g.Allow)
			keys := make([]string, 0, len(g.Claims))
			for k := range g.Claims {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(w, "      %q: %q\n", k, g.Claims[k])
			}
		}
	}
	section(w, "notes", p.Notes)
}

// section prints a titled list; nothing when empty.
func section(w io.Writer, title string, lines []string) {
	if len(lines) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%s:\n", title)
	for _, l := range lines {
		fmt.Fprintf(w, "  %s\n", l)
	}
}
