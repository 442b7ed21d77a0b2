package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tokenbroker/tokenbroker/exchange"
	"github.com/tokenbroker/tokenbroker/exchange/store"
	"github.com/tokenbroker/tokenbroker/policy"
	"github.com/tokenbroker/tokenbroker/providers"
)

func serveCmd() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the broker",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(configPath, os.Environ())
			if err != nil {
				return err
			}
			applyFlags(cfg, cmd.Flags())
			cfg.defaults()
			if err := cfg.validate(); err != nil {
				return err
			}
			return serve(cmd.Context(), cfg, serveOptions{})
		},
	}
	f := cmd.Flags()
	f.StringVarP(&configPath, "config", "c", "", "configuration file (YAML)")
	f.String("listen", "", "listen address (listen)")
	f.String("public-url", "", "public URL, the iss of minted tokens (public_url)")
	f.String("store", "", "store DSN, sqlite://PATH (store)")
	f.String("policies", "", "policy file or folder (policies)")
	return cmd
}

// applyFlags sets the keys whose flags were given; flags win over the
// environment and the file.
func applyFlags(cfg *Config, fs *pflag.FlagSet) {
	set := func(name string, dst *string) {
		if f := fs.Lookup(name); f != nil && f.Changed {
			*dst = f.Value.String()
		}
	}
	set("listen", &cfg.Listen)
	set("public-url", &cfg.PublicURL)
	set("store", &cfg.Store)
	set("policies", &cfg.Policies)
}

// serveOptions are what `dev` changes about serving.
type serveOptions struct {
	// allowDevIssuer lets the development issuer of `tokenbroker dev` in.
	allowDevIssuer bool
	// onListen is called with the bound address once the server accepts.
	onListen func(addr string)
	logger   *slog.Logger
}

// serve wires the broker and runs it until ctx ends.
func serve(ctx context.Context, cfg *Config, opts serveOptions) error {
	log := opts.logger
	if log == nil {
		log = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	// First of all: a SIGHUP while the issuers warm up must not end the
	// process (its default action); the policy reloader takes it over.
	hup := catchHUP(log)
	defer hup.stop()
	reg, err := providers.New(cfg.providerConfigs(), providers.Options{
		Leeway:          cfg.providerLeeway(),
		MaxLifetime:     cfg.Limits.MaxTokenLifetime.D(),
		RefreshCooldown: cfg.Limits.JWKSCooldown.D(),
		MaxStaleness:    cfg.Limits.MaxKeyStaleness.D(),
		AllowDevIssuer:  opts.allowDevIssuer,
	})
	if err != nil {
		return fmt.Errorf("%s: providers: %w", cfg.file, err)
	}
	if err := warm(ctx, reg, log); err != nil {
		return err
	}
	loadSet := func() (*policy.Set, error) { return loadPolicies(cfg.Policies, reg, log) }
	initial, err := loadSet()
	if err != nil {
		return err
	}
	policies := policy.NewHolder(initial)
	metricsReg := prometheus.NewRegistry()
	startPolicyReload(ctx, cfg.Policies, policies, loadSet, hup.take(), metricsReg, log)
	st, err := store.Open(ctx, cfg.Store)
	if err != nil {
		return fmt.Errorf("%s: store: %w", cfg.file, err)
	}
	defer func() { _ = st.Close() }()
	keys, err := newKeyManager(ctx, cfg, st, func(msg string) { log.Warn(msg) })
	if err != nil {
		return err
	}
	go keys.Run(ctx, time.Minute, func(err error) { log.Error("reload signing keys", slog.Any("err", err)) })
	startKeyRotation(ctx, cfg, keys, log)
	go purgeExpired(ctx, st, log)
	apiKeys, err := exchange.NewAPIKeys(exchange.APIKeysConfig{Store: st})
	if err != nil {
		return err
	}
	defer func() { _ = apiKeys.Close() }()
	revoker, err := exchange.NewRevoker(exchange.RevokerConfig{Issuer: cfg.PublicURL, Keys: keys, Tokens: st, APIKeys: apiKeys})
	if err != nil {
		return err
	}
	auditErrors := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tokenbroker_audit_store_errors_total",
		Help: "Batches of audit events that could not be stored (they are still in the log).",
	})
	metricsReg.MustRegister(auditErrors)
	audit := exchange.NewAuditWriter(st, exchange.AuditWriterOptions{Logger: log, OnError: func(error) { auditErrors.Inc() }})
	clientLimit, subjectLimit, err := cfg.limits()
	if err != nil {
		return err
	}
	x, err := exchange.NewExchanger(exchange.Config{
		Issuer:   cfg.PublicURL,
		Verifier: reg,
		Policies: policies,
		Replay:   st,
		Signer:   keys,
		MaxTTL:   cfg.Limits.MaxTTL.D(),
		APIKeys:  apiKeys,
		// The providers accept tokens up to limits.leeway past exp: replay
		// entries must live at least as long.
		ReplayLeeway: cfg.Limits.Leeway.D(),

		SubjectLimiter: subjectLimit,
	})
	if err != nil {
		return err
	}
	defer func() { _ = x.Close() }()     // after the HTTP server has shut down
	trusted, err := cfg.trustedProxies() // validated at start-up
	if err != nil {
		return err
	}
	api := exchange.NewServer(exchange.ServerConfig{
		PublicURL: cfg.PublicURL,
		Exchanger: x,
		Keys:      keys,
		Audit:     audit,
		Ready:     st.Ping,
		Registry:  metricsReg,
		APIKeys:   apiKeys,
		Revoker:   revoker,

		ClientLimiter:   clientLimit,
		MaxInFlight:     cfg.RateLimits.MaxInFlight,
		InFlightWait:    cfg.RateLimits.InFlightWait.D(),
		SeparateMetrics: cfg.AdminListen != "",
		TrustedProxies:  trusted,
	})
	if cfg.AdminListen != "" {
		if err := serveAdmin(ctx, cfg, api.MetricsHandler(), log); err != nil {
			return err
		}
	}
	err = listenAndServe(ctx, cfg, api.Handler(), log, opts.onListen)
	// The HTTP server's Shutdown has returned; a handler outliving its
	// timeout may still Record, which after Close is logged, not stored.
	closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if cerr := audit.Close(closeCtx); cerr != nil {
		log.Error("flush audit trail", slog.Any("err", cerr))
	}
	return err
}

