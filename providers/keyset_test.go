package providers

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/google/go-cmp/cmp"
)

// warm warms r and fails the test on any error.
func warm(t *testing.T, r *Registry) {
	t.Helper()
	if errs := r.Warm(context.Background()); len(errs) != 0 {
		t.Fatalf("Warm: %v", errs)
	}
}

func TestUnknownKidFloodRefetchesOncePerCooldown(t *testing.T) {
	key := newRSAKey(t, "k1")
	ti := newTestIssuer(t, key)
	clock := newFakeClock()
	r := newTestRegistry(t, ti, clock, Options{})
	warm(t, r)
	clock.Advance(DefaultRefreshCooldown)

	rogue := newRSAKey(t, "unused")
	flood := func() {
		var wg sync.WaitGroup
		errs := make(chan error, 200)
		for range 200 {
			wg.Go(func() {
				k := *rogue
				k.kid = rand.Text()
				_, err := r.Verify(context.Background(), k.sign(t, claimsAt(ti.URL(), clock.Now()), nil))
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if !errors.Is(err, ErrUnknownKey) {
				t.Fatalf("Verify error = %v, want ErrUnknownKey", err)
			}
		}
	}

	flood()
	if got := ti.jwks.Load(); got != 2 {
		t.Errorf("JWKS requests after a flood past the cooldown = %d, want 2 (warm-up + 1 refetch)", got)
	}
	flood()
	if got := ti.jwks.Load(); got != 2 {
		t.Errorf("JWKS requests after a second flood within the cooldown = %d, want still 2", got)
	}
	clock.Advance(DefaultRefreshCooldown)
	flood()
	if got := ti.jwks.Load(); got != 3 {
		t.Errorf("JWKS requests after a third flood past the cooldown = %d, want 3", got)
	}
	want := map[string]IssuerStats{"ci": {DiscoveryFetches: 1, JWKSFetches: 3}}
	if diff := cmp.Diff(want, r.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

func TestKeyRotation(t *testing.T) {
	oldKey, newKey := newRSAKey(t, "old"), newECKey(t, "new")
	ti := newTestIssuer(t, oldKey)
	clock := newFakeClock()
	r := newTestRegistry(t, ti, clock, Options{})
	warm(t, r)
	ti.set(func(ti *testIssuer) { ti.keys = []*testKey{newKey} })

	verify := func() error {
		_, err := r.Verify(context.Background(), newKey.sign(t, claimsAt(ti.URL(), clock.Now()), nil))
		return err
	}
	if err := verify(); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("new kid within the cooldown: Verify error = %v, want ErrUnknownKey", err)
	}
	clock.Advance(DefaultRefreshCooldown)
	if err := verify(); err != nil {
		t.Fatalf("new kid after the cooldown: Verify error = %v", err)
	}
	_, err := r.Verify(context.Background(), oldKey.sign(t, claimsAt(ti.URL(), clock.Now()), nil))
	if !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("retired kid: Verify error = %v, want ErrUnknownKey", err)
	}
}

func TestStaleKeysServedWhileIssuerDown(t *testing.T) {
	key := newRSAKey(t, "k1")
	ti := newTestIssuer(t, key)
	clock := newFakeClock()
	r := newTestRegistry(t, ti, clock, Options{})
	warm(t, r)
	ti.set(func(ti *testIssuer) { ti.jwksCode = http.StatusInternalServerError })

	verify := func() error {
		_, err := r.Verify(context.Background(), key.sign(t, claimsAt(ti.URL(), clock.Now()), nil))
		return err
	}
	clock.Advance(DefaultKeySetTTL + time.Minute)
	if err := verify(); err != nil {
		t.Fatalf("keys past their TTL, issuer down: Verify error = %v", err)
	}
	if got := ti.jwks.Load(); got != 2 {
		t.Errorf("JWKS requests = %d, want 2 (warm-up + refresh attempt)", got)
	}
	clock.Advance(DefaultMaxStaleness)
	if err := verify(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("keys past MaxStaleness: Verify error = %v, want ErrUnavailable", err)
	}
	ti.set(func(ti *testIssuer) { ti.jwksCode = 0 })
	clock.Advance(DefaultRefreshCooldown)
	if err := verify(); err != nil {
		t.Fatalf("issuer back: Verify error = %v", err)
	}
}

func TestDiscoveryFailures(t *testing.T) {
	key := newRSAKey(t, "k1")
	other := newTestIssuer(t, key)
	tests := []struct {
		name     string
		setup    func(ti *testIssuer)
		opts     Options
		wantErr  error
		wantType any
	}{
		{
			name:     "discovery names another issuer",
			setup:    func(ti *testIssuer) { ti.discoveryIss = ti.srv.URL + "/" },
			wantErr:  ErrUnavailable,
			wantType: new(*oidc.IssuerMismatchError),
		},
		{
			name:    "redirect to another host",
			setup:   func(ti *testIssuer) { ti.discoveryRedir = other.URL() + "/.well-known/openid-configuration" },
			wantErr: ErrUnavailable,
		},
		{
			name:    "redirect on the same host",
			setup:   func(ti *testIssuer) { ti.discoveryRedir = ti.srv.URL + "/moved/.well-known/openid-configuration" },
			wantErr: nil,
		},
		{
			name:    "discovery answers 500",
			setup:   func(ti *testIssuer) { ti.discoveryCode = http.StatusInternalServerError },
			wantErr: ErrUnavailable,
		},
		{
			name:    "oversized JWKS",
			setup:   func(ti *testIssuer) { ti.jwksPadding = 8 << 10 },
			opts:    Options{MaxResponseBytes: 4 << 10},
			wantErr: ErrUnavailable,
		},
		{
			name:    "development issuer",
			setup:   func(ti *testIssuer) { ti.dev = true },
			wantErr: ErrDevIssuer,
		},
		{
			name:    "development issuer allowed",
			setup:   func(ti *testIssuer) { ti.dev = true },
			opts:    Options{AllowDevIssuer: true},
			wantErr: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ti := newTestIssuer(t, key)
			ti.set(tt.setup)
			clock := newFakeClock()
			r := newTestRegistry(t, ti, clock, tt.opts)
			_, err := r.Verify(context.Background(), key.sign(t, claimsAt(ti.URL(), clock.Now()), nil))
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Verify error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantType != nil && !errors.As(err, tt.wantType) {
				t.Errorf("Verify error = %v, want it to wrap %T", err, tt.wantType)
			}
			if errors.Is(tt.wantErr, ErrDevIssuer) && !errors.Is(err, ErrUntrustedIssuer) {
				t.Errorf("Verify error = %v, want it to wrap ErrUntrustedIssuer too", err)
			}
			if n := other.discovery.Load() + other.jwks.Load(); n != 0 {
				t.Errorf("another host got %d requests", n)
			}
			// Warm reports the same failure.
			werrs := r.Warm(context.Background())
			if tt.wantErr == nil && len(werrs) != 0 || tt.wantErr != nil && (len(werrs) != 1 || !errors.Is(werrs[0], tt.wantErr)) {
				t.Errorf("Warm errors = %v, want one wrapping %v", werrs, tt.wantErr)
			}
		})
	}
}

func TestDiscoveryRetriedOnlyAfterCooldown(t *testing.T) {
	key := newRSAKey(t, "k1")
	ti := newTestIssuer(t, key)
	ti.set(func(ti *testIssuer) { ti.discoveryCode = http.StatusServiceUnavailable })
	clock := newFakeClock()
	r := newTestRegistry(t, ti, clock, Options{})

	verify := func() error {
		_, err := r.Verify(context.Background(), key.sign(t, claimsAt(ti.URL(), clock.Now()), nil))
		return err
	}
	for range 5 {
		if err := verify(); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Verify error = %v, want ErrUnavailable", err)
		}
	}
	if got := ti.discovery.Load(); got != 1 {
		t.Errorf("discovery requests within the cooldown = %d, want 1", got)
	}
	ti.set(func(ti *testIssuer) { ti.discoveryCode = 0 })
	clock.Advance(DefaultRefreshCooldown)
	if err := verify(); err != nil {
		t.Fatalf("after the cooldown: Verify error = %v", err)
	}
	if got := ti.discovery.Load(); got != 2 {
		t.Errorf("discovery requests = %d, want 2", got)
	}
}

func TestBoundedClientRedirects(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, fmt.Sprintf("/r%d", hits.Add(1)), http.StatusFound)
	}))
	t.Cleanup(srv.Close)
	origin, err := validateIssuerURL(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	c := boundedClient(nil, origin, Options{}.withDefaults())
	if _, err := fetch(context.Background(), c, srv.URL); err == nil {
		t.Fatal("fetch followed an endless redirect chain")
	}
	if got := hits.Load(); got != maxRedirects+1 {
		t.Errorf("requests = %d, want %d (the first and %d redirects)", got, maxRedirects+1, maxRedirects)
	}
}
