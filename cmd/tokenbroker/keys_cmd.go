package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tokenbroker/tokenbroker/exchange"
	"github.com/tokenbroker/tokenbroker/exchange/store"
)

// keysCmd is `tokenbroker keys`: it lists and rotates the signing keys in
// the store of serve's configuration (same config file, environment and
// flags). Running replicas pick a rotation up at their next key reload,
// within a minute.
func keysCmd() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "List and rotate the signing keys of minted JWTs (the store of serve's configuration)",
	}
	pf := cmd.PersistentFlags()
	pf.StringVarP(&configPath, "config", "c", "", "configuration file (YAML), as for serve")
	pf.String("store", "", "store DSN, sqlite://PATH or postgres://... (store)")
	load := func(cmd *cobra.Command) (*Config, exchange.Store, error) {
		cfg, err := adminConfig(configPath, cmd.Flags())
		if err != nil {
			return nil, nil, err
		}
		if !exchange.ValidAlgorithm(cfg.Signing.Algorithm) {
			return nil, nil, fmt.Errorf("%s: signing.algorithm: %q is not one of ES256, RS256, EdDSA", cfg.file, cfg.Signing.Algorithm)
		}
		st, err := store.Open(cmd.Context(), cfg.Store)
		if err != nil {
			return nil, nil, fmt.Errorf("store %s: %w", store.Redact(cfg.Store), err)
		}
		return cfg, st, nil
	}
	cmd.AddCommand(keysListCmd(load), keysRotateCmd(load))
	return cmd
}

type keysLoader func(cmd *cobra.Command) (*Config, exchange.Store, error)

func keysListCmd(load keysLoader) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the published signing keys, oldest first (never a private key)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, st, err := load(cmd)
			if err != nil {
				return err
			}
			defer func() { _ = st.Close() }()
			now := time.Now()
			stored, err := st.SigningKeys(cmd.Context(), now)
			if err != nil {
				return err
			}
			keys := exchange.DescribeKeys(stored, cfg.Signing.Algorithm, now)
			if asJSON {
				return writeKeysJSON(cmd.OutOrStdout(), keys)
			}
			return writeKeysTable(cmd.OutOrStdout(), keys)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line")
	return cmd
}

func keysRotateCmd(load keysLoader) *cobra.Command {
	var publishAhead, maxTTL time.Duration
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Publish a new signing key now; it signs after --publish-ahead, and the current key retires then",
		Long: "Rotate the signing key with overlap: a new key is published in the JWKS at once and\n" +
			"signs from now + --publish-ahead (default signing.publish_ahead, 10m); the current key\n" +
			"retires then and stays in the JWKS for limits.max_ttl + limits.leeway + 5m more, until\n" +
			"every token it signed has expired. Running replicas load the new key within a minute.\n" +
			"Give serve's --config (or --max-ttl) so that the retired key stays long enough.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, st, err := load(cmd)
			if err != nil {
				return err
			}
			defer func() { _ = st.Close() }()
			if err := rotateMaxTTL(cmd, cfg, maxTTL); err != nil {
				return err
			}
			if !cmd.Flags().Changed("publish-ahead") {
				publishAhead = cfg.Signing.PublishAhead.D()
			}
			if publishAhead < 0 {
				return fmt.Errorf("--publish-ahead %s: must not be negative", publishAhead)
			}
			if publishAhead < minPublishAhead {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: --publish-ahead %s is under %s: replicas may sign with the new key "+
					"before every verifier has fetched it (replicas reload keys every minute, the JWKS is cached 60 s)\n",
					publishAhead, minPublishAhead)
			}
			return rotateKeys(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), cfg, st, publishAhead)
		},
	}
	cmd.Flags().DurationVar(&publishAhead, "publish-ahead", defaultPublishAhead, "how long the new key is published before it signs (signing.publish_ahead)")
	cmd.Flags().DurationVar(&maxTTL, "max-ttl", 0, "serve's limits.max_ttl, which sets how long the retired key stays in the JWKS (default: from the configuration)")
	return cmd
}

