package main

import (
	"strings"
	"testing"
)

// TestPublicURLNeedsHTTPSOffLoopback: a plain-http public_url is refused
// unless the broker listens on loopback only (dev, tests); behind a TLS
// proxy the public_url is https.
func TestPublicURLNeedsHTTPSOffLoopback(t *testing.T) {
	tests := []struct {
		name, listen, publicURL string
		wantErr                 bool
	}{
		{"defaults: loopback listen, http public_url", "", "", false},
		{"http on 127.0.0.1", "127.0.0.1:8080", "http://127.0.0.1:8080", false},
		{"http on [::1]", "[::1]:8080", "http://[::1]:8080", false},
		{"http on localhost", "localhost:8080", "http://localhost:8080", false},
		{"https behind a TLS proxy", "0.0.0.0:8080", "https://broker.example.com", false},
		{"https on every interface", ":8080", "https://broker.example.com", false},
		{"http on every interface", ":8080", "http://broker.example.com", true},
		{"http on 0.0.0.0", "0.0.0.0:8080", "http://broker.example.com:8080", true},
		{"http public_url on loopback host, listen on every interface", "0.0.0.0:8080", "http://127.0.0.1:8080", true},
		{"default public_url from a public listen", "192.0.2.10:8080", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var env []string
			if tt.listen != "" {
				env = append(env, "TOKENBROKER_LISTEN="+tt.listen)
			}
			if tt.publicURL != "" {
				env = append(env, "TOKENBROKER_PUBLIC_URL="+tt.publicURL)
			}
			cfg, err := loadConfig("", env)
			if err != nil {
				t.Fatalf("loadConfig: %v", err)
			}
			cfg.defaults()
			err = cfg.validate()
			got := err != nil && strings.Contains(err.Error(), "public_url")
			if got != tt.wantErr {
				t.Errorf("validate() = %v, want a public_url error: %v", err, tt.wantErr)
			}
		})
	}
}
