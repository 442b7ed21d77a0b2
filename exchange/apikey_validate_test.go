package exchange_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tokenbroker/tokenbroker/exchange"
	"github.com/tokenbroker/tokenbroker/exchange/store/sqlite"
)

// strictKeyStore fails a whole batch holding text PostgreSQL refuses (NUL,
// invalid UTF-8), as a real transaction does, and reports such a key.
type strictKeyStore struct {
	exchange.Store
	t testing.TB
}

var errBadText = errors.New("invalid byte sequence for encoding UTF8")

func (s strictKeyStore) InsertAPIKeys(ctx context.Context, keys []exchange.APIKey) error {
	for _, k := range keys {
		texts := append([]string{k.Subject, k.Issuer, k.Policy}, append(k.Audience, k.Scopes...)...)
		for n, v := range k.Metadata {
			texts = append(texts, n, v)
		}
		for _, v := range texts {
			if strings.IndexByte(v, 0) >= 0 || !utf8.ValidString(v) || len(v) > 4096 {
				s.t.Errorf("a key with unstorable text reached the store: %q", k.Subject)
				return errBadText
			}
		}
	}
	return s.Store.InsertAPIKeys(ctx, keys)
}

// TestIssueRefusesUnstorableText issues hostile keys next to good ones in
// the same group commit: the hostile ones are refused before the commit,
// the good ones are stored.
func TestIssueRefusesUnstorableText(t *testing.T) {
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "tb.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	keys, err := exchange.NewAPIKeys(exchange.APIKeysConfig{Store: strictKeyStore{Store: db, t: t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = keys.Close() })
	now := time.Now().Truncate(time.Second)
	good := func(mod func(*exchange.APIKey)) exchange.APIKey {
		k := exchange.APIKey{
			Subject: "repo:octo-org/app:environment:prod", Issuer: "https://ci.test", Policy: "deploy",
			Audience: []string{"deploy-api"}, Scopes: []string{"deploy:prod"},
			Metadata:  map[string]string{"repository": "octo-org/app"},
			CreatedAt: now, ExpiresAt: now.Add(10 * time.Minute),
		}
		if mod != nil {
			mod(&k)
		}
		return k
	}
	tests := []struct {
		name    string
		key     exchange.APIKey
		wantErr bool
	}{
		{"plain", good(nil), false},
		{"non-ASCII text", good(func(k *exchange.APIKey) { k.Metadata["ref"] = "refs/heads/café-ü" }), false},
		{"NUL in subject", good(func(k *exchange.APIKey) { k.Subject = "repo:a\x00b" }), true},
		{"invalid UTF-8 in metadata value", good(func(k *exchange.APIKey) { k.Metadata["ref"] = "refs/\xff" }), true},
		{"NUL in metadata name", good(func(k *exchange.APIKey) { k.Metadata["a\x00"] = "x" }), true},
		{"invalid UTF-8 in issuer", good(func(k *exchange.APIKey) { k.Issuer = "https://\xc3" }), true},
		{"NUL in policy", good(func(k *exchange.APIKey) { k.Policy = "deploy\x00" }), true},
		{"over-long scope", good(func(k *exchange.APIKey) { k.Scopes = []string{strings.Repeat("s", 4097)} }), true},
		{"NUL in audience", good(func(k *exchange.APIKey) { k.Audience = []string{"api\x00"} }), true},
		{"too many metadata entries", good(func(k *exchange.APIKey) {
			for i := range 300 {
				k.Metadata[strings.Repeat("m", i+1)] = "v"
			}
		}), true},
	}
	// All at once, so that hostile and good keys share commit groups.
	errs := make([]error, len(tests))
	var wg sync.WaitGroup
	for i, tc := range tests {
		wg.Go(func() { _, _, errs[i] = keys.Issue(t.Context(), tc.key) })
	}
	wg.Wait()
	for i, tc := range tests {
		if got := errs[i] != nil; got != tc.wantErr {
			t.Errorf("%s: Issue error = %v, want error: %v", tc.name, errs[i], tc.wantErr)
		}
		if errors.Is(errs[i], errBadText) {
			t.Errorf("%s: failed in the store's commit: %v", tc.name, errs[i])
		}
	}
}

// TestExchangeRefusesUnstorableClaim: a CI token whose claim, rendered into
// the key's metadata, holds a NUL is refused as invalid_request (the caller's
// fault), not answered 503 as a store failure would be.
func TestExchangeRefusesUnstorableClaim(t *testing.T) {
	b := newKeyBroker(t, "0")
	ci, err := b.issuer.Mint(map[string]any{"aud": "https://broker.test", "environment": "prod", "repository": "octo-org/app\x00"})
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{
		"grant_type":           {exchange.GrantTypeTokenExchange},
		"subject_token":        {ci},
		"subject_token_type":   {exchange.TokenTypeIDToken},
		"requested_token_type": {exchange.TokenTypeAPIKey},
	}
	st, res := b.post(t, "/token", "application/x-www-form-urlencoded", form.Encode())
	if st != http.StatusBadRequest || res["error"] != exchange.CodeInvalidRequest {
		t.Errorf("exchange with a NUL in a rendered claim = %d %v, want 400 invalid_request", st, res)
	}
	// The broker still issues keys for well-formed tokens.
	if st, res := b.token(t, exchange.TokenTypeAPIKey); st != http.StatusOK {
		t.Errorf("a good exchange after it = %d %v", st, res)
	}
}
