package exchange

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	_ "crypto/sha256" // registers crypto.SHA256 for thumbprints
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Signing algorithms the broker mints with.
var signingAlgorithms = map[string]jose.SignatureAlgorithm{
	"ES256": jose.ES256,
	"RS256": jose.RS256,
	"EdDSA": jose.EdDSA,
}

// DefaultAlgorithm is the signing algorithm when none is configured.
const DefaultAlgorithm = "ES256"

// rsaBits is the modulus size of generated RSA keys.
const rsaBits = 3072

// ValidAlgorithm reports whether alg is one the broker can sign with.
func ValidAlgorithm(alg string) bool { _, ok := signingAlgorithms[alg]; return ok }

// signingKey is a loaded key: its signer and public JWK.
type signingKey struct {
	stored StoredKey
	signer jose.Signer
	public jose.JSONWebKey
}

// KeyManager holds the broker's signing keys. It loads them from the store,
// creates the first one on first start, signs with the key active at the
// time of signing (see Sign) and publishes every key not yet removed in the
// JWKS, pending ones included. It reloads from the store periodically, so
// keys created or rotated by another replica are picked up; Rotate and
// RunRotation (rotate.go) rotate with overlap.
type KeyManager struct {
	store     SigningKeyStore
	algorithm string
	now       func() time.Time
	sealer    *KeySealer // nil: keys are stored unencrypted

	mu   sync.RWMutex
	keys []*signingKey // as loaded: every key not removed, oldest first
	jwks []byte
}

// KeyManagerOption configures a KeyManager.
type KeyManagerOption func(*KeyManager)

// WithKeySealer encrypts the keys the KeyManager creates (the first one and
// every rotation) with s before they reach the store, and decrypts the
// sealed keys it loads. Unsealed (legacy) keys still load, so turning
// encryption on needs no migration: they age out at the next rotations.
// Without it, keys are stored unencrypted and a sealed key is an error
// wrapping ErrKeySealed.
func WithKeySealer(s *KeySealer) KeyManagerOption {
	return func(m *KeyManager) { m.sealer = s }
}

// NewKeyManager loads the signing keys of store, creating a key for
// algorithm (DefaultAlgorithm when empty) if none is current. now may be nil.
func NewKeyManager(ctx context.Context, store SigningKeyStore, algorithm string, now func() time.Time, opts ...KeyManagerOption) (*KeyManager, error) {
	if algorithm == "" {
		algorithm = DefaultAlgorithm
	}
	if !ValidAlgorithm(algorithm) {
		return nil, fmt.Errorf("exchange: unsupported signing algorithm %q", algorithm)
	}
	if now == nil {
		now = time.Now
	}
	m := &KeyManager{store: store, algorithm: algorithm, now: now}
	for _, o := range opts {
		o(m)
	}
	cand, err := m.generateKey(now())
	if err != nil {
		return nil, err
	}
	if _, err := store.EnsureSigningKey(ctx, cand); err != nil {
		return nil, fmt.Errorf("exchange: ensure signing key: %w", err)
	}
	if err := m.Reload(ctx); err != nil {
		return nil, err
	}
	return m, nil
}

// GenerateKey makes a new signing key for algorithm, active at once.
func GenerateKey(algorithm string, now time.Time) (StoredKey, error) {
	var priv crypto.Signer
	var err error
	switch algorithm {
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "RS256":
		priv, err = rsa.GenerateKey(rand.Reader, rsaBits)
	case "EdDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		return StoredKey{}, fmt.Errorf("exchange: unsupported signing algorithm %q", algorithm)
	}
	if err != nil {
		return StoredKey{}, fmt.Errorf("exchange: generate %s key: %w", algorithm, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return StoredKey{}, fmt.Errorf("exchange: encode key: %w", err)
	}
	// The kid is the RFC 7638 thumbprint of the public key: stable, unique,
	// and derivable by anyone holding the JWKS.
	jwk := jose.JSONWebKey{Key: priv.Public()}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return StoredKey{}, fmt.Errorf("exchange: thumbprint: %w", err)
	}
	now = now.UTC()
	return StoredKey{
		ID:         base64.RawURLEncoding.EncodeToString(tp),
		Algorithm:  algorithm,
		PrivateKey: der,
		CreatedAt:  now,
		ActiveAt:   now,
	}, nil
}

// generateKey makes a new key for the configured algorithm, sealed when a
// sealer is set: its private key never reaches the store in the clear.
func (m *KeyManager) generateKey(now time.Time) (StoredKey, error) {
	sk, err := GenerateKey(m.algorithm, now)
	if err != nil || m.sealer == nil {
		return sk, err
	}
	sk.PrivateKey, err = m.sealer.Seal(sk.ID, sk.Algorithm, sk.PrivateKey)
	if err != nil {
		return StoredKey{}, err
	}
	return sk, nil
}

// privateKey returns the PKCS #8 DER of sk, decrypting a sealed key.
func (m *KeyManager) privateKey(sk StoredKey) ([]byte, error) {
	switch {
	case !IsSealed(sk.PrivateKey):
		return sk.PrivateKey, nil
	case m.sealer == nil:
		return nil, fmt.Errorf("exchange: signing key %s is encrypted: %w", sk.ID, ErrKeySealed)
	}
	return m.sealer.Open(sk.ID, sk.Algorithm, sk.PrivateKey)
}

