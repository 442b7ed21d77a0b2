package exchange

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"hash/crc32"
	"math/big"
	"strings"
)

// API key format (DESIGN.md "Minted credentials"):
//
//	tbk_ <43 base62: 256 random bits> <6 base62: CRC-32 (IEEE) of the first 47 characters>
//
// 53 characters in all, alphabet 0-9a-zA-Z, each part a big-endian number
// zero-padded to its fixed width. The prefix lets a secret scanner find keys
// (regular expression APIKeyPattern); the checksum lets it, and the broker,
// tell a key from a random string or a mistyped key without a lookup. The
// checksum is no defence against forgery: it is public, and only the 256
// random bits make a key unguessable.
const (
	// APIKeyPrefix starts every API key.
	APIKeyPrefix = "tbk_"
	// APIKeyLen is the length of every API key.
	APIKeyLen = len(APIKeyPrefix) + apiKeyRandomLen + apiKeyChecksumLen
	// APIKeyPattern is a regular expression that matches an API key in
	// text, for secret scanners.
	APIKeyPattern = `\btbk_[0-9A-Za-z]{49}\b`
	// APIKeyIDPrefix starts every key id.
	APIKeyIDPrefix = "kid_"

	apiKeyRandomBytes = 32
	apiKeyRandomLen   = 43 // 62^43 > 2^256
	apiKeyChecksumLen = 6  // 62^6 > 2^32
	apiKeyIDLen       = 12 // about 71 bits: ids collide only past ~10^10 keys
	base62Digits      = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)

// errMalformedKey is returned by ParseAPIKey for anything but a well-formed
// key with a correct checksum.
var errMalformedKey = errors.New("exchange: malformed API key")

// maxRandom is 2^256: the random part of a key is below it.
var maxRandom = new(big.Int).Lsh(big.NewInt(1), 8*apiKeyRandomBytes)

// NewAPIKey returns a fresh API key and its SHA-256 hash.
func NewAPIKey() (key string, hash []byte) {
	var b [apiKeyRandomBytes]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	body := APIKeyPrefix + base62(new(big.Int).SetBytes(b[:]), apiKeyRandomLen)
	key = body + base62(big.NewInt(int64(crc32.ChecksumIEEE([]byte(body)))), apiKeyChecksumLen)
	return key, HashAPIKey(key)
}

// HashAPIKey returns the SHA-256 of key, the only form in which the store
// keeps it. A fast hash is enough, and no slow KDF (bcrypt, Argon2) is
// needed: a key holds 256 random bits, so inverting or brute-forcing its
// hash is infeasible for whoever steals the database, and verification stays
// a single O(1) lookup by hash.
func HashAPIKey(key string) []byte {
	sum := sha256.Sum256([]byte(key))
	return sum[:]
}

// APIKeyID returns the non-secret id of the key whose hash is given:
// "kid_" and 12 base62 characters of the SHA-256 of the hash. Anyone holding
// the key can derive it; nobody can get back from it to the key or its hash.
func APIKeyID(hash []byte) string {
	sum := sha256.Sum256(hash)
	return APIKeyIDPrefix + base62(new(big.Int).SetBytes(sum[:]), apiKeyRandomLen)[:apiKeyIDLen]
}

// ParseAPIKey checks that s is a well-formed API key with a correct
// checksum, without any lookup, and returns its hash.
func ParseAPIKey(s string) ([]byte, error) {
	if len(s) != APIKeyLen || !strings.HasPrefix(s, APIKeyPrefix) {
		return nil, errMalformedKey
	}
	body, sum := s[:APIKeyLen-apiKeyChecksumLen], s[APIKeyLen-apiKeyChecksumLen:]
	random, ok := parseBase62(body[len(APIKeyPrefix):])
	if !ok || random.Cmp(maxRandom) >= 0 {
		return nil, errMalformedKey
	}
	crc, ok := parseBase62(sum)
	if !ok || !crc.IsUint64() || crc.Uint64() != uint64(crc32.ChecksumIEEE([]byte(body))) {
		return nil, errMalformedKey
	}
	return HashAPIKey(s), nil
}

// LooksLikeAPIKey reports whether s has the shape of an API key (prefix and
// length), whatever its checksum.
func LooksLikeAPIKey(s string) bool {
	return len(s) == APIKeyLen && strings.HasPrefix(s, APIKeyPrefix)
}

// base62 encodes n in exactly width digits, zero-padded; n must fit.
func base62(n *big.Int, width int) string {
	s := n.Text(62)
	if len(s) > width {
		panic("exchange: base62 value too wide")
	}
	return strings.Repeat("0", width-len(s)) + s
}

// parseBase62 decodes digits of base62Digits only (big.Int.SetString would
// also take signs and underscores).
func parseBase62(s string) (*big.Int, bool) {
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(base62Digits, s[i]) < 0 {
			return nil, false
		}
	}
	return new(big.Int).SetString(s, 62)
}
