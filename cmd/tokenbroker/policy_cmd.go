package main

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tokenbroker/tokenbroker/policy"
	"github.com/tokenbroker/tokenbroker/providers"
)

// errFailed makes a command exit 1 after it has printed why.
var errFailed = errors.New("policy: failed, see above")

func policyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Check, test and explain trust policies",
	}
	cmd.AddCommand(policyCheckCmd(), policyTestCmd(), policyExplainCmd(), policySchemaCmd())
	return cmd
}

// policySource is how a policy command finds its policies and issuers:
// with --config, exactly as serve does; without, from the built-in presets.
type policySource struct {
	config string
}

func (ps *policySource) flags(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&ps.config, "config", "c", "", "broker configuration: resolve provider: names and issuers exactly as serve does")
}

// load resolves the policy path (the argument, else the config's policies:)
// and loads it.
func (ps *policySource) load(args []string) (*policy.Set, string, error) {
	opts, cfgPolicies, err := ps.options()
	if err != nil {
		return nil, "", err
	}
	path := cfgPolicies
	if len(args) > 0 {
		path = args[0]
	}
	if path == "" {
		return nil, "", errors.New("policy: give a policy file or folder, or --config")
	}
	set, err := policy.LoadPath(path, opts)
	return set, path, err
}

// options returns the load options and the configured policy path.
//
// Without --config there is no provider table, so: provider: names the
// built-in presets that have a fixed issuer (e.g. github-actions), an
// issuer: of such a preset gets the preset's tenant and claim checks, and
// any other issuer: is accepted as an issuer of one tenant. With --config
// the configured providers are the table, as under serve, and an issuer:
// that is not configured is an error.
func (ps *policySource) options() (policy.LoadOptions, string, error) {
	if ps.config == "" {
		return policy.LoadOptions{Issuers: presetIssuers(), AllowUnknownIssuers: true}, "", nil
	}
	cfg, err := loadConfig(ps.config, os.Environ())
	if err != nil {
		return policy.LoadOptions{}, "", err
	}
	cfg.defaults()
	if err := cfg.validate(); err != nil {
		return policy.LoadOptions{}, "", err
	}
	// providers.New does no network I/O; discovery happens on Warm or on
	// the first token.
	reg, err := providers.New(cfg.providerConfigs(), providers.Options{})
	if err != nil {
		return policy.LoadOptions{}, "", fmt.Errorf("%s: providers: %w", cfg.file, err)
	}
	return policy.LoadOptions{Issuers: policyIssuers(reg)}, cfg.Policies, nil
}

// policyIssuers describes the configured providers to the policy loader.
func policyIssuers(reg *providers.Registry) []policy.Issuer {
	var issuers []policy.Issuer
	for _, p := range reg.Providers() {
		issuers = append(issuers, policy.Issuer{
			Name:             p.Name,
			URL:              p.Issuer,
			TenantClaims:     p.TenantClaims,
			KnownClaims:      sortedClaims(p.KnownClaims),
			RepositoryClaims: p.RepositoryClaims,
			Guardrails:       presetGuardrails(p),
		})
	}
	return issuers
}

// presetGuardrails turns a provider's preset guardrails into guardrails the
// policy loader applies to every token of the issuer.
func presetGuardrails(p providers.Provider) []policy.IssuerGuardrail {
	var out []policy.IssuerGuardrail
	for _, g := range p.Guardrails {
		out = append(out, policy.IssuerGuardrail{Name: g.QualifiedName(p.Preset), Claims: g.Claims, Allow: g.Allow, Why: g.Why})
	}
	return out
}

// presetIssuers is the issuer table without a configuration: every preset
// whose default issuer needs no parameter, named by the preset's name and
// resolved by providers.New (no I/O) as serve would resolve
// `preset: NAME` in the configuration.
func presetIssuers() []policy.Issuer {
	var issuers []policy.Issuer
	for _, p := range providers.Presets() {
		reg, err := providers.New([]providers.Config{{Name: p.Name, Preset: p.Name}}, providers.Options{})
		if err != nil {
			continue // the preset needs an issuer or parameters
		}
		issuers = append(issuers, policyIssuers(reg)...)
	}
	return issuers
}

func sortedClaims(m map[string]providers.ClaimType) []string {
	if m == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(m))
}

