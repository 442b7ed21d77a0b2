package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/tokenbroker/tokenbroker/exchange/store/storetest"
)

var apiKeyRequest = url.Values{
	"requested_token_type": {"urn:tokenbroker:token-type:api_key"},
	"audience":             {"artifact-api"},
}

// verifyKey asks broker about key and returns the verify answer.
func verifyKey(t *testing.T, broker, key string) map[string]any {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"key": key})
	var res tokenResult
	if err := post(broker+"/v1/keys/verify", "application/json", string(body), &res); err != nil {
		t.Fatal(err)
	}
	if res.Status == http.StatusNotFound {
		t.Fatalf("POST /v1/keys/verify: 404, the broker has no verify endpoint")
	}
	if res.Status != http.StatusOK {
		t.Fatalf("POST /v1/keys/verify: status %d %v", res.Status, res.Body)
	}
	return res.Body
}

func mintKey(t *testing.T, broker string, ci *ciIssuer, claims map[string]any) string {
	t.Helper()
	res := exchangeToken(t, broker, ci.mint(t, claims), apiKeyRequest)
	if res.Status != http.StatusOK {
		t.Fatalf("api key exchange: %d %v", res.Status, res.Body)
	}
	if res.Body["issued_token_type"] != "urn:tokenbroker:token-type:api_key" {
		t.Errorf("issued_token_type = %v", res.Body["issued_token_type"])
	}
	key, _ := res.Body["access_token"].(string)
	return key
}

// TestAPIKeysSurviveKill9 kills the broker with SIGKILL in the middle of a
// stream of key exchanges: after a restart every key that was returned with
// 200 verifies VALID.
func TestAPIKeysSurviveKill9(t *testing.T) {
	dir := t.TempDir()
	ci := newCIIssuer(t)
	brokerURL, cfgPath := brokerSetup(t, dir, ci)
	broker := start(t, brokerURL, nil, "serve", "--config", cfgPath)

	// Tokens are minted up front so the stream runs at full speed.
	const workers, perWorker = 8, 60
	tokens := make([][]string, workers)
	for w := range tokens {
		for i := 0; i < perWorker; i++ {
			tokens[w] = append(tokens[w], ci.mint(t, map[string]any{"aud": brokerURL, "environment": "prod"}))
		}
	}
	var mu sync.Mutex
	var keys []string
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(toks []string) {
			defer wg.Done()
			for _, tok := range toks {
				res, err := tryExchange(brokerURL, tok, apiKeyRequest)
				if err != nil {
					return // the broker is gone
				}
				if res.Status == http.StatusOK {
					mu.Lock()
					keys = append(keys, res.Body["access_token"].(string))
					mu.Unlock()
				}
			}
		}(tokens[w])
	}
	// Kill once the stream is well under way.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(keys)
		mu.Unlock()
		if n >= workers*perWorker/3 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := broker.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	<-broker.exited
	if len(keys) == 0 || len(keys) == workers*perWorker {
		t.Fatalf("kill did not land mid-stream: %d of %d keys returned", len(keys), workers*perWorker)
	}
	t.Logf("SIGKILL after %d of %d key exchanges answered 200", len(keys), workers*perWorker)

	start(t, brokerURL, nil, "serve", "--config", cfgPath)
	for _, k := range keys {
		if v := verifyKey(t, brokerURL, k); v["code"] != "VALID" || v["valid"] != true {
			t.Fatalf("key returned before the kill verifies %v", v)
		}
	}
}

// TestTwoReplicasOnPostgres runs two brokers on one PostgreSQL database.
func TestTwoReplicasOnPostgres(t *testing.T) {
	if os.Getenv("TOKENBROKER_TEST_POSTGRES") == "" {
		t.Skip("TOKENBROKER_TEST_POSTGRES not set")
	}
	dsn := storetest.PostgresDSN(t)
	ci := newCIIssuer(t)
	// Replicas behind one load balancer share the public URL: it is the
	// audience CI tokens carry and the iss of what either mints.
	const public = "https://broker.test"
	urlA, cfgA := brokerSetupStore(t, t.TempDir(), ci, dsn, public)
	urlB, cfgB := brokerSetupStore(t, t.TempDir(), ci, dsn, public)
	prod := map[string]any{"aud": public, "environment": "prod"}

	// Both start at once on an empty database: they must agree on one key.
	var a, b *process
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a = start(t, "", nil, "serve", "--config", cfgA) }()
	go func() { defer wg.Done(); b = start(t, "", nil, "serve", "--config", cfgB) }()
	wg.Wait()
	a.waitReady(urlA + "/readyz")
	b.waitReady(urlB + "/readyz")
	if ka, kb := jwksKids(t, urlA), jwksKids(t, urlB); len(ka) != 1 || len(kb) != 1 || ka[0] != kb[0] {
		t.Fatalf("replicas publish different signing keys: %v and %v", ka, kb)
	}

	t.Run("key minted on A verifies on B", func(t *testing.T) {
		key := mintKey(t, urlA, ci, prod)
		if v := verifyKey(t, urlB, key); v["code"] != "VALID" {
			t.Fatalf("verify on B = %v", v)
		}
	})
	t.Run("revocation on A is seen by B", func(t *testing.T) {
		key := mintKey(t, urlA, ci, prod)
		var res tokenResult
		if err := postForm(urlA+"/revoke", url.Values{"token": {key}}, &res); err != nil && res.Status != 200 {
			t.Fatal(err)
		}
		if res.Status != http.StatusOK {
			t.Fatalf("revoke on A: %d", res.Status)
		}
		if v := verifyKey(t, urlB, key); v["code"] != "REVOKED" || v["valid"] != false {
			t.Fatalf("verify on B after revoke on A = %v", v)
		}
	})
	t.Run("JWT minted by A verifies against B's JWKS", func(t *testing.T) {
		res := exchangeToken(t, urlA, ci.mint(t, prod), url.Values{"audience": {"deploy-api"}})
		if res.Status != http.StatusOK {
			t.Fatalf("exchange on A: %d %v", res.Status, res.Body)
		}
		verifyWithJWKS(t, urlB, public, res.Body["access_token"].(string))
	})
	t.Run("jti used on A is refused on B", func(t *testing.T) {
		tok := ci.mint(t, prod)
		if res := exchangeToken(t, urlA, tok, nil); res.Status != http.StatusOK {
			t.Fatalf("first use on A: %d %v", res.Status, res.Body)
		}
		if res := exchangeToken(t, urlB, tok, nil); res.Status != http.StatusBadRequest || res.Body["error"] != "invalid_request" {
			t.Fatalf("replay on B: %d %v", res.Status, res.Body)
		}
	})
}

// jwksKids returns the kids of broker's JWKS.
func jwksKids(t *testing.T, broker string) []string {
	t.Helper()
	resp, err := http.Get(broker + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.Kid)
	}
	return kids
}

// verifyWithJWKS verifies a minted JWT with stock go-oidc against the JWKS
// served by broker, for issuer iss and audience deploy-api.
func verifyWithJWKS(t *testing.T, broker, iss, raw string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ks := oidc.NewRemoteKeySet(ctx, broker+"/.well-known/jwks.json")
	v := oidc.NewVerifier(iss, ks, &oidc.Config{ClientID: "deploy-api", SupportedSigningAlgs: []string{"ES256"}})
	if _, err := v.Verify(ctx, raw); err != nil {
		t.Fatalf("verify against %s JWKS: %v", broker, err)
	}
}