// warm fetches every issuer's discovery once at start-up. An unreachable
// issuer is only a warning (it is fetched again on first use); the
// development issuer is fatal under serve.
func warm(ctx context.Context, reg *providers.Registry, log *slog.Logger) error {
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for _, err := range reg.Warm(wctx) {
		if errors.Is(err, providers.ErrDevIssuer) {
			return fmt.Errorf("refusing to start: %w", err)
		}
		log.Warn("issuer not reachable at start-up; will retry on first use", slog.Any("err", err))
	}
	return nil
}

func loadPolicies(path string, reg *providers.Registry, log *slog.Logger) (*policy.Set, error) {
	set, err := policy.LoadPath(path, policy.LoadOptions{Issuers: policyIssuers(reg)})
	if err != nil {
		return nil, err
	}
	for _, w := range set.Warnings() {
		log.Warn("policy warning", slog.String("warning", w.String()))
	}
	log.Info("policies loaded", slog.String("path", path), slog.Int("policies", set.Len()))
	return set, nil
}

func listenAndServe(ctx context.Context, cfg *Config, h http.Handler, log *slog.Logger, onListen func(string)) error {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("%s: listen: %w", cfg.file, err)
	}
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout.D(),
		ReadTimeout:       cfg.Server.ReadTimeout.D(),
		WriteTimeout:      cfg.Server.WriteTimeout.D(),
		IdleTimeout:       cfg.Server.IdleTimeout.D(),
		MaxHeaderBytes:    32 << 10,
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	log.Info("tokenbroker listening", slog.String("addr", ln.Addr().String()), slog.String("public_url", cfg.PublicURL), slog.String("version", version))
	if onListen != nil {
		onListen(ln.Addr().String())
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	log.Info("shutting down")
	return hs.Shutdown(sctx)
}
