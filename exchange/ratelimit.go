package exchange

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"

	"github.com/tokenbroker/tokenbroker/providers"
)

// Defaults of the broker's flood limits. A CI matrix build starts many jobs
// at once under one subject (GitHub allows 256 jobs per matrix), and a
// self-hosted fleet often sits behind one NAT address, so the bursts are
// generous while the sustained rates stop a single source from saturating
// the broker's two expensive steps: signature verification and signing.
const (
	// DefaultClientRate is the sustained POST /token rate per client IP (per second).
	DefaultClientRate = 50
	// DefaultClientBurst is the burst allowed per client IP.
	DefaultClientBurst = 100
	// DefaultSubjectRate is the sustained exchange rate per verified subject
	// (iss + sub), per second.
	DefaultSubjectRate = 10
	// DefaultSubjectBurst is the burst allowed per verified subject.
	DefaultSubjectBurst = 60
	// DefaultMaxInFlight caps the exchanges running at once.
	DefaultMaxInFlight = 256
	// DefaultInFlightWait is how long a request waits for a free slot before
	// it is answered 503.
	DefaultInFlightWait = time.Second
	// DefaultTrackedKeys bounds the number of limiters (client IPs or
	// subjects) kept in memory; the least recently used are forgotten.
	DefaultTrackedKeys = 10000
)

// RateLimit configures a RateLimiter. Zero values take the defaults given
// to NewRateLimiter's caller (see NewClientLimiter, NewSubjectLimiter).
type RateLimit struct {
	// Rate is the sustained number of requests per second per key.
	Rate float64
	// Burst is the number of requests a key may make at once.
	Burst int
	// TrackedKeys bounds the keys remembered (least recently used evicted).
	// An evicted key starts again with a full burst: the bound trades
	// exactness under a many-source flood for bounded memory.
	TrackedKeys int
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// RateLimiter is a token-bucket rate limit per key (a client IP, a subject),
// with a bounded number of keys. It is safe for concurrent use.
type RateLimiter struct {
	limit rate.Limit
	burst int
	now   func() time.Time
	keys  *lru.Cache[string, *rate.Limiter]
}

// NewRateLimiter returns a limiter for cfg. Rate and Burst must be positive.
func NewRateLimiter(cfg RateLimit) (*RateLimiter, error) {
	if cfg.Rate <= 0 || math.IsInf(cfg.Rate, 0) || math.IsNaN(cfg.Rate) || cfg.Burst <= 0 {
		return nil, fmt.Errorf("exchange: rate limit needs a positive rate and burst, got %v/s burst %d", cfg.Rate, cfg.Burst)
	}
	if cfg.TrackedKeys <= 0 {
		cfg.TrackedKeys = DefaultTrackedKeys
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	keys, err := lru.New[string, *rate.Limiter](cfg.TrackedKeys)
	if err != nil {
		return nil, fmt.Errorf("exchange: rate limiter: %w", err)
	}
	return &RateLimiter{limit: rate.Limit(cfg.Rate), burst: cfg.Burst, now: cfg.Now, keys: keys}, nil
}

// Allow takes one request for key. When the key is over its limit it
// returns false and how long until a request would be allowed.
func (l *RateLimiter) Allow(key string) (bool, time.Duration) {
	lim, ok := l.keys.Get(key)
	if !ok {
		fresh := rate.NewLimiter(l.limit, l.burst)
		if prev, found, _ := l.keys.PeekOrAdd(key, fresh); found {
			lim = prev
		} else {
			lim = fresh
		}
	}
	now := l.now()
	r := lim.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// errInFlight is the internal reason of a 503 for a full in-flight cap.
var errInFlight = errors.New("exchange: too many exchanges in flight")

// inFlight caps concurrent exchanges with a counting semaphore.
type inFlight struct {
	slots chan struct{}
	wait  time.Duration
}

func newInFlight(max int, wait time.Duration) *inFlight {
	if max <= 0 {
		return nil
	}
	if wait <= 0 {
		wait = DefaultInFlightWait
	}
	return &inFlight{slots: make(chan struct{}, max), wait: wait}
}

// acquire takes a slot, waiting at most f.wait, and returns its release.
func (f *inFlight) acquire(ctx context.Context) (func(), bool) {
	if f == nil {
		return func() {}, true
	}
	select {
	case f.slots <- struct{}{}:
		return f.release, true
	default:
	}
	t := time.NewTimer(f.wait)
	defer t.Stop()
	select {
	case f.slots <- struct{}{}:
		return f.release, true
	case <-t.C:
		return nil, false
	case <-ctx.Done():
		return nil, false
	}
}

func (f *inFlight) release() { <-f.slots }

// Buckets of the per-client-IP limit: each client has one for POST /token
// and one, at the same rate, shared by the credential endpoints (/revoke,
// /introspect, /v1/keys/verify), so a downstream API verifying keys from
// behind the same address as CI runners does not spend their exchanges.
const (
	bucketToken       = "token "
	bucketCredentials = "credentials "
)

// admit applies the per-client-IP rate limit (in bucket) and the in-flight
// cap to a request, before its body is read. The caller must call the
// returned release when the request is done.
func (s *Server) admit(c echo.Context, bucket string) (func(), *Error) {
	if l := s.cfg.ClientLimiter; l != nil {
		if ok, wait := l.Allow(bucket + clientKey(c.RealIP())); !ok {
			e := newError(CodeRateLimited, "too many requests from this client; retry later", fmt.Errorf("exchange: client %s over its rate limit", c.RealIP()))
			e.RetryAfter = wait
			return nil, e
		}
	}
	release, ok := s.inFlight.acquire(c.Request().Context())
	if !ok {
		e := newError(CodeTemporarilyUnavailable, "the broker is overloaded; retry later", errInFlight)
		e.RetryAfter = time.Second
		return nil, e
	}
	return release, nil
}

// clientKey is the rate-limit key of a client address: an IPv4 address as
// is, an IPv6 address by its /64. One host (or one customer) is routinely
// given a whole /64 (RFC 6177), so keying on the full address would give it
// 2^64 fresh buckets and let it flush the LRU of tracked keys.
func clientKey(addr string) string {
	ip := net.ParseIP(addr)
	if ip == nil {
		return addr
	}
	if v4 := ip.To4(); v4 != nil {
		return v4.String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// limitSubject applies the per-subject rate limit. It runs after the
// token's signature is verified, so that the key (iss + sub) is one the
// issuer vouched for and an attacker cannot exhaust another subject's budget
// with forged tokens.
func (x *Exchanger) limitSubject(tok *providers.Token) error {
	l := x.cfg.SubjectLimiter
	if l == nil {
		return nil
	}
	if ok, wait := l.Allow(tok.Issuer + "\x00" + tok.Subject); !ok {
		e := newError(CodeRateLimited, "too many exchanges for this subject; retry later", fmt.Errorf("exchange: subject %q of %s over its rate limit", tok.Subject, tok.Issuer))
		e.RetryAfter = wait
		return e
	}
	return nil
}
