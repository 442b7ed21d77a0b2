package exchange

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	exchanges *prometheus.CounterVec
	latency   prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		exchanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenbroker_exchanges_total",
			Help: "Token exchanges by outcome (allowed, denied, error) and RFC 6749 error code.",
		}, []string{"outcome", "error"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tokenbroker_exchange_duration_seconds",
			Help:    "Time to answer POST /token.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
	}
	reg.MustRegister(m.exchanges, m.latency)
	return m
}

func (m *metrics) observe(ev AuditEvent, d time.Duration) {
	m.exchanges.WithLabelValues(ev.Outcome, ev.ErrorCode).Inc()
	m.latency.Observe(d.Seconds())
}