func loadKey(sk StoredKey, der []byte) (*signingKey, error) {
	alg, ok := signingAlgorithms[sk.Algorithm]
	if !ok {
		return nil, fmt.Errorf("exchange: key %s: unsupported algorithm %q", sk.ID, sk.Algorithm)
	}
	priv, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("exchange: key %s: %w", sk.ID, err)
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("exchange: key %s: not a signing key", sk.ID)
	}
	opts := (&jose.SignerOptions{}).WithType("at+jwt")
	js, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: signer, KeyID: sk.ID}}, opts)
	if err != nil {
		return nil, fmt.Errorf("exchange: key %s: %w", sk.ID, err)
	}
	return &signingKey{
		stored: sk,
		signer: js,
		public: jose.JSONWebKey{Key: signer.Public(), KeyID: sk.ID, Algorithm: sk.Algorithm, Use: "sig"},
	}, nil
}

// Reload reads the keys from the store and swaps them in.
func (m *KeyManager) Reload(ctx context.Context) error {
	now := m.now()
	stored, err := m.store.SigningKeys(ctx, now)
	if err != nil {
		return fmt.Errorf("exchange: load signing keys: %w", err)
	}
	var keys []*signingKey
	pub := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	for _, sk := range stored {
		der, err := m.privateKey(sk)
		if err != nil {
			return err
		}
		k, err := loadKey(sk, der)
		if err != nil {
			return err
		}
		keys = append(keys, k)
		pub.Keys = append(pub.Keys, k.public)
	}
	if pickSigner(keys, m.algorithm, now) == nil {
		return errors.New("exchange: no active signing key for " + m.algorithm)
	}
	jwks, err := json.Marshal(pub)
	if err != nil {
		return fmt.Errorf("exchange: encode JWKS: %w", err)
	}
	m.mu.Lock()
	m.keys, m.jwks = keys, jwks
	m.mu.Unlock()
	return nil
}

// pickSigner chooses the key that signs at now among keys: the newest key of
// algorithm that is active (ActiveAt not after now) and not retired (now
// before RetiredAt, or no RetiredAt). A rotation retires a key exactly when
// its successor becomes active, so one always qualifies; should none (a
// store edited by hand, a successor of another algorithm), the newest active
// key of algorithm, retired or not, signs rather than the broker failing:
// its tokens still verify, as a retired key stays published until RemoveAt.
// A key at or past its RemoveAt never signs: verifiers no longer know it.
func pickSigner(keys []*signingKey, algorithm string, now time.Time) *signingKey {
	var best, fallback *signingKey
	for _, k := range keys {
		sk := &k.stored
		if sk.Algorithm != algorithm || sk.ActiveAt.After(now) || (!sk.RemoveAt.IsZero() && !now.Before(sk.RemoveAt)) {
			continue
		}
		if newerKey(k, fallback) {
			fallback = k
		}
		if (sk.RetiredAt.IsZero() || now.Before(sk.RetiredAt)) && newerKey(k, best) {
			best = k
		}
	}
	if best != nil {
		return best
	}
	return fallback
}

// newerKey reports whether a became active after b (a nil b is older than
// anything); ties go by creation time, then id, so every replica agrees.
func newerKey(a, b *signingKey) bool {
	if b == nil {
		return true
	}
	x, y := &a.stored, &b.stored
	switch {
	case !x.ActiveAt.Equal(y.ActiveAt):
		return x.ActiveAt.After(y.ActiveAt)
	case !x.CreatedAt.Equal(y.CreatedAt):
		return x.CreatedAt.After(y.CreatedAt)
	}
	return x.ID > y.ID
}

// Run reloads the keys every interval until ctx is done. Errors are
// reported to onErr (if not nil) and the previous keys stay in use.
func (m *KeyManager) Run(ctx context.Context, interval time.Duration, onErr func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := m.Reload(ctx); err != nil && onErr != nil {
				onErr(err)
			}
		}
	}
}

// JWKS returns the public key set as JSON (RFC 7517).
func (m *KeyManager) JWKS() []byte {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.jwks
}

// Algorithms returns the algorithms of the published keys.
func (m *KeyManager) Algorithms() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var algs []string
	for _, k := range m.keys {
		algs = appendUnique(algs, k.stored.Algorithm)
	}
	return algs
}

// Sign signs payload (a JSON claims set) with the key active now (the
// newest active, unretired key of the configured algorithm; see pickSigner)
// and returns the compact JWS and the kid used. A pending key, published
// ahead of its ActiveAt, is never used before then.
func (m *KeyManager) Sign(payload []byte) (string, string, error) {
	now := m.now()
	m.mu.RLock()
	k := pickSigner(m.keys, m.algorithm, now)
	m.mu.RUnlock()
	if k == nil {
		return "", "", fmt.Errorf("exchange: sign: no %s key active at %s", m.algorithm, now.UTC().Format(time.RFC3339))
	}
	jws, err := k.signer.Sign(payload)
	if err != nil {
		return "", "", fmt.Errorf("exchange: sign: %w", err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		return "", "", fmt.Errorf("exchange: serialize: %w", err)
	}
	return s, k.stored.ID, nil
}
