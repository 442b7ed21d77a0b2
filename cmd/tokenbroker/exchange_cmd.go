package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/oauth2"

	"github.com/tokenbroker/tokenbroker/exchange/client"
)

// Exit codes of `tokenbroker exchange`, so a pipeline can tell the failed
// step apart (documented in README.md).
const (
	exitOK          = 0
	exitUsage       = 2 // bad flags or configuration
	exitIDToken     = 3 // step 1: getting the CI ID token
	exitRefused     = 4 // step 2: the broker refused (4xx: policy, audience, scope)
	exitUnavailable = 5 // step 2: broker unreachable, 429 or 5xx: retrying may help
	exitOutput      = 6 // step 3: writing the credential
)

// exchangeOptions are the flags of `tokenbroker exchange`.
type exchangeOptions struct {
	broker, tokenType, output, name, source, variable, file, idAudience string
	audiences, scopes                                                   []string
	githubOutput                                                        bool
	timeout                                                             time.Duration
}

func exchangeCmd() *cobra.Command {
	var o exchangeOptions
	cmd := &cobra.Command{
		Use:   "exchange",
		Short: "Exchange this CI job's OIDC ID token for a credential (for pipeline steps)",
		Long: `exchange gets the CI system's OIDC ID token (detected from the environment, or
--id-token-source), exchanges it at the broker's POST /token and writes the
credential: raw (stdout), json, env (an export line), or github (masked, into
$GITHUB_ENV or $GITHUB_OUTPUT under --name).

Exit codes: 0 ok; 2 usage; 3 could not get the CI ID token; 4 the broker
refused the exchange; 5 the broker is unreachable or failing (retry later);
6 could not write the output.`,
		Args: func(cmd *cobra.Command, args []string) error {
			return usageError(cmd, cobra.NoArgs(cmd, args))
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if code := runExchange(cmd.Context(), o, os.Getenv, cmd.OutOrStdout(), cmd.ErrOrStderr()); code != exitOK {
				return &exitError{code: code}
			}
			return nil
		},
	}
	cmd.SetFlagErrorFunc(usageError)
	f := cmd.Flags()
	f.StringVar(&o.broker, "broker", "", "broker base URL (default $TOKENBROKER_URL)")
	f.StringArrayVar(&o.audiences, "audience", nil, "audience of the credential (repeatable)")
	f.StringArrayVar(&o.scopes, "scope", nil, "scope to request (repeatable, or space-separated)")
	f.StringVar(&o.tokenType, "type", "jwt", "credential type: jwt or api_key")
	f.StringVar(&o.output, "output", "raw", "raw, json, env or github")
	f.StringVar(&o.name, "name", "TOKENBROKER_TOKEN", "variable name for --output env and github")
	f.BoolVar(&o.githubOutput, "github-output", false, "with --output github: write to $GITHUB_OUTPUT (a step output) instead of $GITHUB_ENV")
	f.StringVar(&o.source, "id-token-source", client.SourceAuto, "where the CI ID token comes from: auto, "+strings.Join(client.SourceKinds, ", "))
	f.StringVar(&o.variable, "id-token-var", client.DefaultIDTokenVariable, "environment variable of the gitlab and env sources")
	f.StringVar(&o.file, "id-token-file", "", "file holding the ID token (the file source)")
	f.StringVar(&o.idAudience, "id-token-audience", "", "audience to request for the CI ID token where the CI system allows it (default: the broker URL)")
	f.DurationVar(&o.timeout, "timeout", time.Minute, "overall time limit")
	return cmd
}

// usageError prints a flag or argument error of `tokenbroker exchange` and
// turns it into the documented exit code 2 (cobra's errors would exit 1).
func usageError(cmd *cobra.Command, err error) error {
	if err == nil {
		return nil
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "tokenbroker exchange: %v (see --help)\n", err)
	return &exitError{code: exitUsage}
}

