package exchange_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"

	"github.com/tokenbroker/tokenbroker/exchange"
	"github.com/tokenbroker/tokenbroker/exchange/store/sqlite"
	"github.com/tokenbroker/tokenbroker/exchange/store/storetest"
)

var rotationStart = time.Date(2026, time.March, 1, 12, 0, 0, 0, time.UTC)

// newRotationStore opens an in-memory store closed at the end of the test.
func newRotationStore(t *testing.T) exchange.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), sqlite.Memory)
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func newManager(t *testing.T, st exchange.Store, clock *storetest.Clock) *exchange.KeyManager {
	t.Helper()
	km, err := exchange.NewKeyManager(context.Background(), st, "ES256", clock.Now)
	if err != nil {
		t.Fatalf("NewKeyManager: %v", err)
	}
	return km
}

// sign signs a small claims set and returns the JWS and its kid.
func sign(t *testing.T, km *exchange.KeyManager) (string, string) {
	t.Helper()
	tok, kid, err := km.Sign([]byte(`{"sub":"rotation"}`))
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return tok, kid
}

// verifyWithJWKS verifies tok as a stock verifier would: the key named by
// its kid in the published JWKS.
func verifyWithJWKS(jwks []byte, tok string) error {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil {
		return err
	}
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return err
	}
	keys := set.Key(jws.Signatures[0].Header.KeyID)
	if len(keys) != 1 {
		return errors.New("kid not in the JWKS")
	}
	_, err = jws.Verify(keys[0])
	return err
}

func jwksIDs(t *testing.T, km *exchange.KeyManager) []string {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(km.JWKS(), &set); err != nil {
		t.Fatalf("JWKS: %v", err)
	}
	ids := []string{}
	for _, k := range set.Keys {
		ids = append(ids, k.KeyID)
	}
	return ids
}

type keyState struct {
	ID      string
	State   string
	Signing bool
}

func states(km *exchange.KeyManager) []keyState {
	var out []keyState
	for _, k := range km.Keys() {
		out = append(out, keyState{k.ID, k.State, k.Signing})
	}
	return out
}

func TestRotateWithOverlap(t *testing.T) {
	const publishAhead, keepAfter = 10 * time.Minute, time.Hour
	ctx := context.Background()
	clock := storetest.NewClock(rotationStart)
	st := newRotationStore(t)
	km := newManager(t, st, clock)
	oldTok, oldID := sign(t, km)

	// 1. The new key is published at once but does not sign yet.
	clock.Advance(time.Minute)
	next, err := km.Rotate(ctx, publishAhead, keepAfter)
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	if next.State != exchange.KeyPending || !next.ActiveAt.Equal(clock.Now().Add(publishAhead)) || next.ID == oldID {
		t.Fatalf("Rotate = %+v, want a new pending key active at %s", next, clock.Now().Add(publishAhead))
	}
	if d := cmp.Diff([]string{oldID, next.ID}, jwksIDs(t, km)); d != "" {
		t.Errorf("JWKS while pending (-want +got):\n%s", d)
	}
	if _, kid := sign(t, km); kid != oldID {
		t.Errorf("Sign while pending used %s, want the old key %s", kid, oldID)
	}
	want := []keyState{{oldID, exchange.KeyActive, true}, {next.ID, exchange.KeyPending, false}}
	if d := cmp.Diff(want, states(km)); d != "" {
		t.Errorf("Keys while pending (-want +got):\n%s", d)
	}

	// 2. A rotation is under way: a second one is refused, and a replica
	// starting now adopts the pending key instead of adding a third.
	if _, err := km.Rotate(ctx, publishAhead, keepAfter); !errors.Is(err, exchange.ErrRotationPending) {
		t.Errorf("second Rotate = %v, want ErrRotationPending", err)
	}
	replica := newManager(t, st, clock)
	if d := cmp.Diff(want, states(replica)); d != "" {
		t.Errorf("Keys of a replica started while pending (-want +got):\n%s", d)
	}

	// 3. From ActiveAt the new key signs; the old one retires but still
	// verifies the tokens it signed.
	clock.Advance(publishAhead)
	newTok, kid := sign(t, km)
	if kid != next.ID {
		t.Errorf("Sign after ActiveAt used %s, want the new key %s", kid, next.ID)
	}
	if err := replica.Reload(ctx); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	want = []keyState{{oldID, exchange.KeyRetired, false}, {next.ID, exchange.KeyActive, true}}
	if d := cmp.Diff(want, states(replica)); d != "" {
		t.Errorf("Keys after ActiveAt (-want +got):\n%s", d)
	}
	for name, tok := range map[string]string{"old": oldTok, "new": newTok} {
		if err := verifyWithJWKS(replica.JWKS(), tok); err != nil {
			t.Errorf("%s token against the JWKS after ActiveAt: %v", name, err)
		}
	}

	// 4. Just before RemoveAt the old key is still published; at RemoveAt
	// it leaves the JWKS and its tokens no longer verify.
	clock.Advance(keepAfter - time.Nanosecond)
	if err := km.Reload(ctx); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if err := verifyWithJWKS(km.JWKS(), oldTok); err != nil {
		t.Errorf("old token just before RemoveAt: %v", err)
	}
	clock.Advance(time.Nanosecond)
	if err := km.Reload(ctx); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if d := cmp.Diff([]string{next.ID}, jwksIDs(t, km)); d != "" {
		t.Errorf("JWKS at RemoveAt (-want +got):\n%s", d)
	}
	if err := verifyWithJWKS(km.JWKS(), oldTok); err == nil {
		t.Errorf("old token verified after RemoveAt")
	}
	if err := verifyWithJWKS(km.JWKS(), newTok); err != nil {
		t.Errorf("new token after RemoveAt: %v", err)
	}
}

