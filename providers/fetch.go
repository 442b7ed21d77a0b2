package providers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// errBodyTooLarge is returned while reading a response larger than
// Options.MaxResponseBytes.
var errBodyTooLarge = errors.New("providers: response body too large")

// boundedClient returns a copy of base (or a default client) for one origin:
// every request has FetchTimeout, every body is capped at maxBytes (go-oidc
// reads discovery documents with io.ReadAll, so the cap lives in the
// transport), and redirects must stay on origin (the issuer's or the
// jwks_uri's scheme and host).
func boundedClient(base *http.Client, origin *url.URL, opts Options) *http.Client {
	c := &http.Client{}
	if base != nil {
		*c = *base
	}
	rt := c.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	c.Transport = &cappedTransport{base: rt, max: opts.MaxResponseBytes}
	c.Timeout = opts.FetchTimeout
	c.Jar = nil
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) > maxRedirects {
			return fmt.Errorf("providers: more than %d redirects", maxRedirects)
		}
		if req.URL.Scheme != origin.Scheme || req.URL.Host != origin.Host {
			return fmt.Errorf("providers: redirect to %s://%s leaves %s", req.URL.Scheme, req.URL.Host, origin)
		}
		return nil
	}
	return c
}

// cappedTransport wraps response bodies in a cappedBody.
type cappedTransport struct {
	base http.RoundTripper
	max  int64
}

// RoundTrip implements http.RoundTripper.
func (t *cappedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > t.max {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: %d bytes announced, limit %d", errBodyTooLarge, resp.ContentLength, t.max)
	}
	resp.Body = &cappedBody{r: io.LimitReader(resp.Body, t.max+1), c: resp.Body, left: t.max}
	return resp, nil
}

// cappedBody reads at most left bytes and fails, rather than truncating,
// when the body holds more.
type cappedBody struct {
	r    io.Reader
	c    io.Closer
	left int64
}

// Read implements io.Reader.
func (b *cappedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return 0, errBodyTooLarge
	}
	return n, err
}

// Close implements io.Closer.
func (b *cappedBody) Close() error { return b.c.Close() }

// fetch GETs url with the client and returns the body of a 200 response.
func fetch(ctx context.Context, client *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return body, nil
}
