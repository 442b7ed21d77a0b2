package storetest

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenbroker/tokenbroker/exchange"
)

// apiKey returns a valid key record named n, created at base, living an
// hour, with uses uses.
func apiKey(n string, uses int64) exchange.APIKey {
	h := sha256.Sum256([]byte(n))
	return exchange.APIKey{
		ID:        "kid_" + n,
		Hash:      h[:],
		Subject:   "repo:octo-org/app:ref:refs/heads/main",
		Issuer:    "https://token.actions.githubusercontent.com",
		Policy:    "artifacts",
		Audience:  []string{"artifact-api"},
		Scopes:    []string{"artifacts:write", "artifacts:read"},
		Metadata:  map[string]string{"repository": "octo-org/app", "run_id": "42"},
		CreatedAt: base,
		ExpiresAt: base.Add(time.Hour),
		Uses:      uses,
		Remaining: uses,
	}
}

// sameInstant compares times as instants, whatever their zone.
var sameInstant = cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })

func testAPIKeyRoundTrip(t *testing.T, open func(t *testing.T) exchange.Store) {
	s := newStore(t, open)
	bare := apiKey("bare", 0)
	bare.Audience, bare.Scopes, bare.Metadata = nil, nil, nil
	keys := []exchange.APIKey{apiKey("a", 0), apiKey("b", 3), bare}
	if err := s.InsertAPIKeys(ctx(t), keys); err != nil {
		t.Fatalf("InsertAPIKeys: %v", err)
	}
	for _, want := range keys {
		got, err := s.APIKeyByHash(ctx(t), want.Hash)
		if err != nil {
			t.Fatalf("APIKeyByHash(%s): %v", want.ID, err)
		}
		if d := cmp.Diff(want, got, sameInstant); d != "" {
			t.Errorf("APIKeyByHash(%s) (-want +got):\n%s", want.ID, d)
		}
		got, err = s.APIKeyByID(ctx(t), want.ID)
		if err != nil {
			t.Fatalf("APIKeyByID(%s): %v", want.ID, err)
		}
		if d := cmp.Diff(want, got, sameInstant); d != "" {
			t.Errorf("APIKeyByID(%s) (-want +got):\n%s", want.ID, d)
		}
	}
	unknown := sha256.Sum256([]byte("unknown"))
	if _, err := s.APIKeyByHash(ctx(t), unknown[:]); !errors.Is(err, exchange.ErrNotFound) {
		t.Errorf("APIKeyByHash(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := s.APIKeyByID(ctx(t), "kid_unknown"); !errors.Is(err, exchange.ErrNotFound) {
		t.Errorf("APIKeyByID(unknown) = %v, want ErrNotFound", err)
	}
	if _, _, err := useOne(ctx(t), s, unknown[:], base); !errors.Is(err, exchange.ErrNotFound) {
		t.Errorf("UseAPIKey(unknown) = %v, want ErrNotFound", err)
	}
}

func testAPIKeyInsertAtomic(t *testing.T, open func(t *testing.T) exchange.Store) {
	s := newStore(t, open)
	if err := s.InsertAPIKeys(ctx(t), []exchange.APIKey{apiKey("a", 0)}); err != nil {
		t.Fatal(err)
	}
	// The batch's second key repeats a stored hash: nothing of it is kept.
	dup := apiKey("a", 0)
	dup.ID = "kid_other"
	if err := s.InsertAPIKeys(ctx(t), []exchange.APIKey{apiKey("b", 0), dup}); err == nil {
		t.Fatal("InsertAPIKeys with a duplicate hash: got nil error")
	}
	if _, err := s.APIKeyByID(ctx(t), "kid_b"); !errors.Is(err, exchange.ErrNotFound) {
		t.Errorf("key of a failed batch: APIKeyByID = %v, want ErrNotFound", err)
	}
	invalid := []struct {
		name string
		edit func(k *exchange.APIKey)
	}{
		{"short hash", func(k *exchange.APIKey) { k.Hash = k.Hash[:16] }},
		{"no id", func(k *exchange.APIKey) { k.ID = "" }},
		{"no policy", func(k *exchange.APIKey) { k.Policy = "" }},
		{"expires before created", func(k *exchange.APIKey) { k.ExpiresAt = k.CreatedAt }},
		{"more remaining than uses", func(k *exchange.APIKey) { k.Remaining = k.Uses + 1 }},
	}
	for _, tt := range invalid {
		t.Run(tt.name, func(t *testing.T) {
			k := apiKey("invalid-"+tt.name, 2)
			tt.edit(&k)
			if err := s.InsertAPIKeys(ctx(t), []exchange.APIKey{k}); err == nil {
				t.Errorf("InsertAPIKeys: got nil error")
			}
		})
	}
}

func testUseAPIKey(t *testing.T, open func(t *testing.T) exchange.Store) {
	type use struct {
		at            time.Duration // after base
		wantUsed      bool
		wantRemaining int64
	}
	tests := []struct {
		name    string
		uses    int64
		revoked bool
		steps   []use
	}{
		{"unlimited key is never spent", 0, false, []use{
			{time.Minute, true, 0}, {time.Minute, true, 0}, {59 * time.Minute, true, 0},
		}},
		{"limited key counts down to zero", 2, false, []use{
			{time.Minute, true, 1}, {time.Minute, true, 0}, {time.Minute, false, 0}, {time.Minute, false, 0},
		}},
		{"expired key is not spent", 2, false, []use{
			{time.Hour, false, 2}, {2 * time.Hour, false, 2},
		}},
		{"revoked key is not spent", 2, true, []use{
			{time.Minute, false, 2},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t, open)
			k := apiKey("k", tt.uses)
			if err := s.InsertAPIKeys(ctx(t), []exchange.APIKey{k}); err != nil {
				t.Fatal(err)
			}
			if tt.revoked {
				if ok, err := s.RevokeAPIKey(ctx(t), k.ID, base); err != nil || !ok {
					t.Fatalf("RevokeAPIKey = %t, %v", ok, err)
				}
			}
			for i, st := range tt.steps {
				got, used, err := useOne(ctx(t), s, k.Hash, base.Add(st.at))
				if err != nil {
					t.Fatalf("step %d: UseAPIKey: %v", i, err)
				}
				if used != st.wantUsed || got.Remaining != st.wantRemaining || got.ID != k.ID {
					t.Errorf("step %d: UseAPIKey = %s used=%t remaining=%d, want used=%t remaining=%d",
						i, got.ID, used, got.Remaining, st.wantUsed, st.wantRemaining)
				}
			}
		})
	}
}

