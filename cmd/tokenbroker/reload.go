package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenbroker/tokenbroker/policy"
)

// reloadMetrics count policy reloads on the server's registry.
type reloadMetrics struct {
	reloads prometheus.Counter
	errors  prometheus.Counter
	loaded  prometheus.Gauge
}

func newReloadMetrics(reg prometheus.Registerer) *reloadMetrics {
	m := &reloadMetrics{
		reloads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokenbroker_policy_reloads_total",
			Help: "Policy reloads that succeeded and replaced the policy set.",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokenbroker_policy_reload_errors_total",
			Help: "Policy reloads refused because the files did not load or lint; the previous set stayed in place.",
		}),
		loaded: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tokenbroker_policies_loaded",
			Help: "Number of trust policies in the set in force.",
		}),
	}
	reg.MustRegister(m.reloads, m.errors, m.loaded)
	return m
}

// hupSignals catches SIGHUP from the very start of serve: the default
// action of SIGHUP ends the process (exit 129), and warming the issuers may
// take 15 s before the policy reloader exists. Until wired is called, a HUP
// is only logged.
type hupSignals struct {
	c     chan os.Signal
	wired chan struct{}
	once  sync.Once
}

// catchHUP installs the SIGHUP handler; stop removes it.
func catchHUP(log *slog.Logger) *hupSignals {
	h := &hupSignals{c: make(chan os.Signal, 1), wired: make(chan struct{})}
	signal.Notify(h.c, syscall.SIGHUP)
	go func() {
		for {
			select {
			case <-h.wired:
				return
			case <-h.c:
				log.Info("SIGHUP during start-up: ignored, the policies are not loaded yet")
			}
		}
	}()
	return h
}

// take ends the start-up logging and hands the channel to its one reader.
func (h *hupSignals) take() <-chan os.Signal {
	h.once.Do(func() { close(h.wired) })
	return h.c
}

// stop removes the handler (SIGHUP ends the process again) and ends the
// start-up logging.
func (h *hupSignals) stop() {
	signal.Stop(h.c)
	h.once.Do(func() { close(h.wired) })
}

// startPolicyReload reloads the policies at path into holder when a policy
// file changes and on a signal on hup (SIGHUP), until ctx ends. A reload that
// fails keeps the set in force. When the files cannot be watched, SIGHUP
// still works.
func startPolicyReload(ctx context.Context, path string, holder *policy.Holder, load func() (*policy.Set, error), hup <-chan os.Signal, reg prometheus.Registerer, log *slog.Logger) {
	m := newReloadMetrics(reg)
	if s := holder.Load(); s != nil {
		m.loaded.Set(float64(s.Len()))
	}
	r := policy.NewReloader(holder, load, policy.ReloaderOptions{
		OnReload: func(s *policy.Set) {
			m.reloads.Inc()
			m.loaded.Set(float64(s.Len()))
			log.Info("policies reloaded", slog.String("path", path), slog.Int("policies", s.Len()))
		},
		OnError: func(err error) {
			m.errors.Inc()
			log.Error("policy reload refused; keeping the previous policies", slog.String("path", path), slog.Any("err", err))
		},
		OnWatchError: func(err error) {
			log.Warn("policy file watch", slog.Any("err", err))
		},
	})
	if err := r.Watch(ctx, path); err != nil {
		log.Warn("policy files are not watched; reload with SIGHUP", slog.Any("err", err))
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: reloading policies", slog.String("path", path))
				_ = r.Reload() // reported through OnError
			}
		}
	}()
}
