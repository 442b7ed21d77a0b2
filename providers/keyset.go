package providers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"
)

// errCooldown means a fetch was skipped because the previous one for the same
// issuer started less than Options.RefreshCooldown ago.
var errCooldown = errors.New("providers: refetch is in its cooldown")

// verifyResult carries what keySet.VerifySignature found back to
// Registry.Verify: go-oidc flattens the KeySet's error with %v, which would
// lose our sentinel errors, and does not report which key verified.
type verifyResult struct {
	called bool
	err    error
	kid    string
}

// resultKey is the context key of the *verifyResult slot for one Verify call.
type resultKey struct{}

// keySet is one issuer's JWKS, implementing go-oidc's oidc.KeySet. It caches
// the keys, refetches them lazily after KeySetTTL or when a token names an
// unknown kid, starts at most one fetch per RefreshCooldown (concurrent
// callers share it through singleflight), and keeps verifying with cached
// keys up to MaxStaleness old while the issuer is unreachable.
type keySet struct {
	url     string
	algs    []jose.SignatureAlgorithm
	client  *http.Client
	opts    Options
	fetches *atomic.Int64
	flight  singleflight.Group

	mu          sync.Mutex
	keys        []jose.JSONWebKey
	fetchedAt   time.Time // when keys were last fetched successfully
	lastAttempt time.Time // when the last fetch started
	lastErr     error     // how the last fetch ended
	failSince   time.Time // when fetches started failing; zero after a success
}

// newKeySet returns an empty key set for the JWKS at url.
func newKeySet(url string, algs []string, client *http.Client, opts Options, fetches *atomic.Int64) *keySet {
	ks := &keySet{url: url, client: client, opts: opts, fetches: fetches}
	for _, a := range algs {
		ks.algs = append(ks.algs, jose.SignatureAlgorithm(a))
	}
	return ks
}

// VerifySignature implements oidc.KeySet: it verifies the compact JWS with a
// key of the set and returns its payload.
func (k *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	payload, kid, err := k.verify(ctx, jwt)
	if res, ok := ctx.Value(resultKey{}).(*verifyResult); ok {
		res.called, res.err, res.kid = true, err, kid
	}
	return payload, err
}

// verify does the work of VerifySignature and also returns the kid of the
// key that verified.
func (k *keySet) verify(ctx context.Context, jwt string) ([]byte, string, error) {
	jws, err := jose.ParseSignedCompact(jwt, k.algs)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if len(jws.Signatures) != 1 {
		return nil, "", fmt.Errorf("%w: want exactly one signature", ErrMalformed)
	}
	h := jws.Signatures[0].Header
	keys, err := k.current(ctx)
	if err != nil {
		return nil, "", err
	}
	cands := candidates(keys, h.KeyID, h.Algorithm)
	if len(cands) == 0 {
		// A kid we do not know may be a rotation: refetch, at most once per
		// cooldown, whatever the number of such tokens.
		if err := k.fetch(ctx); err != nil {
			return nil, "", fmt.Errorf("%w: kid %q: %w", ErrUnknownKey, h.KeyID, err)
		}
		k.mu.Lock()
		cands = candidates(k.keys, h.KeyID, h.Algorithm)
		k.mu.Unlock()
		if len(cands) == 0 {
			return nil, "", fmt.Errorf("%w: kid %q is not in the issuer's key set", ErrUnknownKey, h.KeyID)
		}
	}
	for _, key := range cands {
		if payload, err := jws.Verify(&key); err == nil {
			return payload, key.KeyID, nil
		}
	}
	return nil, "", fmt.Errorf("%w: no key of kid %q verifies it", ErrSignature, h.KeyID)
}

// candidates returns the signing keys that may have signed a token with kid
// and alg. An empty kid matches every key.
func candidates(keys []jose.JSONWebKey, kid, alg string) []jose.JSONWebKey {
	var out []jose.JSONWebKey
	for _, key := range keys {
		if (kid == "" || key.KeyID == kid) && (key.Algorithm == "" || key.Algorithm == alg) {
			out = append(out, key)
		}
	}
	return out
}

// current returns the cached keys, fetching them first when there are none
// or they are older than KeySetTTL. When that fetch fails, keys up to
// MaxStaleness old are still served.
func (k *keySet) current(ctx context.Context) ([]jose.JSONWebKey, error) {
	now := k.opts.Now()
	k.mu.Lock()
	keys, fetchedAt := k.keys, k.fetchedAt
	k.mu.Unlock()
	if keys != nil && now.Sub(fetchedAt) < k.opts.KeySetTTL {
		return keys, nil
	}
	err := k.fetch(ctx)
	k.mu.Lock()
	keys, fetchedAt = k.keys, k.fetchedAt
	k.mu.Unlock()
	switch {
	case keys == nil:
		return nil, fmt.Errorf("%w: key set %s: %w", ErrUnavailable, k.url, err)
	case now.Sub(fetchedAt) > k.opts.MaxStaleness:
		return nil, fmt.Errorf("%w: key set %s is %s old: %w", ErrUnavailable, k.url, now.Sub(fetchedAt).Round(time.Second), err)
	}
	return keys, nil
}

// fetch refreshes the keys unless a fetch started within the cooldown, in
// which case it returns errCooldown (joined with that fetch's error, if any).
// Concurrent callers share one fetch. The fetch is detached from the
// caller's cancellation, since other callers wait on it, and bounded by
// FetchTimeout instead.
func (k *keySet) fetch(ctx context.Context) error {
	_, err, _ := k.flight.Do("jwks", func() (any, error) {
		now := k.opts.Now()
		k.mu.Lock()
		if !k.lastAttempt.IsZero() && now.Sub(k.lastAttempt) < k.opts.RefreshCooldown {
			last := k.lastErr
			k.mu.Unlock()
			if last != nil {
				return nil, fmt.Errorf("%w (last fetch: %w)", errCooldown, last)
			}
			return nil, errCooldown
		}
		k.lastAttempt = now
		k.mu.Unlock()

		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), k.opts.FetchTimeout)
		defer cancel()
		keys, err := k.download(fctx)
		k.mu.Lock()
		defer k.mu.Unlock()
		k.lastErr = err
		switch {
		case err == nil:
			k.keys, k.fetchedAt, k.failSince = keys, now, time.Time{}
		case k.failSince.IsZero():
			k.failSince = now
		}
		return nil, err
	})
	return err
}

// failingFor returns how long the key set's fetches have been failing at
// now; zero when the last fetch succeeded or none was made.
func (k *keySet) failingFor(now time.Time) time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.failSince.IsZero() {
		return 0
	}
	return now.Sub(k.failSince)
}

// download fetches and parses the JWKS. Keys of a type go-jose does not
// know, private or symmetric keys, and keys not meant for signatures are
// skipped (RFC 7517 §5: ignore what is not understood); a set with no usable
// key is an error.
func (k *keySet) download(ctx context.Context) ([]jose.JSONWebKey, error) {
	k.fetches.Add(1)
	body, err := fetch(ctx, k.client, k.url)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("key set %s: %w", k.url, err)
	}
	var keys []jose.JSONWebKey
	for _, raw := range doc.Keys {
		var key jose.JSONWebKey
		if err := key.UnmarshalJSON(raw); err != nil {
			continue
		}
		if !key.Valid() || !key.IsPublic() || (key.Use != "" && key.Use != "sig") {
			continue
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("key set %s holds no usable signing key", k.url)
	}
	return keys, nil
}