// printLoad prints a load's errors (one per line, file:line first) and its
// warnings, and says whether the load failed.
func (ps *policySource) printLoad(w io.Writer, set *policy.Set, err error) bool {
	if set != nil {
		for _, wn := range set.Warnings() {
			fmt.Fprintln(w, "WARNING:", wn)
		}
	}
	if err == nil {
		return false
	}
	errs := flatten(err)
	unknownProvider := false
	for _, e := range errs {
		fmt.Fprintln(w, "ERROR:", e)
		unknownProvider = unknownProvider || strings.Contains(e.Error(), "unknown provider")
	}
	if unknownProvider && ps.config == "" {
		var names []string
		for _, is := range presetIssuers() {
			names = append(names, is.Name)
		}
		fmt.Fprintf(w, "note: without --config, provider: names a built-in preset (%s); pass --config to use the broker's provider names\n", strings.Join(names, ", "))
	}
	fmt.Fprintf(w, "%d error(s)\n", len(errs))
	return true
}

// flatten unwraps errors.Join trees into their leaves.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

func policyCheckCmd() *cobra.Command {
	var ps policySource
	cmd := &cobra.Command{
		Use:   "check [PATH]",
		Short: "Load and lint policies; exit 1 on any error",
		Long: "Load and lint a policy file or folder (default: the config's policies:). " +
			"Errors name the file, line, policy and fix; warnings are printed loudly but do not fail.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			set, path, err := ps.load(args)
			if ps.printLoad(out, set, err) {
				return errFailed
			}
			fmt.Fprintf(out, "ok: %s: %d policies, %d guardrails, %d warning(s)\n", path, set.Len(), len(set.Guardrails()), len(set.Warnings()))
			return nil
		},
	}
	ps.flags(cmd)
	return cmd
}

func policyTestCmd() *cobra.Command {
	var ps policySource
	cmd := &cobra.Command{
		Use:   "test PATH",
		Short: "Run the policy test cases (*_test.yaml) kept next to the policies",
		Long: "PATH is a folder: its policies are loaded and its *_test.yaml files run against them. " +
			"PATH may also be one *_test.yaml file, run against the policies of its folder. " +
			"Exit 1 when a case fails or no case is found.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			dir := args[0]
			if policy.IsTestFile(filepath.Base(dir)) {
				dir = filepath.Dir(dir)
			} else if st, err := os.Stat(dir); err == nil && !st.IsDir() {
				return fmt.Errorf("policy test: %s is neither a folder nor a *_test.yaml file", dir)
			}
			set, _, err := ps.load([]string{dir})
			if ps.printLoad(out, set, err) {
				return errFailed
			}
			cases, err := policy.LoadTests(args[0])
			if err != nil {
				ps.printLoad(out, nil, err)
				return errFailed
			}
			if len(cases) == 0 {
				return fmt.Errorf("policy test: no test cases in %s (files named *_test.yaml)", args[0])
			}
			if failed := runTests(out, set, cases); failed > 0 {
				fmt.Fprintf(out, "FAIL: %d of %d test(s) failed\n", failed, len(cases))
				return errFailed
			}
			fmt.Fprintf(out, "ok: %d test(s) passed\n", len(cases))
			return nil
		},
	}
	ps.flags(cmd)
	return cmd
}

// runTests prints PASS or FAIL per case, with a diff for each failure, and
// returns the number of failures.
func runTests(w io.Writer, set *policy.Set, cases []*policy.TestCase) int {
	failed := 0
	for _, tc := range cases {
		r := set.RunTest(tc)
		where := fmt.Sprintf("%s:%d", tc.File, tc.Line)
		if r.Pass {
			fmt.Fprintf(w, "PASS  %s  %s\n", where, tc.Name)
			continue
		}
		failed++
		fmt.Fprintf(w, "FAIL  %s  %s\n", where, tc.Name)
		if r.Err != nil {
			fmt.Fprintf(w, "      error:    %v\n", r.Err)
			continue
		}
		fmt.Fprintf(w, "      expected: %s\n      got:      %s\n", tc.Expect, r.Got)
		for _, d := range r.Details {
			fmt.Fprintf(w, "      %s\n", d)
		}
	}
	return failed
}

