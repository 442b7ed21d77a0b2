package exchange_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/exchange"
)

// newKEK returns fresh random key encryption key bytes.
func newKEK(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, exchange.KEKSize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func newSealer(t testing.TB, kek []byte, previous ...[]byte) *exchange.KeySealer {
	t.Helper()
	s, err := exchange.NewKeySealer(kek, previous...)
	if err != nil {
		t.Fatalf("NewKeySealer: %v", err)
	}
	return s
}

// sealedDER is a stand-in private key: DER starts with a SEQUENCE.
var sealedDER = append([]byte{0x30, 0x81, 0x87}, bytes.Repeat([]byte{0x42}, 135)...)

func TestKeySealerRoundTrip(t *testing.T) {
	s := newSealer(t, newKEK(t))
	blob, err := s.Seal("kid-1", "ES256", sealedDER)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	if !exchange.IsSealed(blob) || exchange.IsSealed(sealedDER) {
		t.Errorf("IsSealed(blob) = %v, IsSealed(DER) = %v; want true, false", exchange.IsSealed(blob), exchange.IsSealed(sealedDER))
	}
	if bytes.Contains(blob, sealedDER[3:20]) {
		t.Error("the sealed blob holds the plaintext")
	}
	again, err := s.Seal("kid-1", "ES256", sealedDER)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	if bytes.Equal(blob, again) {
		t.Error("two seals of the same key are equal: the nonce is not random")
	}
	got, err := s.Open("kid-1", "ES256", blob)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if !bytes.Equal(got, sealedDER) {
		t.Errorf("Open = %x, want %x", got, sealedDER)
	}
}

func TestKeySealerRefuses(t *testing.T) {
	kek := newKEK(t)
	s := newSealer(t, kek)
	blob, err := s.Seal("kid-1", "ES256", sealedDER)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	flip := func(i int) []byte {
		b := bytes.Clone(blob)
		b[i] ^= 0x01
		return b
	}
	tests := []struct {
		name     string
		sealer   *exchange.KeySealer
		kid, alg string
		blob     []byte
		want     error
	}{
		{"magic flipped", s, "kid-1", "ES256", flip(0), exchange.ErrKeyUnseal},
		{"version flipped", s, "kid-1", "ES256", flip(3), exchange.ErrKeyUnseal},
		{"KEK id flipped", s, "kid-1", "ES256", flip(4), exchange.ErrUnknownKEK},
		{"nonce flipped", s, "kid-1", "ES256", flip(12), exchange.ErrKeyUnseal},
		{"ciphertext flipped", s, "kid-1", "ES256", flip(30), exchange.ErrKeyUnseal},
		{"tag flipped", s, "kid-1", "ES256", flip(len(blob) - 1), exchange.ErrKeyUnseal},
		{"truncated", s, "kid-1", "ES256", blob[:len(blob)-1], exchange.ErrKeyUnseal},
		{"header only", s, "kid-1", "ES256", blob[:24], exchange.ErrKeyUnseal},
		{"moved to another kid", s, "kid-2", "ES256", blob, exchange.ErrKeyUnseal},
		{"moved to another algorithm", s, "kid-1", "EdDSA", blob, exchange.ErrKeyUnseal},
		{"plain DER", s, "kid-1", "ES256", sealedDER, exchange.ErrKeyUnseal},
		{"wrong KEK", newSealer(t, newKEK(t)), "kid-1", "ES256", blob, exchange.ErrUnknownKEK},
		{"KEK rotated without keeping the old one", newSealer(t, newKEK(t), newKEK(t)), "kid-1", "ES256", blob, exchange.ErrUnknownKEK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.sealer.Open(tt.kid, tt.alg, tt.blob)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open = %x, %v; want an error wrapping %q", got, err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.kid) {
				t.Errorf("error %q does not name the key %s", err, tt.kid)
			}
		})
	}
}

