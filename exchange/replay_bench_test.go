package exchange_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"golang.org/x/sync/errgroup"

	"github.com/tokenbroker/tokenbroker/exchange"
	"github.com/tokenbroker/tokenbroker/providers/devissuer"
)

// BenchmarkExchangeSingleUse measures whole in-process exchanges of a
// single-use policy (verify + policy + durable replay claim + sign) at
// concurrency 1 and 32 on each store, with the JWT exchange of a policy
// that is not single-use beside them. Every single-use exchange needs a
// token of its own (a fresh jti): b.N tokens are minted before the timer
// starts. Report ops/s = 1e9 / ns/op.
func BenchmarkExchangeSingleUse(b *testing.B) {
	for _, conc := range []int{1, 32} {
		b.Run(fmt.Sprintf("jwt/c%d", conc), func(b *testing.B) {
			x, iss, _ := newTestExchanger(b, "false")
			runExchanges(b, x, benchRequest(b, iss), conc)
		})
		for _, st := range benchStores {
			b.Run(fmt.Sprintf("single-use/%s/c%d", st.name, conc), func(b *testing.B) {
				x, iss, _ := newTestExchangerOn(b, "true", st.open(b))
				reqs := mintRequests(b, iss, b.N)
				ctx := context.Background()
				var next atomic.Int64
				b.ReportAllocs()
				b.ResetTimer()
				concurrently(b, conc, func() error {
					_, _, err := x.Exchange(ctx, reqs[next.Add(1)-1])
					return err
				})
			})
		}
	}
}

// mintRequests returns n exchange requests, each with a token of its own,
// minted on every core.
func mintRequests(b *testing.B, iss *devissuer.Issuer, n int) []*exchange.Request {
	b.Helper()
	reqs := make([]*exchange.Request, n)
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i := range reqs {
		g.Go(func() error {
			tok, err := iss.Mint(map[string]any{"aud": "https://broker.test", "environment": "prod"})
			reqs[i] = &exchange.Request{
				GrantType:        exchange.GrantTypeTokenExchange,
				SubjectToken:     tok,
				SubjectTokenType: exchange.TokenTypeIDToken,
				Audiences:        []string{"deploy-api"},
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	return reqs
}
