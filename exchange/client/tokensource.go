package client

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// TokenSource returns an oauth2.TokenSource that exchanges on first use,
// returns the cached credential while it is fresh, and exchanges again
// ExpiryDelta before it expires (half its lifetime before, for short-lived
// credentials). Concurrent callers share one exchange. ctx bounds every
// exchange the source makes, as with oauth2.Config.TokenSource.
func (c *Client) TokenSource(ctx context.Context) oauth2.TokenSource {
	return &cachingSource{ctx: ctx, c: c}
}

// HTTPClient returns an *http.Client that sends the credential as
// "Authorization: Bearer ..." on every request, exchanging as needed (when
// TokenSource says so: ExpiryDelta before expiry, by Config.Now). It uses
// Config.HTTPClient's transport and timeout (default 30s), and follows a
// redirect only to the same scheme and host: the bearer credential is
// attached to every request the client sends, redirected ones included.
//
// oauth2.NewClient is not used: it wraps the source in an
// oauth2.ReuseTokenSource, which keeps a credential until 10s before expiry
// by the wall clock and so overrides ExpiryDelta.
func (c *Client) HTTPClient(ctx context.Context) *http.Client {
	return &http.Client{
		Transport:     &oauth2.Transport{Source: c.TokenSource(ctx), Base: c.http.Transport},
		Timeout:       c.http.Timeout,
		CheckRedirect: sameOrigin,
	}
}

// sameOrigin refuses (returns the redirect response itself) a redirect to
// another scheme or host, and stops after 10 redirects like net/http.
func sameOrigin(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("client: stopped after 10 redirects")
	}
	if first := via[0].URL; req.URL.Scheme != first.Scheme || req.URL.Host != first.Host {
		return http.ErrUseLastResponse
	}
	return nil
}

// cachingSource is the TokenSource of Client. oauth2.ReuseTokenSource is not
// used because it reads the wall clock and applies its fixed 10s early
// expiry to credentials that may live only seconds.
type cachingSource struct {
	ctx context.Context
	c   *Client

	mu      sync.Mutex
	tok     *oauth2.Token
	refresh time.Time // when to exchange again
}

// Token implements oauth2.TokenSource.
func (s *cachingSource) Token() (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.c.cfg.Now()
	if s.tok != nil && now.Before(s.refresh) {
		return s.tok, nil
	}
	tok, err := s.c.Exchange(s.ctx)
	if err != nil {
		return nil, err
	}
	s.tok, s.refresh = tok, refreshAt(tok, now, s.c.cfg.ExpiryDelta)
	return tok, nil
}

// refreshAt is when a token obtained at now must be replaced. A token
// without expiry is not cached: the broker always says when its
// credentials expire, so one that doesn't is not to be trusted to last.
func refreshAt(tok *oauth2.Token, now time.Time, delta time.Duration) time.Time {
	if tok.Expiry.IsZero() {
		return now
	}
	life := tok.Expiry.Sub(now)
	if life < 2*delta {
		delta = life / 2
	}
	return tok.Expiry.Add(-delta)
}