func policyExplainCmd() *cobra.Command {
	var ps policySource
	var claimsFile, token, tokenType string
	var targets, scopes []string
	cmd := &cobra.Command{
		Use:   "explain [PATH] --claims FILE | --token JWT",
		Short: "Show, for every policy and guardrail, whether it matches a token and why not",
		Long: "Evaluate a token's claims (a JSON or YAML file, or a JWT whose signature is NOT checked) " +
			"against every guardrail and policy, printing the first failing condition of each " +
			"with the expected and actual value, then the decision the broker would make.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			claims, err := explainClaims(cmd.InOrStdin(), claimsFile, token)
			if err != nil {
				return err
			}
			req, err := policy.RequestFromClaims(claims)
			if err != nil {
				return err
			}
			req.TokenType, req.Targets, req.Scopes = tokenType, targets, splitScopes(scopes)
			set, _, err := ps.load(args)
			if ps.printLoad(cmd.ErrOrStderr(), set, err) {
				return errFailed
			}
			printExplain(out, set, req)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&claimsFile, "claims", "", "file holding the token's claims (JSON or YAML); - for stdin")
	f.StringVar(&token, "token", "", "a CI ID token (JWT; its signature is not checked); - for stdin")
	f.StringArrayVar(&targets, "audience", nil, "requested audience of the credential (repeatable)")
	f.StringArrayVar(&scopes, "scope", nil, "requested scope (repeatable, or space-separated)")
	f.StringVar(&tokenType, "type", policy.GrantJWT, "requested credential type: jwt or api_key")
	cmd.MarkFlagsMutuallyExclusive("claims", "token")
	cmd.MarkFlagsOneRequired("claims", "token")
	ps.flags(cmd)
	return cmd
}

func splitScopes(in []string) []string {
	var out []string
	for _, s := range in {
		out = append(out, strings.Fields(s)...)
	}
	return out
}

func explainClaims(stdin io.Reader, claimsFile, token string) (map[string]any, error) {
	read := func(name string) ([]byte, error) {
		if name == "-" {
			return io.ReadAll(io.LimitReader(stdin, 1<<20))
		}
		return os.ReadFile(name)
	}
	if token != "" {
		if token == "-" {
			data, err := read("-")
			if err != nil {
				return nil, fmt.Errorf("policy explain: %w", err)
			}
			token = string(data)
		}
		return policy.TokenClaims(token)
	}
	data, err := read(claimsFile)
	if err != nil {
		return nil, fmt.Errorf("policy explain: %w", err)
	}
	return policy.ParseClaims(data)
}

// printExplain prints one line per guardrail and policy, then the decision.
func printExplain(w io.Writer, set *policy.Set, req policy.Request) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, e := range set.Explain(req) {
		verdict := "no match"
		switch {
		case e.Matched && e.Kind == "guardrail":
			verdict = "MATCH: denies"
		case e.Matched:
			verdict = "MATCH: allows"
		}
		where := e.File // an issuer guardrail: "provider NAME"
		if e.Line > 0 {
			where = fmt.Sprintf("%s:%d", e.File, e.Line)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s", e.Kind, e.Name, where, verdict)
		if e.Error != "" { // a guardrail whose condition failed denies (fail closed)
			fmt.Fprintf(tw, " (condition failed: %s)", e.Error)
		}
		if !e.Matched {
			fmt.Fprintf(tw, ": %s: expected %s, got %s", e.Check, e.Expected, e.Actual)
		}
		fmt.Fprintln(tw)
	}
	_ = tw.Flush()
	d, err := set.Evaluate(req)
	var deny *policy.DenyError
	switch {
	case err == nil:
		fmt.Fprintf(w, "decision: allow %s (candidates: %s; single_use: %t; grant: %s audience %q scopes %q ttl %s",
			d.Policy, strings.Join(d.Candidates, ", "), d.SingleUse, d.Grant.Type, d.Grant.Audience, d.Grant.Scopes, d.Grant.TTL)
		if len(d.Lifted) > 0 {
			fmt.Fprintf(w, "; lifted: %s", strings.Join(d.Lifted, ", "))
		}
		fmt.Fprintln(w, ")")
	case errors.As(err, &deny):
		fmt.Fprintf(w, "decision: deny %s: %s\n", deny.Code.ErrorCode(), deny.Reason)
	default:
		fmt.Fprintf(w, "decision: error: %v\n", err)
	}
}

func policySchemaCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of policy files, for editor completion",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := cmd.OutOrStdout().Write(policy.Schema())
			return err
		},
	}
}
