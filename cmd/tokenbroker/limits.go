package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/tokenbroker/tokenbroker/exchange"
)

// RateLimitsConfig is rate_limits: flood limits on POST /token.
type RateLimitsConfig struct {
	// ClientIP limits requests per client IP, before any parsing
	// (default 50/s, burst 100).
	ClientIP RateLimitConfig `yaml:"client_ip"`
	// Subject limits exchanges per verified subject, iss + sub
	// (default 10/s, burst 60).
	Subject RateLimitConfig `yaml:"subject"`
	// MaxInFlight caps the exchanges running at once (default 256; negative:
	// no cap). A request waits up to InFlightWait (default 1s), then gets 503.
	MaxInFlight  int      `yaml:"max_in_flight"`
	InFlightWait Duration `yaml:"in_flight_wait"`
	// TrackedKeys bounds the client IPs and subjects remembered by each
	// limit (default 10000, least recently used forgotten).
	TrackedKeys int `yaml:"tracked_keys"`
}

// RateLimitConfig is one token-bucket limit. Zero values take the defaults;
// a negative rate turns the limit off.
type RateLimitConfig struct {
	// Rate is the sustained requests per second.
	Rate float64 `yaml:"rate"`
	// Burst is the requests allowed at once.
	Burst int `yaml:"burst"`
}

// defaults fills the zero values.
func (r *RateLimitsConfig) defaults() {
	fill := func(l *RateLimitConfig, rate float64, burst int) {
		if l.Rate == 0 {
			l.Rate = rate
		}
		if l.Burst == 0 {
			l.Burst = burst
		}
	}
	fill(&r.ClientIP, exchange.DefaultClientRate, exchange.DefaultClientBurst)
	fill(&r.Subject, exchange.DefaultSubjectRate, exchange.DefaultSubjectBurst)
	if r.MaxInFlight == 0 {
		r.MaxInFlight = exchange.DefaultMaxInFlight
	}
	if r.InFlightWait == 0 {
		r.InFlightWait = Duration(exchange.DefaultInFlightWait)
	}
	if r.TrackedKeys == 0 {
		r.TrackedKeys = exchange.DefaultTrackedKeys
	}
}

// validate reports the bad keys of rate_limits: and admin_listen.
func (c *Config) validateLimits() error {
	var errs []error
	for key, l := range map[string]RateLimitConfig{"client_ip": c.RateLimits.ClientIP, "subject": c.RateLimits.Subject} {
		if l.Rate >= 0 && l.Burst < 1 {
			errs = append(errs, fmt.Errorf("%s: rate_limits.%s.burst: %d must be at least 1", c.file, key, l.Burst))
		}
	}
	if c.RateLimits.TrackedKeys < 1 {
		errs = append(errs, fmt.Errorf("%s: rate_limits.tracked_keys: %d must be at least 1", c.file, c.RateLimits.TrackedKeys))
	}
	if _, err := c.trustedProxies(); err != nil {
		errs = append(errs, fmt.Errorf("%s: trusted_proxies: %w", c.file, err))
	}
	if c.AdminListen != "" {
		if _, _, err := net.SplitHostPort(c.AdminListen); err != nil {
			errs = append(errs, fmt.Errorf("%s: admin_listen: %q is not host:port", c.file, c.AdminListen))
		} else if c.AdminListen == c.Listen {
			errs = append(errs, fmt.Errorf("%s: admin_listen: %q is also listen; use another address", c.file, c.AdminListen))
		}
	}
	return errors.Join(errs...)
}

// limiter builds one limit, nil when it is turned off.
func (r *RateLimitsConfig) limiter(l RateLimitConfig) (*exchange.RateLimiter, error) {
	if l.Rate < 0 {
		return nil, nil
	}
	return exchange.NewRateLimiter(exchange.RateLimit{Rate: l.Rate, Burst: l.Burst, TrackedKeys: r.TrackedKeys})
}

// limits returns the per-client-IP and per-subject limiters.
func (c *Config) limits() (client, subject *exchange.RateLimiter, err error) {
	if client, err = c.RateLimits.limiter(c.RateLimits.ClientIP); err != nil {
		return nil, nil, fmt.Errorf("%s: rate_limits.client_ip: %w", c.file, err)
	}
	if subject, err = c.RateLimits.limiter(c.RateLimits.Subject); err != nil {
		return nil, nil, fmt.Errorf("%s: rate_limits.subject: %w", c.file, err)
	}
	return client, subject, nil
}

// serveAdmin serves /metrics on admin_listen until ctx ends, so that the
// metrics need not be reachable by whoever reaches the public API.
func serveAdmin(ctx context.Context, cfg *Config, metrics http.Handler, log *slog.Logger) error {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.AdminListen)
	if err != nil {
		return fmt.Errorf("%s: admin_listen: %w", cfg.file, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	hs := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout.D(),
		ReadTimeout:       cfg.Server.ReadTimeout.D(),
		WriteTimeout:      cfg.Server.WriteTimeout.D(),
		IdleTimeout:       cfg.Server.IdleTimeout.D(),
	}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin listener", slog.Any("err", err))
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	log.Info("admin listener (metrics)", slog.String("addr", ln.Addr().String()))
	return nil
}

// trustedProxies parses trusted_proxies: CIDRs, or single addresses.
func (c *Config) trustedProxies() ([]*net.IPNet, error) {
	var nets []*net.IPNet
	for _, v := range c.TrustedProxies {
		if !strings.Contains(v, "/") {
			ip := net.ParseIP(v)
			if ip == nil {
				return nil, fmt.Errorf("%q is not an IP address or CIDR", v)
			}
			bits := 32
			if ip.To4() == nil {
				bits = 128
			}
			v = fmt.Sprintf("%s/%d", v, bits)
		}
		_, n, err := net.ParseCIDR(v)
		if err != nil {
			return nil, fmt.Errorf("%q is not an IP address or CIDR", v)
		}
		nets = append(nets, n)
	}
	return nets, nil
}