// TestKeySealerKEKRotation: a sealer with a new KEK and the old one listed
// as previous opens what either sealed, and seals with the new one only.
func TestKeySealerKEKRotation(t *testing.T) {
	oldKEK, newKEKBytes := newKEK(t), newKEK(t)
	old := newSealer(t, oldKEK)
	oldBlob, err := old.Seal("kid-old", "RS256", sealedDER)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	rotated := newSealer(t, newKEKBytes, oldKEK)
	if got, err := rotated.Open("kid-old", "RS256", oldBlob); err != nil || !bytes.Equal(got, sealedDER) {
		t.Fatalf("Open(blob of the previous KEK) = %x, %v; want the key", got, err)
	}
	newBlob, err := rotated.Seal("kid-new", "RS256", sealedDER)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	sum := sha256.Sum256(newKEKBytes)
	if !bytes.Equal(newBlob[4:12], sum[:8]) {
		t.Errorf("sealed with KEK id %x, want the current KEK's %x", newBlob[4:12], sum[:8])
	}
	if _, err := old.Open("kid-new", "RS256", newBlob); !errors.Is(err, exchange.ErrUnknownKEK) {
		t.Errorf("old sealer Open(blob of the new KEK) = %v, want ErrUnknownKEK", err)
	}
	if rotated.KEKID() != hex.EncodeToString(sum[:8]) {
		t.Errorf("KEKID = %s, want %s", rotated.KEKID(), hex.EncodeToString(sum[:8]))
	}
}

func TestNewKeySealerKEKSize(t *testing.T) {
	good := newKEK(t)
	tests := []struct {
		name     string
		kek      []byte
		previous [][]byte
		wantErr  bool
	}{
		{"32 bytes", good, nil, false},
		{"16 bytes (AES-128)", good[:16], nil, true},
		{"empty", nil, nil, true},
		{"33 bytes", append(bytes.Clone(good), 0), nil, true},
		{"short previous KEK", good, [][]byte{good[:31]}, true},
		{"previous equal to current", good, [][]byte{good}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := exchange.NewKeySealer(tt.kek, tt.previous...)
			if (err != nil) != tt.wantErr {
				t.Errorf("NewKeySealer: %v, want error %v", err, tt.wantErr)
			}
		})
	}
}

func TestParseKEK(t *testing.T) {
	raw := newKEK(t)
	b64 := base64.StdEncoding.EncodeToString(raw)
	tests := []struct {
		name string
		data []byte
		want []byte // nil: an error
	}{
		{"openssl rand -base64 32 (newline)", []byte(b64 + "\n"), raw},
		{"base64 with CRLF and spaces", []byte("  " + b64 + "\r\n"), raw},
		{"raw 32 bytes", raw, raw},
		{"raw 32 bytes that end in a newline byte", append(bytes.Clone(raw[:31]), '\n'), append(bytes.Clone(raw[:31]), '\n')},
		{"base64 of 16 bytes", []byte(base64.StdEncoding.EncodeToString(raw[:16]) + "\n"), nil},
		{"hex of 32 bytes", []byte(hex.EncodeToString(raw)), nil},
		{"raw 31 bytes", raw[:31], nil},
		{"URL-safe base64", []byte(base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32))), nil},
		{"empty", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := exchange.ParseKEK(tt.data)
			if tt.want == nil {
				if err == nil {
					t.Fatalf("ParseKEK = %x, want an error", got)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tt.want) {
				t.Fatalf("ParseKEK = %x, %v; want %x", got, err, tt.want)
			}
		})
	}
}

func FuzzParseKEK(f *testing.F) {
	f.Add([]byte("q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=\n"))
	f.Add(bytes.Repeat([]byte{7}, exchange.KEKSize))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		kek, err := exchange.ParseKEK(data)
		if err != nil {
			return
		}
		if len(kek) != exchange.KEKSize {
			t.Fatalf("ParseKEK accepted a %d-byte key", len(kek))
		}
		if _, err := exchange.NewKeySealer(kek); err != nil {
			t.Fatalf("NewKeySealer(ParseKEK output): %v", err)
		}
	})
}

// FuzzKeySealerOpen: Open never panics on a stored blob, and what opens is
// only ever what was sealed under this KEK for this key. (Each fuzz worker
// seals anew with a fresh nonce, so the blob itself is not compared.)
func FuzzKeySealerOpen(f *testing.F) {
	s := newSealer(f, bytes.Repeat([]byte{1}, exchange.KEKSize))
	blob, err := s.Seal("kid", "ES256", sealedDER)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(blob)
	f.Add(sealedDER)
	f.Add([]byte("tbk1"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := s.Open("kid", "ES256", data)
		if err == nil && (!exchange.IsSealed(data) || !bytes.Equal(got, sealedDER)) {
			t.Fatalf("Open(%x) = %x, want an error", data, got)
		}
	})
}
