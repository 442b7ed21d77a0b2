package exchange

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// Encryption at rest of the signing keys' private halves. A key encryption
// key (KEK), held outside the store, seals each private key with AES-256-GCM
// before it reaches the store, so a database backup or read-only SQL access
// no longer lets anyone forge the broker's JWTs.
//
// A sealed blob is
//
//	"tbk1" | KEK id (8 bytes) | nonce (12 bytes) | ciphertext | GCM tag (16 bytes)
//
// where the KEK id is the first 8 bytes of SHA-256(KEK), so Open picks the
// right KEK among the current and previous ones without trial decryption.
// The additional authenticated data binds the blob to its key row (kid and
// algorithm) and to its own header, so a blob copied onto another row does
// not open. A legacy, unsealed key is PKCS #8 DER, which always starts with
// 0x30 (a SEQUENCE): the two never look alike.

// KEKSize is the length of a key encryption key: AES-256.
const KEKSize = 32

// sealMagic starts every sealed private key; the digit is the format version.
const sealMagic = "tbk1"

// kekIDSize is the length of the KEK id carried by a sealed blob.
const kekIDSize = 8

// sealHeaderSize is the magic, the KEK id and the GCM nonce.
const sealHeaderSize = len(sealMagic) + kekIDSize + 12

// sealAADLabel separates this use of the KEK from any other.
const sealAADLabel = "tokenbroker signing key\x00"

// The errors below are wrapped in one naming the key, e.g. "exchange:
// signing key KID is encrypted: no key encryption key is configured".
var (
	// ErrKeySealed is returned when a stored signing key is encrypted and no
	// key encryption key is configured.
	ErrKeySealed = errors.New("no key encryption key is configured")
	// ErrUnknownKEK is returned when a stored signing key was encrypted with
	// a key encryption key that is neither the current nor a previous one.
	ErrUnknownKEK = errors.New("its key encryption key is not configured")
	// ErrKeyUnseal is returned when a sealed signing key fails
	// authentication: it was altered, or copied from another key row.
	ErrKeyUnseal = errors.New("it does not decrypt (altered, or copied from another key)")
)

// KeySealer encrypts signing keys at rest with a current key encryption key
// and decrypts them with it or with one of the previous ones (so the KEK
// itself can be rotated: seal with the new one, keep the old one listed until
// every key it sealed has left the store). It is safe for concurrent use.
type KeySealer struct {
	current  kek
	previous []kek
}

// kek is one key encryption key, ready to use.
type kek struct {
	id   [kekIDSize]byte
	aead cipher.AEAD
}

// NewKeySealer returns a sealer that seals with kek (exactly KEKSize random
// bytes) and opens what kek or any of previous sealed. A previous KEK equal
// to the current one is ignored.
func NewKeySealer(current []byte, previous ...[]byte) (*KeySealer, error) {
	cur, err := newKEK(current)
	if err != nil {
		return nil, fmt.Errorf("exchange: key encryption key: %w", err)
	}
	s := &KeySealer{current: cur}
	for i, p := range previous {
		k, err := newKEK(p)
		if err != nil {
			return nil, fmt.Errorf("exchange: previous key encryption key %d: %w", i+1, err)
		}
		if k.id != cur.id {
			s.previous = append(s.previous, k)
		}
	}
	return s, nil
}

