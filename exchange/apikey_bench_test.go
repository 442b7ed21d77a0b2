package exchange_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/exchange"
	"github.com/tokenbroker/tokenbroker/exchange/store/postgres"
	"github.com/tokenbroker/tokenbroker/exchange/store/sqlite"
	"github.com/tokenbroker/tokenbroker/exchange/store/storetest"
)

// benchStores are the stores the API key benchmarks run on; PostgreSQL only
// when TOKENBROKER_TEST_POSTGRES is set.
var benchStores = []struct {
	name string
	open func(b *testing.B) exchange.Store
}{
	{"sqlite", func(b *testing.B) exchange.Store {
		s, err := sqlite.Open(context.Background(), b.TempDir()+"/tb.db")
		if err != nil {
			b.Fatal(err)
		}
		return s
	}},
	{"postgres", func(b *testing.B) exchange.Store {
		s, err := postgres.Open(context.Background(), storetest.PostgresDSN(b))
		if err != nil {
			b.Fatal(err)
		}
		return s
	}},
}

// BenchmarkAPIKeyExchange measures whole in-process API key exchanges
// (verify + policy + durable group-committed insert) at concurrency 1 and
// 32, with the JWT exchange beside them. Report ops/s = 1e9 / ns/op.
func BenchmarkAPIKeyExchange(b *testing.B) {
	for _, conc := range []int{1, 32} {
		b.Run(fmt.Sprintf("jwt/c%d", conc), func(b *testing.B) {
			x, iss, _ := newTestExchanger(b, "false")
			runExchanges(b, x, benchRequest(b, iss), conc)
		})
		for _, st := range benchStores {
			b.Run(fmt.Sprintf("api_key/%s/c%d", st.name, conc), func(b *testing.B) {
				kb := newKeyBrokerOn(b, st.open(b))
				req := benchRequest(b, kb.issuer)
				req.Audiences, req.RequestedTokenType = nil, exchange.TokenTypeAPIKey
				runExchanges(b, kb.exchange, req, conc)
			})
		}
	}
}

func runExchanges(b *testing.B, x *exchange.Exchanger, req *exchange.Request, conc int) {
	ctx := context.Background()
	if _, _, err := x.Exchange(ctx, req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	concurrently(b, conc, func() error {
		_, _, err := x.Exchange(ctx, req)
		return err
	})
}

// concurrently runs op b.N times from conc goroutines: a plain loop for 1,
// RunParallel with conc goroutines otherwise.
func concurrently(b *testing.B, conc int, op func() error) {
	if conc == 1 {
		for range b.N {
			if err := op(); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	b.SetParallelism(max(1, conc/runtime.GOMAXPROCS(0)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := op(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkAPIKeyVerify measures verifications of an unlimited key (a read)
// and of a key with uses (an atomic decrement), at concurrency 1 and 32.
func BenchmarkAPIKeyVerify(b *testing.B) {
	for _, st := range benchStores {
		for _, uses := range []int64{0, 1 << 40} {
			for _, conc := range []int{1, 32} {
				name := fmt.Sprintf("%s/unlimited/c%d", st.name, conc)
				if uses > 0 {
					name = fmt.Sprintf("%s/limited/c%d", st.name, conc)
				}
				b.Run(name, func(b *testing.B) {
					s := st.open(b)
					defer s.Close()
					keys, err := exchange.NewAPIKeys(exchange.APIKeysConfig{Store: s})
					if err != nil {
						b.Fatal(err)
					}
					defer keys.Close()
					ctx := context.Background()
					now := time.Now()
					key, _, err := keys.Issue(ctx, exchange.APIKey{Policy: "p", Subject: "s", CreatedAt: now, ExpiresAt: now.Add(time.Hour), Uses: uses})
					if err != nil {
						b.Fatal(err)
					}
					b.ReportAllocs()
					b.ResetTimer()
					concurrently(b, conc, func() error {
						v, err := keys.Verify(ctx, key)
						if err == nil && !v.Valid() {
							err = fmt.Errorf("verify: %s", v.Code)
						}
						return err
					})
				})
			}
		}
	}
}
