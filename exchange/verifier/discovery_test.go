package verifier

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestDiscoveryRetryBackoff: a failed discovery is answered from memory
// for discoveryRetry, then tried again.
func TestDiscoveryRetryBackoff(t *testing.T) {
	b := newFakeBroker(t)
	b.down.Store(true)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	v := newVerifier(t, b, func(c *Config) { c.Now = clock })
	steps := []struct {
		name            string
		advance         time.Duration
		up              bool
		wantErr         error
		wantDiscoveries int64
	}{
		{"broker down: discovery fails", 0, false, ErrUnavailable, 1},
		{"within the backoff: remembered failure, no request", discoveryRetry - time.Second, true, ErrUnavailable, 1},
		{"after the backoff: tried again and succeeds", 2 * time.Second, true, nil, 2},
		{"discovered once: no more requests", time.Hour, false, nil, 2},
	}
	for _, st := range steps {
		advance(st.advance)
		b.down.Store(!st.up)
		_, err := v.oidcVerifier(t.Context())
		if !errors.Is(err, st.wantErr) || (st.wantErr == nil && err != nil) {
			t.Errorf("%s: err = %v, want %v", st.name, err, st.wantErr)
		}
		if got := b.discoveries.Load(); got != st.wantDiscoveries {
			t.Errorf("%s: %d discovery requests, want %d", st.name, got, st.wantDiscoveries)
		}
	}
}

// TestDiscoveryOutsideLock: while one discovery is slow, concurrent callers
// share it (one request), and a caller whose context ends returns at once
// instead of queueing on a lock behind it.
func TestDiscoveryOutsideLock(t *testing.T) {
	b := newFakeBroker(t)
	b.gate = make(chan struct{})
	v := newVerifier(t, b, nil)
	tok := b.mint(t, "at+jwt", nil)
	const callers = 8
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() { _, errs[i] = v.VerifyJWT(t.Context(), tok) })
	}
	for b.discoveries.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	// The discovery is held at the broker: a caller with an ended context
	// must not wait for it.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	done := make(chan error, 1)
	go func() { _, err := v.VerifyJWT(ctx, tok); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled caller during a slow discovery: err = %v, want ErrUnavailable wrapping context.Canceled", err)
		}
	case <-time.After(time.Minute): // a deadlock guard, not a timing check
		t.Error("a cancelled caller is blocked behind the slow discovery")
	}
	close(b.gate)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("caller %d: %v", i, err)
		}
	}
	if got := b.discoveries.Load(); got != 1 {
		t.Errorf("%d discovery requests for %d concurrent callers, want 1", got, callers)
	}
}
