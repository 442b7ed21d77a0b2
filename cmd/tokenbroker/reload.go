package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
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

// startPolicyReload reloads the policies at path into holder when a policy
// file changes and on SIGHUP, until ctx ends. A reload that fails keeps the
// set in force. When the files cannot be watched, SIGHUP still works.
func startPolicyReload(ctx context.Context, path string, holder *policy.Holder, load func() (*policy.Set, error), reg prometheus.Registerer, log *slog.Logger) {
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
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
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
