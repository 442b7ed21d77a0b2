package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/tokenbroker/tokenbroker/exchange"
)

// Defaults of signing:.
const (
	defaultRotateEvery  = 30 * 24 * time.Hour
	defaultPublishAhead = 10 * time.Minute
	// minPublishAhead is the least publish_ahead serve accepts: replicas
	// reload the keys every minute and the JWKS is served with a 60 s cache
	// lifetime, so a key published for less may sign before a verifier that
	// just refreshed its JWKS knows it.
	minPublishAhead = 2 * time.Minute
	// minRotateEvery keeps automatic rotation from piling up keys in the
	// JWKS (each stays max_ttl and a margin after it retires).
	minRotateEvery = time.Hour
)

// defaults fills the zero values of signing: (but the algorithm).
func (s *SigningConfig) defaults() {
	if s.RotateEvery == 0 {
		s.RotateEvery = Duration(defaultRotateEvery)
	}
	if s.PublishAhead == 0 {
		s.PublishAhead = Duration(defaultPublishAhead)
	}
}

// validateSigning reports the bad keys of signing: (but the algorithm).
func (c *Config) validateSigning() error {
	var errs []error
	if d := c.Signing.RotateEvery.D(); d > 0 && d < minRotateEvery {
		errs = append(errs, fmt.Errorf("%s: signing.rotate_every: %s must be at least %s (or negative: off)", c.file, d, minRotateEvery))
	}
	if d := c.Signing.PublishAhead.D(); d < minPublishAhead || d > 24*time.Hour {
		errs = append(errs, fmt.Errorf("%s: signing.publish_ahead: %s must be between %s and 24h", c.file, d, minPublishAhead))
	}
	return errors.Join(errs...)
}

// keepAfter is how long a retired key stays in the JWKS: every credential
// it signed (at most limits.max_ttl) has expired by then, with leeway and
// a margin for replicas that reload late.
func (c *Config) keepAfter() time.Duration {
	return exchange.KeepAfter(c.Limits.MaxTTL.D(), c.Limits.Leeway.D())
}

// rotation is the automatic rotation serve runs (off when rotate_every is
// negative).
func (c *Config) rotation() exchange.RotationConfig {
	return exchange.RotationConfig{
		Every:        c.Signing.RotateEvery.D(),
		PublishAhead: c.Signing.PublishAhead.D(),
		KeepAfter:    c.keepAfter(),
	}
}
