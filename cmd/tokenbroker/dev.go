package main

import (
	"context"
	_ "embed"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/template"

	"github.com/spf13/cobra"

	"github.com/tokenbroker/tokenbroker/providers"
	"github.com/tokenbroker/tokenbroker/providers/devissuer"
)

// devPreset is the provider name `dev` gives its built-in issuer; serve
// refuses it (and any issuer whose discovery says it is development-only).
const devPreset = "tokenbroker-dev"

//go:embed devdata/policies.yaml
var devPolicies string

func devCmd() *cobra.Command {
	var listen, issuerListen string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the broker on embedded defaults with a local development issuer (never for production)",
		Long: `dev starts the broker on a temporary SQLite store with a sample policy and a
built-in, loopback-only OIDC issuer shaped like GitHub Actions, and prints two
commands: one mints a sample CI token, one exchanges it for a JWT.

The development issuer hands a token to anyone who asks. serve never trusts it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDev(cmd.Context(), cmd.OutOrStdout(), listen, issuerListen)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8080", "broker listen address (loopback only)")
	cmd.Flags().StringVar(&issuerListen, "issuer-listen", "127.0.0.1:0", "development issuer listen address (loopback only)")
	return cmd
}

func runDev(ctx context.Context, stdout io.Writer, listen, issuerListen string) error {
	if !loopbackAddr(listen) {
		return fmt.Errorf("dev: --listen %q must be a loopback address", listen)
	}
	iss, issSrv, err := devissuer.Start(issuerListen, devissuer.Options{})
	if err != nil {
		return err
	}
	defer func() { _ = issSrv.Close() }()
	dir, err := os.MkdirTemp("", "tokenbroker-dev-")
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	cfg := &Config{
		Listen:    listen,
		Store:     "sqlite://" + filepath.Join(dir, "tokenbroker.db"),
		Policies:  filepath.Join(dir, "policies.yaml"),
		Providers: []ProviderConfig{{Name: "dev", Preset: providers.PresetGitHubActions, Issuer: iss.URL()}},
		file:      "(tokenbroker dev)",
	}
	// One developer on loopback, often driving load with cmd/tbload: the
	// flood limits of serve would only get in the way.
	cfg.RateLimits.ClientIP.Rate, cfg.RateLimits.Subject.Rate = -1, -1
	cfg.defaults()
	if err := writeDevPolicies(cfg.Policies, cfg.PublicURL); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	onListen := func(addr string) {
		fmt.Fprint(stdout, devBanner(iss.URL(), cfg.PublicURL, dir))
	}
	return serve(ctx, cfg, serveOptions{allowDevIssuer: true, onListen: onListen, logger: log})
}

func writeDevPolicies(path, publicURL string) error {
	t, err := template.New("policies").Parse(devPolicies)
	if err != nil {
		return fmt.Errorf("dev: sample policy: %w", err)
	}
	var b strings.Builder
	if err := t.Execute(&b, map[string]string{"PublicURL": publicURL}); err != nil {
		return fmt.Errorf("dev: sample policy: %w", err)
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

func devBanner(issuerURL, publicURL, dir string) string {
	return fmt.Sprintf(`
tokenbroker dev: DEVELOPMENT ONLY. The issuer at %[1]s mints CI tokens for anyone.
Store and sample policy: %[3]s (removed on exit). Ctrl-C to stop.

# 1. Mint a sample GitHub Actions-shaped CI token (audience = the broker):
TOKEN=$(curl -s -X POST %[1]s/token -d audience=%[2]s)

# 2. Exchange it for a short-lived JWT for deploy-api:
curl -s -X POST %[2]s/token \
  -d grant_type=urn:ietf:params:oauth:grant-type:token-exchange \
  -d subject_token_type=urn:ietf:params:oauth:token-type:id_token \
  -d subject_token="$TOKEN" \
  -d audience=deploy-api -d scope=deploy:staging

# Verify minted JWTs with any OIDC library: %[2]s/.well-known/openid-configuration
`, issuerURL, publicURL, dir)
}