func TestRotateStaleReplica(t *testing.T) {
	ctx := context.Background()
	clock := storetest.NewClock(rotationStart)
	st := newRotationStore(t)
	a, b := newManager(t, st, clock), newManager(t, st, clock)
	next, err := a.Rotate(ctx, 0, time.Hour)
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	clock.Advance(time.Minute)
	// b has not reloaded since the rotation: it still signs with the old
	// key, and its tokens verify against the JWKS a serves, as the retired
	// key stays published.
	staleTok, staleKid := sign(t, b)
	if staleKid == next.ID {
		t.Fatalf("b signed with %s before reloading", staleKid)
	}
	if err := verifyWithJWKS(a.JWKS(), staleTok); err != nil {
		t.Errorf("token of the stale replica against the JWKS: %v", err)
	}
	if err := b.Reload(ctx); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if _, kid := sign(t, b); kid != next.ID {
		t.Errorf("b signs with %s after reloading, want %s", kid, next.ID)
	}
}

func TestRotateIfDue(t *testing.T) {
	const every, publishAhead, keepAfter = 720 * time.Hour, 10 * time.Minute, time.Hour
	ctx := context.Background()
	clock := storetest.NewClock(rotationStart)
	st := newRotationStore(t)
	a, b := newManager(t, st, clock), newManager(t, st, clock)
	steps := []struct {
		name    string
		advance time.Duration
		km      *exchange.KeyManager
		want    bool
	}{
		{"young key", every - time.Second, a, false},
		{"key as old as every", time.Second, a, true},
		{"next key pending", time.Minute, b, false},
		{"next key young", publishAhead, b, false},
		{"next key due, on the other replica", every, b, true},
	}
	for _, step := range steps {
		clock.Advance(step.advance)
		_, rotated, err := step.km.RotateIfDue(ctx, every, publishAhead, keepAfter)
		if err != nil || rotated != step.want {
			t.Errorf("%s: RotateIfDue = %t, %v; want %t, nil", step.name, rotated, err, step.want)
		}
	}
}

func TestRotateInvalid(t *testing.T) {
	clock := storetest.NewClock(rotationStart)
	km := newManager(t, newRotationStore(t), clock)
	tests := []struct {
		name                    string
		publishAhead, keepAfter time.Duration
	}{
		{"negative publish ahead", -time.Second, time.Hour},
		{"no keep after", time.Minute, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if k, err := km.Rotate(context.Background(), tt.publishAhead, tt.keepAfter); err == nil {
				t.Errorf("Rotate = %+v, nil; want an error", k)
			}
		})
	}
	if n := len(km.Keys()); n != 1 {
		t.Errorf("%d keys after refused rotations, want 1", n)
	}
}

func TestDescribeKeys(t *testing.T) {
	at := func(m int) time.Time { return rotationStart.Add(time.Duration(m) * time.Minute) }
	stored := func(id, alg string, active, retired, remove int) exchange.StoredKey {
		k := exchange.StoredKey{ID: id, Algorithm: alg, CreatedAt: at(0), ActiveAt: at(active)}
		if retired > 0 {
			k.RetiredAt, k.RemoveAt = at(retired), at(remove)
		}
		return k
	}
	tests := []struct {
		name string
		keys []exchange.StoredKey
		now  time.Time
		want []keyState
	}{
		{
			name: "one active key signs",
			keys: []exchange.StoredKey{stored("a", "ES256", 0, 0, 0)},
			now:  at(1),
			want: []keyState{{"a", exchange.KeyActive, true}},
		},
		{
			name: "pending key does not sign",
			keys: []exchange.StoredKey{stored("a", "ES256", 0, 10, 70), stored("b", "ES256", 10, 0, 0)},
			now:  at(9),
			want: []keyState{{"a", exchange.KeyActive, true}, {"b", exchange.KeyPending, false}},
		},
		{
			name: "successor signs from its ActiveAt",
			keys: []exchange.StoredKey{stored("a", "ES256", 0, 10, 70), stored("b", "ES256", 10, 0, 0)},
			now:  at(10),
			want: []keyState{{"a", exchange.KeyRetired, false}, {"b", exchange.KeyActive, true}},
		},
		{
			name: "newest active key signs",
			keys: []exchange.StoredKey{stored("a", "ES256", 0, 0, 0), stored("b", "ES256", 5, 0, 0)},
			now:  at(6),
			want: []keyState{{"a", exchange.KeyActive, false}, {"b", exchange.KeyActive, true}},
		},
		{
			name: "other algorithm never signs",
			keys: []exchange.StoredKey{stored("a", "ES256", 0, 0, 0), stored("r", "RS256", 5, 0, 0)},
			now:  at(6),
			want: []keyState{{"a", exchange.KeyActive, true}, {"r", exchange.KeyActive, false}},
		},
		{
			name: "retired key signs when no successor is active",
			keys: []exchange.StoredKey{stored("a", "ES256", 0, 10, 70)},
			now:  at(20),
			want: []keyState{{"a", exchange.KeyRetired, true}},
		},
		{
			name: "removed key never signs",
			keys: []exchange.StoredKey{stored("a", "ES256", 0, 10, 70)},
			now:  at(70),
			want: []keyState{{"a", exchange.KeyRetired, false}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []keyState
			for _, k := range exchange.DescribeKeys(tt.keys, "ES256", tt.now) {
				got = append(got, keyState{k.ID, k.State, k.Signing})
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("DescribeKeys (-want +got):\n%s", d)
			}
		})
	}
}
