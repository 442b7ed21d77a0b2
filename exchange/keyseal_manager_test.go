package exchange_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenbroker/tokenbroker/exchange"
	"github.com/tokenbroker/tokenbroker/exchange/store/storetest"
)

// assertSealed reads every key straight from the store and checks that no
// private key is held in the clear.
func assertSealed(t *testing.T, st exchange.Store, now time.Time, wantKeys int) {
	t.Helper()
	stored, err := st.SigningKeys(context.Background(), now)
	if err != nil {
		t.Fatalf("SigningKeys: %v", err)
	}
	if len(stored) != wantKeys {
		t.Fatalf("store holds %d keys, want %d", len(stored), wantKeys)
	}
	for _, sk := range stored {
		if !bytes.HasPrefix(sk.PrivateKey, []byte("tbk1")) {
			t.Errorf("key %s is stored without the sealed prefix: %x", sk.ID, sk.PrivateKey[:min(8, len(sk.PrivateKey))])
		}
		if _, err := x509.ParsePKCS8PrivateKey(sk.PrivateKey); err == nil {
			t.Errorf("key %s is stored as a PKCS #8 private key", sk.ID)
		}
	}
}

// TestKeyManagerSealsKeys: with a sealer, the first key and a rotated one
// reach the store sealed, and the broker signs with them.
func TestKeyManagerSealsKeys(t *testing.T) {
	ctx := context.Background()
	clock := storetest.NewClock(rotationStart)
	st := newRotationStore(t)
	sealer := newSealer(t, newKEK(t))
	km, err := exchange.NewKeyManager(ctx, st, "ES256", clock.Now, exchange.WithKeySealer(sealer))
	if err != nil {
		t.Fatalf("NewKeyManager: %v", err)
	}
	assertSealed(t, st, clock.Now(), 1)
	tok, _ := sign(t, km)
	if err := verifyWithJWKS(km.JWKS(), tok); err != nil {
		t.Fatalf("a token signed with the sealed key does not verify: %v", err)
	}

	next, err := km.Rotate(ctx, 10*time.Minute, time.Hour)
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	assertSealed(t, st, clock.Now(), 2)
	clock.Advance(10 * time.Minute)
	tok, kid := sign(t, km)
	if kid != next.ID {
		t.Fatalf("signed with %s after the rotation, want %s", kid, next.ID)
	}
	if err := verifyWithJWKS(km.JWKS(), tok); err != nil {
		t.Fatalf("a token signed with the rotated sealed key does not verify: %v", err)
	}
	for _, k := range km.Keys() {
		if !k.Encrypted {
			t.Errorf("Keys: %s is not marked encrypted", k.ID)
		}
	}
}

// TestKeyManagerOpensSealedKeys: another broker on the same store loads the
// sealed keys only with the right key encryption key.
func TestKeyManagerOpensSealedKeys(t *testing.T) {
	ctx := context.Background()
	clock := storetest.NewClock(rotationStart)
	st := newRotationStore(t)
	kek := newKEK(t)
	first, err := exchange.NewKeyManager(ctx, st, "ES256", clock.Now, exchange.WithKeySealer(newSealer(t, kek)))
	if err != nil {
		t.Fatalf("NewKeyManager: %v", err)
	}
	kid := first.Keys()[0].ID

	tests := []struct {
		name    string
		opts    []exchange.KeyManagerOption
		wantErr error
	}{
		{"same KEK", []exchange.KeyManagerOption{exchange.WithKeySealer(newSealer(t, kek))}, nil},
		{"KEK rotated, old one listed as previous", []exchange.KeyManagerOption{exchange.WithKeySealer(newSealer(t, newKEK(t), kek))}, nil},
		{"no sealer", nil, exchange.ErrKeySealed},
		{"another KEK", []exchange.KeyManagerOption{exchange.WithKeySealer(newSealer(t, newKEK(t)))}, exchange.ErrUnknownKEK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			km, err := exchange.NewKeyManager(ctx, st, "ES256", clock.Now, tt.opts...)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), kid) {
					t.Fatalf("NewKeyManager: %v, want an error naming %s and wrapping %q", err, kid, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewKeyManager: %v", err)
			}
			if d := cmp.Diff(first.JWKS(), km.JWKS()); d != "" {
				t.Errorf("JWKS differs from the first broker's (-want +got):\n%s", d)
			}
			tok, got := sign(t, km)
			if got != kid {
				t.Errorf("signed with %s, want %s", got, kid)
			}
			if err := verifyWithJWKS(first.JWKS(), tok); err != nil {
				t.Errorf("verify: %v", err)
			}
		})
	}
}

// TestKeyManagerLegacyKeys: turning encryption on keeps the plaintext key
// of before working, and the next rotation stores a sealed key.
func TestKeyManagerLegacyKeys(t *testing.T) {
	ctx := context.Background()
	clock := storetest.NewClock(rotationStart)
	st := newRotationStore(t)
	plain := newManager(t, st, clock)
	oldTok, oldID := sign(t, plain)

	km, err := exchange.NewKeyManager(ctx, st, "ES256", clock.Now, exchange.WithKeySealer(newSealer(t, newKEK(t))))
	if err != nil {
		t.Fatalf("NewKeyManager with a sealer on a plaintext key: %v", err)
	}
	if keys := km.Keys(); len(keys) != 1 || keys[0].ID != oldID || keys[0].Encrypted {
		t.Fatalf("Keys = %+v, want the one plaintext key %s", keys, oldID)
	}
	if err := verifyWithJWKS(km.JWKS(), oldTok); err != nil {
		t.Fatalf("verify a token of the plaintext key: %v", err)
	}
	clock.Advance(time.Minute)
	next, err := km.Rotate(ctx, 10*time.Minute, time.Hour)
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	if !next.Encrypted {
		t.Errorf("Rotate = %+v, want an encrypted key", next)
	}
	stored, err := st.SigningKeys(ctx, clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	var got []bool
	for _, sk := range stored {
		got = append(got, exchange.IsSealed(sk.PrivateKey))
	}
	if d := cmp.Diff([]bool{false, true}, got); d != "" {
		t.Errorf("sealed keys in the store, oldest first (-want +got):\n%s", d)
	}

	// The plaintext key leaves once every token it signed has expired.
	clock.Advance(10*time.Minute + time.Hour)
	if err := km.Reload(ctx); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	assertSealed(t, st, clock.Now(), 1)
}