func newKEK(key []byte) (kek, error) {
	if len(key) != KEKSize {
		return kek{}, fmt.Errorf("%d bytes, want %d", len(key), KEKSize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return kek{}, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return kek{}, err
	}
	k := kek{aead: aead}
	k.id = kekID(key)
	return k, nil
}

func kekID(key []byte) [kekIDSize]byte {
	sum := sha256.Sum256(key)
	var id [kekIDSize]byte
	copy(id[:], sum[:kekIDSize])
	return id
}

// KEKID returns the hex id of the current key encryption key, as sealed
// blobs carry it: the first 8 bytes of its SHA-256. It names the KEK in logs
// without revealing it.
func (s *KeySealer) KEKID() string { return hex.EncodeToString(s.current.id[:]) }

// IsSealed reports whether a stored private key is a sealed blob rather than
// plain PKCS #8 DER.
func IsSealed(privateKey []byte) bool { return bytes.HasPrefix(privateKey, []byte(sealMagic)) }

// Seal encrypts the private key der of the key kid (of algorithm alg) with
// the current key encryption key.
func (s *KeySealer) Seal(kid, alg string, der []byte) ([]byte, error) {
	nonceSize := s.current.aead.NonceSize()
	out := make([]byte, sealHeaderSize, sealHeaderSize+len(der)+s.current.aead.Overhead())
	copy(out, sealMagic)
	copy(out[len(sealMagic):], s.current.id[:])
	nonce := out[sealHeaderSize-nonceSize : sealHeaderSize]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("exchange: seal key %s: %w", kid, err)
	}
	aad := sealAAD(out[:len(sealMagic)+kekIDSize], kid, alg)
	return s.current.aead.Seal(out, nonce, der, aad), nil
}

// Open decrypts a blob Seal made for the key kid of algorithm alg, with the
// key encryption key whose id the blob carries. It returns an error wrapping
// ErrUnknownKEK when that KEK is not configured, and one wrapping
// ErrKeyUnseal when the blob was altered or belongs to another key.
func (s *KeySealer) Open(kid, alg string, blob []byte) ([]byte, error) {
	if !IsSealed(blob) || len(blob) < sealHeaderSize+s.current.aead.Overhead() {
		return nil, fmt.Errorf("exchange: signing key %s is not a whole sealed blob: %w", kid, ErrKeyUnseal)
	}
	var id [kekIDSize]byte
	copy(id[:], blob[len(sealMagic):])
	k, ok := s.kek(id)
	if !ok {
		return nil, fmt.Errorf("exchange: signing key %s is encrypted with KEK %s: %w (the current KEK is %s)", kid, hex.EncodeToString(id[:]), ErrUnknownKEK, s.KEKID())
	}
	nonce := blob[sealHeaderSize-k.aead.NonceSize() : sealHeaderSize]
	aad := sealAAD(blob[:len(sealMagic)+kekIDSize], kid, alg)
	der, err := k.aead.Open(nil, nonce, blob[sealHeaderSize:], aad)
	if err != nil {
		return nil, fmt.Errorf("exchange: signing key %s is encrypted but %w", kid, ErrKeyUnseal)
	}
	return der, nil
}

func (s *KeySealer) kek(id [kekIDSize]byte) (kek, bool) {
	if id == s.current.id {
		return s.current, true
	}
	for _, k := range s.previous {
		if id == k.id {
			return k, true
		}
	}
	return kek{}, false
}

// sealAAD binds a blob to its header and key row. kid and alg are length
// prefixed, so no two (kid, alg) pairs give the same bytes.
func sealAAD(header []byte, kid, alg string) []byte {
	aad := make([]byte, 0, len(sealAADLabel)+len(header)+2*binary.MaxVarintLen64+len(kid)+len(alg))
	aad = append(aad, sealAADLabel...)
	aad = append(aad, header...)
	aad = binary.AppendUvarint(aad, uint64(len(kid)))
	aad = append(aad, kid...)
	aad = binary.AppendUvarint(aad, uint64(len(alg)))
	return append(aad, alg...)
}

// ParseKEK reads a key encryption key file's content: the standard base64
// of KEKSize bytes (what `openssl rand -base64 32` prints), surrounding
// white space ignored, or exactly KEKSize raw bytes. The two cannot be
// confused: the base64 form is 44 characters long.
func ParseKEK(data []byte) ([]byte, error) {
	if text := bytes.TrimSpace(data); len(text) == base64.StdEncoding.EncodedLen(KEKSize) {
		key := make([]byte, base64.StdEncoding.DecodedLen(len(text)))
		n, err := base64.StdEncoding.Decode(key, text)
		if err == nil && n == KEKSize {
			return key[:n], nil
		}
	}
	if len(data) == KEKSize {
		return bytes.Clone(data), nil
	}
	return nil, fmt.Errorf("exchange: a key encryption key is %d random bytes, raw or base64 (openssl rand -base64 %d); got %d bytes of something else", KEKSize, KEKSize, len(data))
}