func testUseAPIKeyConcurrent(t *testing.T, open func(t *testing.T) exchange.Store) {
	s := newStore(t, open)
	const uses, callers = 10, 32
	k := apiKey("k", uses)
	if err := s.InsertAPIKeys(ctx(t), []exchange.APIKey{k}); err != nil {
		t.Fatal(err)
	}
	used := make([]bool, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() { _, used[i], errs[i] = useOne(ctx(t), s, k.Hash, base.Add(time.Minute)) })
	}
	wg.Wait()
	granted := 0
	for i := range callers {
		if errs[i] != nil {
			t.Errorf("caller %d: %v", i, errs[i])
		}
		if used[i] {
			granted++
		}
	}
	if granted != uses {
		t.Errorf("%d concurrent uses of a key with %d uses granted %d, want exactly %d", callers, uses, granted, uses)
	}
	got, err := s.APIKeyByHash(ctx(t), k.Hash)
	if err != nil || got.Remaining != 0 {
		t.Errorf("after: remaining %d, %v; want 0", got.Remaining, err)
	}
}

func testRevokeAPIKey(t *testing.T, open func(t *testing.T) exchange.Store) {
	s := newStore(t, open)
	a, b := apiKey("a", 0), apiKey("b", 0)
	if err := s.InsertAPIKeys(ctx(t), []exchange.APIKey{a, b}); err != nil {
		t.Fatal(err)
	}
	unknown := sha256.Sum256([]byte("unknown"))
	steps := []struct {
		name   string
		revoke func() (bool, error)
		want   bool
	}{
		{"by id", func() (bool, error) { return s.RevokeAPIKey(ctx(t), a.ID, base.Add(time.Minute)) }, true},
		{"again by id", func() (bool, error) { return s.RevokeAPIKey(ctx(t), a.ID, base.Add(2*time.Minute)) }, false},
		{"again by hash", func() (bool, error) { return s.RevokeAPIKeyByHash(ctx(t), a.Hash, base.Add(2*time.Minute)) }, false},
		{"by hash", func() (bool, error) { return s.RevokeAPIKeyByHash(ctx(t), b.Hash, base.Add(time.Minute)) }, true},
		{"unknown id", func() (bool, error) { return s.RevokeAPIKey(ctx(t), "kid_unknown", base) }, false},
		{"unknown hash", func() (bool, error) { return s.RevokeAPIKeyByHash(ctx(t), unknown[:], base) }, false},
	}
	for _, st := range steps {
		got, err := st.revoke()
		if err != nil || got != st.want {
			t.Errorf("revoke %s = %t, %v; want %t, nil", st.name, got, err, st.want)
		}
	}
	for _, k := range []exchange.APIKey{a, b} {
		got, err := s.APIKeyByID(ctx(t), k.ID)
		if err != nil || !got.RevokedAt.Equal(base.Add(time.Minute)) {
			t.Errorf("%s: RevokedAt = %s, %v; want the first revocation's time %s", k.ID, got.RevokedAt, err, base.Add(time.Minute))
		}
	}
}

