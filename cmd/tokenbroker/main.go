// Command tokenbroker is the CI/CD OIDC token-exchange broker: it verifies
// CI ID tokens, evaluates trust policies and mints short-lived credentials.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := rootCmd().ExecuteContext(ctx); err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			stop()
			os.Exit(ee.code) // the command has said why
		}
		fmt.Fprintln(os.Stderr, "tokenbroker:", err)
		stop()
		os.Exit(1)
	}
}

// exitError ends the process with a documented exit code after the command
// has printed its own message (see `tokenbroker exchange`).
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "tokenbroker",
		Short:         "Exchange CI OIDC ID tokens for short-lived, scoped credentials",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(serveCmd(), devCmd(), versionCmd(), exchangeCmd(), providersCmd())
	root.AddCommand(policyCmd())
	root.AddCommand(apikeysCmd())
	root.AddCommand(auditCmd())
	root.AddCommand(keysCmd())
	return root
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "tokenbroker", version)
		},
	}
}
