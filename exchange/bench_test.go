package exchange_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/exchange"
	"github.com/tokenbroker/tokenbroker/exchange/store/sqlite"
	"github.com/tokenbroker/tokenbroker/policy"
	"github.com/tokenbroker/tokenbroker/providers"
	"github.com/tokenbroker/tokenbroker/providers/devissuer"
)

const benchPolicy = `
policies:
  - name: deploy
    provider: github
    audience: https://broker.test
    subject: repo:octo-org/app:environment:prod
    single_use: %SINGLE%
    claims:
      repository_owner_id: "1234567"
    grant:
      audience: [deploy-api]
      scopes: [deploy:prod]
      ttl: 10m
`

// newTestExchanger builds an in-process Exchanger with real parts: a
// GitHub-shaped issuer over HTTP, the providers registry, a policy file and
// a SQLite store.
func newTestExchanger(tb testing.TB, singleUse string) (*exchange.Exchanger, *devissuer.Issuer, *exchange.KeyManager) {
	tb.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(tb.TempDir(), "tb.db"))
	if err != nil {
		tb.Fatal(err)
	}
	return newTestExchangerOn(tb, singleUse, st)
}

// newTestExchangerOn is newTestExchanger on st, which it closes when the
// test ends.
func newTestExchangerOn(tb testing.TB, singleUse string, st exchange.Store) (*exchange.Exchanger, *devissuer.Issuer, *exchange.KeyManager) {
	tb.Helper()
	tb.Cleanup(func() { _ = st.Close() })
	iss, reg, set := newTestIssuer(tb, strings.ReplaceAll(benchPolicy, "%SINGLE%", singleUse))
	ctx := context.Background()
	keys, err := exchange.NewKeyManager(ctx, st, "ES256", nil)
	if err != nil {
		tb.Fatal(err)
	}
	x, err := exchange.NewExchanger(exchange.Config{Issuer: "https://broker.test", Verifier: reg, Policies: set, Replay: st, Signer: keys})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = x.Close() })
	return x, iss, keys
}

// newTestIssuer starts a GitHub-shaped issuer over HTTP and returns it with
// a providers registry trusting it and the policy set loaded from
// policyYAML (written to a file, as serve loads it).
func newTestIssuer(tb testing.TB, policyYAML string) (*devissuer.Issuer, *providers.Registry, *policy.Set) {
	tb.Helper()
	srv := httptest.NewUnstartedServer(nil)
	srv.Start()
	tb.Cleanup(srv.Close)
	iss, err := devissuer.New(devissuer.Options{URL: srv.URL, ProductionLike: true})
	if err != nil {
		tb.Fatal(err)
	}
	srv.Config.Handler = iss.Handler()
	reg, err := providers.New([]providers.Config{{Name: "github", Preset: providers.PresetGitHubActions, Issuer: srv.URL}}, providers.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	polFile := filepath.Join(tb.TempDir(), "p.yaml")
	if err := os.WriteFile(polFile, []byte(policyYAML), 0o600); err != nil {
		tb.Fatal(err)
	}
	set, err := policy.LoadPath(polFile, policy.LoadOptions{Issuers: []policy.Issuer{{Name: "github", URL: srv.URL, TenantClaims: []string{"repository_owner_id"}}}})
	if err != nil {
		tb.Fatal(err)
	}
	return iss, reg, set
}

func benchRequest(tb testing.TB, iss *devissuer.Issuer) *exchange.Request {
	tok, err := iss.Mint(map[string]any{"aud": "https://broker.test", "environment": "prod"})
	if err != nil {
		tb.Fatal(err)
	}
	return &exchange.Request{
		GrantType:        exchange.GrantTypeTokenExchange,
		SubjectToken:     tok,
		SubjectTokenType: exchange.TokenTypeIDToken,
		Audiences:        []string{"deploy-api"},
	}
}

// BenchmarkExchange measures the whole in-process exchange: verify (RS256,
// cached JWKS) + policy + mint (ES256). The single-use variant adds the
// replay-cache insert into SQLite (tokens are minted outside the timer).
func BenchmarkExchange(b *testing.B) {
	b.Run("verify+policy+sign", func(b *testing.B) {
		x, iss, _ := newTestExchanger(b, "false")
		req := benchRequest(b, iss)
		ctx := context.Background()
		if _, _, err := x.Exchange(ctx, req); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, _, err := x.Exchange(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("single-use/sqlite", func(b *testing.B) {
		x, iss, _ := newTestExchanger(b, "true")
		reqs := make([]*exchange.Request, b.N)
		for i := range reqs {
			reqs[i] = benchRequest(b, iss)
		}
		ctx := context.Background()
		b.ReportAllocs()
		b.ResetTimer()
		for _, req := range reqs {
			if _, _, err := x.Exchange(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkCryptoCeiling is the raw cost of the exchange's cryptography:
// one RS256 verify (the CI token) plus one ES256 sign (the minted JWT).
func BenchmarkCryptoCeiling(b *testing.B) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("payload"))
	sig, err := rsa.SignPKCS1v15(rand.Reader, rk, crypto.SHA256, digest[:])
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := rsa.VerifyPKCS1v15(&rk.PublicKey, crypto.SHA256, digest[:], sig); err != nil {
				b.Fatal(err)
			}
			if _, err := ecdsa.SignASN1(rand.Reader, ek, digest[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