func testListAPIKeys(t *testing.T, open func(t *testing.T) exchange.Store) {
	s := newStore(t, open)
	var keys []exchange.APIKey
	for i, p := range []struct{ subject, policy string }{
		{"repo:a", "deploy"}, {"repo:a", "artifacts"}, {"repo:b", "deploy"}, {"repo:b", "deploy"},
	} {
		k := apiKey(fmt.Sprint(i), 0)
		k.Subject, k.Policy = p.subject, p.policy
		k.CreatedAt = base.Add(time.Duration(i) * time.Minute)
		k.ExpiresAt = k.CreatedAt.Add(10 * time.Minute)
		keys = append(keys, k)
	}
	if err := s.InsertAPIKeys(ctx(t), keys); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeAPIKey(ctx(t), "kid_3", base); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		q    exchange.APIKeyQuery
		want []string
	}{
		{"all, newest first", exchange.APIKeyQuery{}, []string{"kid_3", "kid_2", "kid_1", "kid_0"}},
		{"by subject", exchange.APIKeyQuery{Subject: "repo:a"}, []string{"kid_1", "kid_0"}},
		{"by policy", exchange.APIKeyQuery{Policy: "deploy"}, []string{"kid_3", "kid_2", "kid_0"}},
		{"by subject and policy", exchange.APIKeyQuery{Subject: "repo:b", Policy: "deploy"}, []string{"kid_3", "kid_2"}},
		{"live at a time leaves out expired and revoked", exchange.APIKeyQuery{Now: base.Add(10*time.Minute + time.Second)}, []string{"kid_2", "kid_1"}},
		{"limit", exchange.APIKeyQuery{Limit: 1}, []string{"kid_3"}},
		{"no match", exchange.APIKeyQuery{Subject: "repo:c"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListAPIKeys(ctx(t), tt.q)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, k := range got {
				ids = append(ids, k.ID)
			}
			if d := cmp.Diff(tt.want, ids); d != "" {
				t.Errorf("ListAPIKeys (-want +got):\n%s", d)
			}
		})
	}
}

func testPurgeAPIKeys(t *testing.T, open func(t *testing.T) exchange.Store) {
	s := newStore(t, open)
	var keys []exchange.APIKey
	for i, ttl := range []time.Duration{time.Minute, 2 * time.Minute, time.Hour} {
		k := apiKey(fmt.Sprint(i), 0)
		k.ExpiresAt = base.Add(ttl)
		keys = append(keys, k)
	}
	if err := s.InsertAPIKeys(ctx(t), keys); err != nil {
		t.Fatal(err)
	}
	if n, err := s.PurgeAPIKeys(ctx(t), base.Add(30*time.Minute)); err != nil || n != 2 {
		t.Errorf("PurgeAPIKeys = %d, %v; want 2, nil", n, err)
	}
	if _, err := s.APIKeyByID(ctx(t), "kid_0"); !errors.Is(err, exchange.ErrNotFound) {
		t.Errorf("purged key: %v, want ErrNotFound", err)
	}
	if _, err := s.APIKeyByID(ctx(t), "kid_2"); err != nil {
		t.Errorf("unexpired key after purge: %v", err)
	}
}

func testRevokedTokens(t *testing.T, open func(t *testing.T) exchange.Store) {
	s := newStore(t, open)
	steps := []struct {
		name string
		run  func() error
	}{
		{"revoke a", func() error { return s.RevokeToken(ctx(t), "a", base.Add(time.Minute)) }},
		{"revoke b", func() error { return s.RevokeToken(ctx(t), "b", base.Add(time.Hour)) }},
		{"revoke a again, later", func() error { return s.RevokeToken(ctx(t), "a", base.Add(2*time.Hour)) }},
		{"revoke b again, earlier", func() error { return s.RevokeToken(ctx(t), "b", base.Add(time.Minute)) }},
	}
	for _, st := range steps {
		if err := st.run(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
	}
	for jti, want := range map[string]bool{"a": true, "b": true, "c": false} {
		if got, err := s.TokenRevoked(ctx(t), jti); err != nil || got != want {
			t.Errorf("TokenRevoked(%q) = %t, %v; want %t", jti, got, err, want)
		}
	}
	// a was extended to 2h and b kept its 1h: a purge at 90 minutes drops b only.
	if n, err := s.PurgeRevokedTokens(ctx(t), base.Add(90*time.Minute)); err != nil || n != 1 {
		t.Errorf("PurgeRevokedTokens = %d, %v; want 1, nil", n, err)
	}
	if got, _ := s.TokenRevoked(ctx(t), "b"); got {
		t.Errorf("b still revoked after its purge")
	}
	if got, _ := s.TokenRevoked(ctx(t), "a"); !got {
		t.Errorf("a purged too early")
	}
	if err := s.RevokeToken(ctx(t), "", base.Add(time.Hour)); err == nil {
		t.Errorf("RevokeToken with empty jti: got nil error")
	}
}