// runExchange does the three steps and returns the exit code; every failure
// is one line on stderr naming the step.
func runExchange(ctx context.Context, o exchangeOptions, getenv func(string) string, stdout, stderr io.Writer) int {
	fail := func(code int, format string, args ...any) int {
		fmt.Fprintf(stderr, "tokenbroker exchange: "+format+"\n", args...)
		return code
	}
	if o.broker == "" {
		o.broker = getenv("TOKENBROKER_URL")
	}
	if o.broker == "" {
		return fail(exitUsage, "--broker (or $TOKENBROKER_URL) is required")
	}
	if err := checkOutput(o); err != nil {
		return fail(exitUsage, "%v", err)
	}
	src, kind, err := client.NewIDTokenSource(client.SourceOptions{Kind: o.source, Variable: o.variable, File: o.file, Getenv: getenv})
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	c, err := client.New(client.Config{
		BrokerURL: o.broker, Audience: o.audiences, Scopes: exchangeScopes(o.scopes),
		TokenType: o.tokenType, IDTokenSource: src, IDTokenAudience: o.idAudience,
	})
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	tok, err := c.Exchange(ctx)
	var idErr *client.IDTokenError
	var brokerErr *client.BrokerError
	switch {
	case errors.As(err, &idErr):
		return fail(exitIDToken, "step 1/3 failed: getting the CI ID token (source %s): %v", kind, idErr.Err)
	case errors.As(err, &brokerErr):
		code := exitRefused
		if brokerErr.Temporary() {
			code = exitUnavailable
		}
		r := brokerErr.RetrieveError
		return fail(code, "step 2/3 failed: the broker at %s refused the exchange: HTTP %d, error %q: %s (request id %s)",
			o.broker, brokerErr.StatusCode, r.ErrorCode, r.ErrorDescription, brokerErr.RequestID)
	case err != nil:
		return fail(exitUnavailable, "step 2/3 failed: exchanging at %s: %v", o.broker, err)
	}
	if err := writeCredential(o, tok, getenv, stdout); err != nil {
		return fail(exitOutput, "step 3/3 failed: writing the credential: %v", err)
	}
	fmt.Fprintf(stderr, "tokenbroker exchange: got a %s (scope %q, expires %s, request id %v) using the %s ID token\n",
		o.tokenType, tok.Extra("scope"), tok.Expiry.UTC().Format(time.RFC3339), tok.Extra("request_id"), kind)
	return exitOK
}

// envName is a portable environment variable name.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func checkOutput(o exchangeOptions) error {
	switch o.output {
	case "raw", "json":
	case "env", "github":
		if !envName.MatchString(o.name) {
			return fmt.Errorf("--name %q is not a valid variable name", o.name)
		}
		if o.output == "github" && !o.githubOutput && strings.HasPrefix(strings.ToUpper(o.name), "GITHUB_") {
			return fmt.Errorf("--name %q: GitHub does not let a step set GITHUB_* variables", o.name)
		}
	default:
		return fmt.Errorf("--output %q: want raw, json, env or github", o.output)
	}
	return nil
}

// exchangeScopes accepts repeated and space-separated scopes.
func exchangeScopes(in []string) []string {
	var out []string
	for _, s := range in {
		out = append(out, strings.Fields(s)...)
	}
	return out
}

// writeCredential writes the token as o.output says.
func writeCredential(o exchangeOptions, t *oauth2.Token, getenv func(string) string, stdout io.Writer) error {
	switch o.output {
	case "raw":
		_, err := fmt.Fprintln(stdout, t.AccessToken)
		return err
	case "json":
		return json.NewEncoder(stdout).Encode(map[string]any{
			"access_token":      t.AccessToken,
			"issued_token_type": t.Extra("issued_token_type"),
			"token_type":        "Bearer",
			"expires_in":        t.ExpiresIn,
			"expires_at":        t.Expiry.UTC().Format(time.RFC3339),
			"scope":             t.Extra("scope"),
			"request_id":        t.Extra("request_id"),
		})
	case "env":
		_, err := fmt.Fprintf(stdout, "export %s='%s'\n", o.name, strings.ReplaceAll(t.AccessToken, "'", `'\''`))
		return err
	default:
		return writeGitHub(o, t.AccessToken, getenv, stdout)
	}
}

// writeGitHub masks the credential in the job log (the ::add-mask:: workflow
// command must reach stdout before the value can appear anywhere) and
// appends it to $GITHUB_ENV or $GITHUB_OUTPUT in the multi-line form
// NAME<<DELIMITER, with a random delimiter the value cannot contain.
func writeGitHub(o exchangeOptions, value string, getenv func(string) string, stdout io.Writer) error {
	fileVar := "GITHUB_ENV"
	if o.githubOutput {
		fileVar = "GITHUB_OUTPUT"
	}
	path := getenv(fileVar)
	if path == "" {
		return fmt.Errorf("$%s is not set (is this a GitHub Actions job?)", fileVar)
	}
	if strings.ContainsAny(value, "\r\n") {
		return errors.New("the credential contains a line break")
	}
	if _, err := fmt.Fprintf(stdout, "::add-mask::%s\n", value); err != nil {
		return err
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	delim := "ghadelimiter_" + hex.EncodeToString(b[:])
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(f, "%s<<%s\n%s\n%s\n", o.name, delim, value, delim); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
