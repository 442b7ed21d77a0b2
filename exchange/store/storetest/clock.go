package storetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/exchange"
)

// Purger is implemented by stores that can delete expired replay entries.
type Purger interface {
	PurgeExpired(ctx context.Context, now time.Time) (int64, error)
}

// Clock is a settable clock for stores that take one.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock set to t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// RunClock checks that replay expiry follows the clock given to open, and,
// when the store is a Purger, that PurgeExpired deletes exactly the expired
// entries.
func RunClock(t *testing.T, open func(t *testing.T, now func() time.Time) exchange.Store) {
	t.Helper()
	t.Run("ExpiryFollowsClock", func(t *testing.T) {
		clock := NewClock(base)
		s := newStore(t, func(t *testing.T) exchange.Store { return open(t, clock.Now) })
		const iss = "https://ci.example"
		steps := []struct {
			advance time.Duration
			until   time.Duration // relative to base
			want    error
		}{
			{0, time.Hour, nil},
			{59 * time.Minute, 2 * time.Hour, exchange.ErrReplay},
			{time.Minute, 2 * time.Hour, exchange.ErrReplay}, // expires_at == now: not yet expired
			{time.Nanosecond, 2 * time.Hour, nil},
			{30 * time.Minute, 3 * time.Hour, exchange.ErrReplay},
		}
		for i, st := range steps {
			clock.Advance(st.advance)
			err := s.Claim(ctx(t), iss, "jti", base.Add(st.until))
			if !errors.Is(err, st.want) || (st.want == nil && err != nil) {
				t.Errorf("step %d at %s: Claim = %v, want %v", i, clock.Now(), err, st.want)
			}
		}
	})
	t.Run("PurgeExpired", func(t *testing.T) {
		clock := NewClock(base)
		s := newStore(t, func(t *testing.T) exchange.Store { return open(t, clock.Now) })
		p, ok := s.(Purger)
		if !ok {
			t.Skip("store has no PurgeExpired")
		}
		const iss = "https://ci.example"
		for i, until := range []time.Duration{time.Minute, 2 * time.Minute, time.Hour} {
			if err := s.Claim(ctx(t), iss, string(rune('a'+i)), base.Add(until)); err != nil {
				t.Fatalf("Claim %d: %v", i, err)
			}
		}
		n, err := p.PurgeExpired(ctx(t), base.Add(30*time.Minute))
		if err != nil || n != 2 {
			t.Errorf("PurgeExpired = %d, %v; want 2, nil", n, err)
		}
		if err := s.Claim(ctx(t), iss, "c", base.Add(2*time.Hour)); !errors.Is(err, exchange.ErrReplay) {
			t.Errorf("Claim of the unexpired entry after purge = %v, want ErrReplay", err)
		}
		if n, err := p.PurgeExpired(ctx(t), base.Add(30*time.Minute)); err != nil || n != 0 {
			t.Errorf("second PurgeExpired = %d, %v; want 0, nil", n, err)
		}
	})
}
