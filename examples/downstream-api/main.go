// Command downstream-api is an example API protected by tokenbroker's
// verifier: it accepts the JWTs and API keys the broker mints for audience
// deploy-api. GET /status needs scope deploy:read, POST /deploy needs
// deploy:prod; GET /healthz is open.
//
//	go run ./examples/downstream-api --broker https://broker.example.com --listen :9090
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tokenbroker/tokenbroker/exchange/verifier"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9090", "listen address")
	broker := flag.String("broker", os.Getenv("TOKENBROKER_URL"), "broker public_url (issuer of the JWTs)")
	audience := flag.String("audience", "deploy-api", "this API's audience, as policies grant it")
	keyHeader := flag.String("api-key-header", "X-API-Key", "header that may carry an API key (besides Authorization: Bearer tbk_...)")
	cacheTTL := flag.Duration("key-cache-ttl", verifier.DefaultKeyCacheTTL, "how long a verified API key is cached; negative disables the cache")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *listen, verifier.Config{Issuer: *broker, Audience: *audience, APIKeyHeader: *keyHeader, KeyCacheTTL: *cacheTTL, Realm: *audience}); err != nil {
		fmt.Fprintln(os.Stderr, "downstream-api:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, listen string, cfg verifier.Config) error {
	v, err := verifier.New(cfg)
	if err != nil {
		return err
	}
	srv := &http.Server{Addr: listen, Handler: routes(v), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	slog.Info("downstream-api listening", "addr", listen, "broker", cfg.Issuer, "audience", cfg.Audience)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// routes wires the API: each route names the scopes it needs.
func routes(v *verifier.Verifier) http.Handler {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	e.GET("/status", status, v.Echo("deploy:read"))
	e.POST("/deploy", deploy, v.Echo("deploy:prod"))
	return e
}

// caller is what the handlers report about who called.
type caller struct {
	Kind       string   `json:"kind"`
	Subject    string   `json:"subject"`
	Repository string   `json:"repository,omitempty"`
	Policy     string   `json:"policy"`
	Scopes     []string `json:"scopes"`
}

func callerOf(c echo.Context) caller {
	id, _ := verifier.FromContext(c.Request().Context())
	return caller{Kind: id.Kind, Subject: id.Subject, Repository: id.Repository, Policy: id.Policy, Scopes: id.Scopes}
}

func status(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]any{"status": "ok", "caller": callerOf(c)})
}

func deploy(c echo.Context) error {
	who := callerOf(c)
	slog.Info("deploy requested", "subject", who.Subject, "repository", who.Repository, "policy", who.Policy)
	return c.JSON(http.StatusOK, map[string]any{"deployed": true, "caller": who})
}