// rotateMaxTTL applies --max-ttl to cfg, and warns when limits.max_ttl is
// only the default because no configuration says otherwise: a broker
// minting longer-lived tokens would see them fail verification once the
// retired key leaves the JWKS too early.
func rotateMaxTTL(cmd *cobra.Command, cfg *Config, maxTTL time.Duration) error {
	if cmd.Flags().Changed("max-ttl") {
		if maxTTL < time.Minute || maxTTL > 24*time.Hour {
			return fmt.Errorf("--max-ttl %s: must be between 1m and 24h", maxTTL)
		}
		cfg.Limits.MaxTTL = Duration(maxTTL)
		return nil
	}
	if cfg.file == "(defaults)" && os.Getenv("TOKENBROKER_LIMITS_MAX_TTL") == "" {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: no --config: the retired key stays for the default limits.max_ttl %s "+
			"(+ leeway and a margin); if serve mints longer-lived tokens, pass --config or --max-ttl\n", cfg.Limits.MaxTTL.D())
	}
	return nil
}

func rotateKeys(ctx context.Context, w, errW io.Writer, cfg *Config, st exchange.Store, publishAhead time.Duration) error {
	km, err := newKeyManager(ctx, cfg, st, func(msg string) { fmt.Fprintln(errW, "warning: "+msg) })
	if err != nil {
		return err
	}
	next, err := km.Rotate(ctx, publishAhead, cfg.keepAfter())
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "new %s key %s published; it signs from %s\n", next.Algorithm, next.ID, next.ActiveAt.UTC().Format(time.RFC3339))
	for _, k := range km.Keys() {
		if k.RetiredAt.Equal(next.ActiveAt) {
			fmt.Fprintf(w, "key %s retires then and leaves the JWKS at %s\n", k.ID, k.RemoveAt.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

// startKeyRotation runs serve's automatic key rotation (signing.rotate_every)
// in the background until ctx is done.
func startKeyRotation(ctx context.Context, cfg *Config, keys *exchange.KeyManager, log *slog.Logger) {
	rot := cfg.rotation()
	rot.OnRotate = func(k exchange.KeyInfo) {
		log.Info("signing key rotated", slog.String("kid", k.ID), slog.Time("active_at", k.ActiveAt))
	}
	rot.OnError = func(err error) { log.Error("rotate signing key", slog.Any("err", err)) }
	go keys.RunRotation(ctx, rot)
}

// keyJSON is a line of `keys list --json`.
type keyJSON struct {
	ID        string     `json:"kid"`
	Algorithm string     `json:"alg"`
	State     string     `json:"state"`
	Signing   bool       `json:"signing"`
	Encrypted bool       `json:"encrypted"`
	CreatedAt time.Time  `json:"created_at"`
	ActiveAt  time.Time  `json:"active_at"`
	RetiredAt *time.Time `json:"retired_at,omitempty"`
	RemoveAt  *time.Time `json:"remove_at,omitempty"`
}

func writeKeysJSON(w io.Writer, keys []exchange.KeyInfo) error {
	enc := json.NewEncoder(w)
	for _, k := range keys {
		j := keyJSON{
			ID: k.ID, Algorithm: k.Algorithm, State: k.State, Signing: k.Signing, Encrypted: k.Encrypted,
			CreatedAt: k.CreatedAt.UTC(), ActiveAt: k.ActiveAt.UTC(),
			RetiredAt: optTime(k.RetiredAt), RemoveAt: optTime(k.RemoveAt),
		}
		if err := enc.Encode(j); err != nil {
			return err
		}
	}
	return nil
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func writeKeysTable(w io.Writer, keys []exchange.KeyInfo) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KID\tALG\tSTATE\tCREATED\tACTIVE\tRETIRED\tREMOVED")
	for _, k := range keys {
		state := k.State
		if k.Signing {
			state += " (signing)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Algorithm, state,
			stamp(k.CreatedAt), stamp(k.ActiveAt), stamp(k.RetiredAt), stamp(k.RemoveAt))
	}
	return tw.Flush()
}

// stamp formats t for a table cell: "-" for the zero time.
func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
