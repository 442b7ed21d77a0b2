package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tokenbroker/tokenbroker/exchange"
	"github.com/tokenbroker/tokenbroker/exchange/store"
)

// purgeGrace is how long an expired API key is kept, so that verifying it
// answers EXPIRED (not NOT_FOUND) and listings show it for a while.
const purgeGrace = 24 * time.Hour

// purgeExpired deletes, every 10 minutes, expired API keys (after
// purgeGrace), expired revoked-JWT entries and expired replay entries.
func purgeExpired(ctx context.Context, st exchange.Store, log *slog.Logger) {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			now := time.Now()
			if _, err := st.PurgeAPIKeys(ctx, now.Add(-purgeGrace)); err != nil {
				log.Warn("purge expired API keys", slog.Any("err", err))
			}
			if _, err := st.PurgeExpired(ctx, now); err != nil {
				log.Warn("purge replay cache", slog.Any("err", err))
			}
			if _, err := st.PurgeRevokedTokens(ctx, now); err != nil {
				log.Warn("purge revoked tokens", slog.Any("err", err))
			}
		}
	}
}

func apikeysCmd() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "apikeys",
		Short: "List, show, revoke and purge API keys (the store of serve's configuration)",
	}
	pf := cmd.PersistentFlags()
	pf.StringVarP(&configPath, "config", "c", "", "configuration file (YAML)")
	pf.String("store", "", "store DSN, sqlite://PATH or postgres://... (store)")
	open := func(cmd *cobra.Command) (exchange.Store, error) {
		cfg, err := adminConfig(configPath, cmd.Flags())
		if err != nil {
			return nil, err
		}
		st, err := store.Open(cmd.Context(), cfg.Store)
		if err != nil {
			return nil, fmt.Errorf("store %s: %w", store.Redact(cfg.Store), err)
		}
		return st, nil
	}
	cmd.AddCommand(apikeysListCmd(open), apikeysShowCmd(open), apikeysRevokeCmd(open), apikeysPurgeCmd(open))
	return cmd
}

type storeOpener func(cmd *cobra.Command) (exchange.Store, error)

func apikeysListCmd(open storeOpener) *cobra.Command {
	var q exchange.APIKeyQuery
	var all bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List API keys, newest first (live ones only, unless --all)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := open(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			now := time.Now()
			if !all {
				q.Now = now
			}
			keys, err := st.ListAPIKeys(cmd.Context(), q)
			if err != nil {
				return err
			}
			return printKeys(cmd.OutOrStdout(), keys, now)
		},
	}
	f := cmd.Flags()
	f.StringVar(&q.Subject, "subject", "", "only keys of this subject")
	f.StringVar(&q.Policy, "policy", "", "only keys granted by this policy")
	f.BoolVar(&all, "all", false, "include expired and revoked keys")
	f.IntVar(&q.Limit, "limit", 100, "at most this many keys")
	return cmd
}

func printKeys(w io.Writer, keys []exchange.APIKey, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tPOLICY\tSUBJECT\tEXPIRES\tREMAINING")
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, keyState(k, now), k.Policy, k.Subject,
			k.ExpiresAt.UTC().Format(time.RFC3339), remaining(k))
	}
	return tw.Flush()
}

// keyState names the state of k at now, as verification would.
func keyState(k exchange.APIKey, now time.Time) string {
	switch {
	case !k.RevokedAt.IsZero():
		return "revoked"
	case !k.ExpiresAt.After(now):
		return "expired"
	case k.Limited() && k.Remaining <= 0:
		return "used up"
	}
	return "valid"
}

func remaining(k exchange.APIKey) string {
	if !k.Limited() {
		return "unlimited"
	}
	return strconv.FormatInt(k.Remaining, 10) + "/" + strconv.FormatInt(k.Uses, 10)
}

func apikeysShowCmd(open storeOpener) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show one API key (never the key itself: only its hash is stored)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := open(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			k, err := st.APIKeyByID(cmd.Context(), args[0])
			if errors.Is(err, exchange.ErrNotFound) {
				return fmt.Errorf("no API key %q", args[0])
			}
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			row := func(name, value string) { fmt.Fprintf(w, "%s:\t%s\n", name, value) }
			row("id", k.ID)
			row("state", keyState(k, time.Now()))
			row("policy", k.Policy)
			row("subject", k.Subject)
			row("issuer", k.Issuer)
			row("audience", strings.Join(k.Audience, " "))
			row("scopes", strings.Join(k.Scopes, " "))
			row("created", k.CreatedAt.UTC().Format(time.RFC3339))
			row("expires", k.ExpiresAt.UTC().Format(time.RFC3339))
			row("remaining", remaining(k))
			if !k.RevokedAt.IsZero() {
				row("revoked", k.RevokedAt.UTC().Format(time.RFC3339))
			}
			for _, name := range sortedKeys(k.Metadata) {
				row("metadata."+name, k.Metadata[name])
			}
			return w.Flush()
		},
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func apikeysRevokeCmd(open storeOpener) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an API key by its id; replicas see it at their next verification",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := open(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			changed, err := st.RevokeAPIKey(cmd.Context(), args[0], time.Now())
			if err != nil {
				return err
			}
			if !changed {
				if _, err := st.APIKeyByID(cmd.Context(), args[0]); errors.Is(err, exchange.ErrNotFound) {
					return fmt.Errorf("no API key %q", args[0])
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s was already revoked\n", args[0])
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s\n", args[0])
			return nil
		},
	}
}

func apikeysPurgeCmd(open storeOpener) *cobra.Command {
	var grace time.Duration
	cmd := &cobra.Command{
		Use:   "purge",
		Short: "Delete API keys expired for longer than --grace, and expired revoked-JWT entries",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if grace < 0 {
				return errors.New("--grace must not be negative")
			}
			st, err := open(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			now := time.Now()
			n, err := st.PurgeAPIKeys(cmd.Context(), now.Add(-grace))
			if err != nil {
				return err
			}
			m, err := st.PurgeRevokedTokens(cmd.Context(), now)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "purged %d API keys, %d revoked-token entries\n", n, m)
			return nil
		},
	}
	cmd.Flags().DurationVar(&grace, "grace", purgeGrace, "keep keys expired for less than this")
	return cmd
}
