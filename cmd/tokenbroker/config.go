package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/tokenbroker/tokenbroker/exchange"
	"github.com/tokenbroker/tokenbroker/providers"
)

// Config is tokenbroker.yaml. Every scalar key, and every list of strings
// (comma-separated), can also be set by an environment variable
// TOKENBROKER_<KEY> (upper case, "." -> "_"), e.g.
// TOKENBROKER_SIGNING_ALGORITHM or TOKENBROKER_TRUSTED_PROXIES=10.0.0.0/8,::1;
// providers: only comes from the file. Flags win over the environment, which
// wins over the file.
type Config struct {
	// Listen is the address of the HTTP API (default 127.0.0.1:8080).
	Listen string `yaml:"listen"`
	// PublicURL is the iss of minted JWTs and the base of discovery and JWKS
	// (default http://<listen>).
	PublicURL string `yaml:"public_url"`
	// Store is sqlite://PATH (default sqlite://./tokenbroker.db).
	Store string `yaml:"store"`
	// Providers are the only issuers ever contacted.
	Providers []ProviderConfig `yaml:"providers"`
	// Policies is a policy file or a folder of them (default ./policies).
	Policies string         `yaml:"policies"`
	Signing  SigningConfig  `yaml:"signing"`
	Limits   LimitsConfig   `yaml:"limits"`
	Server   ServerTimeouts `yaml:"server"`
	// RateLimits are the flood limits on POST /token (limits.go).
	RateLimits RateLimitsConfig `yaml:"rate_limits"`
	// AdminListen, when set, serves /metrics on this address instead of on
	// the public listener.
	AdminListen string `yaml:"admin_listen"`
	// TrustedProxies are CIDRs of the proxies in front of the broker whose
	// X-Forwarded-For is believed for the client address (rate limits,
	// audit). Empty: the TCP peer is the client.
	TrustedProxies []string `yaml:"trusted_proxies"`

	file string // where it came from, for messages
	// zeros are the duration keys ("limits.leeway") the file or the
	// environment set to 0: defaults() leaves them at 0, and validate()
	// refuses them but where 0 means something (zeroDurationOK).
	zeros map[string]bool
}

// zeroDurationOK are the duration keys for which an explicit 0 is a
// meaningful setting rather than a mistake.
var zeroDurationOK = map[string]bool{
	"limits.leeway": true, // no clock skew tolerated
}

// ProviderConfig is one entry of providers:.
type ProviderConfig struct {
	Name       string   `yaml:"name"`
	Preset     string   `yaml:"preset"`
	Issuer     string   `yaml:"issuer"`
	Algorithms []string `yaml:"algorithms"`
	// Params fill the preset's issuer template: org_id (circleci,
	// azure-devops), enterprise or host (github-actions), host (gitlab,
	// terraform-cloud), workspace (bitbucket-pipelines). Written inline:
	// `org_id: ...` next to `preset:`.
	Params map[string]string `yaml:",inline"`
}

// SigningConfig is signing:.
type SigningConfig struct {
	// Algorithm is ES256 (default), RS256 or EdDSA.
	Algorithm string `yaml:"algorithm"`
	// RotateEvery is the age at which serve rotates the signing key
	// (default 720h; negative: never, rotate with `tokenbroker keys rotate`).
	RotateEvery Duration `yaml:"rotate_every"`
	// PublishAhead is how long a new key is published before it signs
	// (default 10m, at least 2m; signing.go).
	PublishAhead Duration `yaml:"publish_ahead"`
	// KeyEncryptionKeyFile is a file holding the key encryption key that
	// seals the private signing keys in the store: 32 random bytes, base64
	// (openssl rand -base64 32) or raw (keyseal.go). Empty: keys are stored
	// unencrypted.
	KeyEncryptionKeyFile string `yaml:"key_encryption_key_file"`
	// PreviousKeyEncryptionKeyFiles are former key encryption keys, still
	// used to open keys they sealed (file only, not the environment).
	PreviousKeyEncryptionKeyFiles []string `yaml:"previous_key_encryption_key_files"`
}

// LimitsConfig is limits: the bounds on incoming tokens and minted credentials.
type LimitsConfig struct {
	// Leeway is the clock skew allowed on exp, nbf and iat (default 30s).
	Leeway Duration `yaml:"leeway"`
	// MaxTokenLifetime caps exp - iat of incoming CI tokens (default 1h).
	MaxTokenLifetime Duration `yaml:"max_token_lifetime"`
	// MaxTTL caps the lifetime of minted credentials (default 1h).
	MaxTTL Duration `yaml:"max_ttl"`
	// JWKSCooldown is the least time between two JWKS refetches of an issuer
	// for unknown kids (default 10s).
	JWKSCooldown Duration `yaml:"jwks_cooldown"`
	// MaxKeyStaleness is how long fetched issuer keys keep verifying while the
	// issuer is unreachable (default 24h).
	MaxKeyStaleness Duration `yaml:"max_key_staleness"`
}

// ServerTimeouts is server: the HTTP server's timeouts.
type ServerTimeouts struct {
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"` // default 5s
	ReadTimeout       Duration `yaml:"read_timeout"`        // default 10s
	WriteTimeout      Duration `yaml:"write_timeout"`       // default 30s
	IdleTimeout       Duration `yaml:"idle_timeout"`        // default 120s
}

// Duration is a time.Duration written as a Go duration string ("10m").
type Duration time.Duration

// UnmarshalYAML reads a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: invalid duration %q (use e.g. 30s, 10m, 1h)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// defaults fills what the file, environment and flags left empty.
func (c *Config) defaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8080"
	}
	if c.PublicURL == "" {
		c.PublicURL = "http://" + c.Listen
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	if c.Store == "" {
		c.Store = "sqlite://./tokenbroker.db"
	}
	if c.Policies == "" {
		c.Policies = "./policies"
	}
	if c.Signing.Algorithm == "" {
		c.Signing.Algorithm = exchange.DefaultAlgorithm
	}
	c.Signing.defaults()
	// An unset key takes its default; one set to 0 stays 0 (validate
	// refuses it where 0 means nothing).
	def := func(key string, d *Duration, v time.Duration) {
		if *d == 0 && !c.zeros[key] {
			*d = Duration(v)
		}
	}
	def("limits.leeway", &c.Limits.Leeway, providers.DefaultLeeway)
	def("limits.max_token_lifetime", &c.Limits.MaxTokenLifetime, time.Hour)
	def("limits.max_ttl", &c.Limits.MaxTTL, exchange.DefaultMaxTTL)
	def("limits.jwks_cooldown", &c.Limits.JWKSCooldown, 10*time.Second)
	def("limits.max_key_staleness", &c.Limits.MaxKeyStaleness, 24*time.Hour)
	def("server.read_header_timeout", &c.Server.ReadHeaderTimeout, 5*time.Second)
	def("server.read_timeout", &c.Server.ReadTimeout, 10*time.Second)
	def("server.write_timeout", &c.Server.WriteTimeout, 30*time.Second)
	def("server.idle_timeout", &c.Server.IdleTimeout, 120*time.Second)
	c.RateLimits.defaults()
}

// errNoStore refuses an admin command that names no store: it would
// create an empty ./tokenbroker.db and report on that.
var errNoStore = errors.New("no store: pass --config FILE (serve's configuration), --store DSN, or set TOKENBROKER_STORE")

// adminConfig loads serve's configuration for an admin command (keys,
// apikeys, audit): the file at configPath, the environment, then the flags
// in fs. Without a file, the store must come from TOKENBROKER_STORE or
// --store (errNoStore).
func adminConfig(configPath string, fs *pflag.FlagSet) (*Config, error) {
	cfg, err := loadConfig(configPath, os.Environ())
	if err != nil {
		return nil, err
	}
	applyFlags(cfg, fs)
	if configPath == "" && cfg.Store == "" {
		return nil, errNoStore
	}
	cfg.defaults()
	return cfg, nil
}

// loadConfig reads path (if not empty), then the environment.
func loadConfig(path string, environ []string) (*Config, error) {
	c := &Config{file: "(defaults)"}
	var doc yaml.Node
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if err := decodeConfig(data, c, &doc); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
		c.file = path
	}
	env := envMap(environ)
	if err := applyEnv(reflect.ValueOf(c).Elem(), "TOKENBROKER", env); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c.zeros = zeroDurations(reflect.ValueOf(c).Elem(), "", func(key string) bool {
		_, inEnv := env["TOKENBROKER_"+strings.ToUpper(strings.ReplaceAll(key, ".", "_"))]
		return inEnv || setIn(&doc, strings.Split(key, "."))
	})
	return c, nil
}

// decodeConfig decodes the one YAML document of data into c (unknown keys
// are errors) and into doc, which says which keys were written. An empty
// file is a valid, all-defaults config; a second document is an error
// (it would be silently ignored).
func decodeConfig(data []byte, c *Config, doc *yaml.Node) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return err
	}
	if err := dec.Decode(&yaml.Node{}); !errors.Is(err, io.EOF) {
		if err != nil {
			return err
		}
		return errors.New("more than one YAML document (---): write the whole configuration as one")
	}
	return yaml.Unmarshal(data, doc)
}

// setIn reports whether the YAML document doc gives key path a non-null
// value (`leeway:` and `leeway: ~` are null: unset).
func setIn(doc *yaml.Node, path []string) bool {
	n := doc
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	for _, name := range path {
		if n.Kind != yaml.MappingNode {
			return false
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == name {
				next = n.Content[i+1]
			}
		}
		if next == nil {
			return false
		}
		n = next
	}
	return n.ShortTag() != "!!null"
}

// zeroDurations returns the duration keys under v that are 0 and were set
// explicitly, as explicit says.
func zeroDurations(v reflect.Value, prefix string, explicit func(key string) bool) map[string]bool {
	zeros := map[string]bool{}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		key := prefix + tag
		switch fv := v.Field(i); {
		case fv.Type() == reflect.TypeOf(Duration(0)):
			if fv.Int() == 0 && explicit(key) {
				zeros[key] = true
			}
		case fv.Kind() == reflect.Struct:
			maps.Copy(zeros, zeroDurations(fv, key+".", explicit))
		}
	}
	return zeros
}

func envMap(environ []string) map[string]string {
	m := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "TOKENBROKER_") {
			m[k] = v
		}
	}
	return m
}

// applyEnv sets every scalar field, and every []string field (a
// comma-separated list), from TOKENBROKER_<YAML_PATH>. Lists of structs
// (providers) only come from the file. Other TOKENBROKER_* variables are
// left alone: tools beside the broker use some (TOKENBROKER_URL,
// TOKENBROKER_ID_TOKEN).
func applyEnv(v reflect.Value, prefix string, env map[string]string) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		name := prefix + "_" + strings.ToUpper(tag)
		fv := v.Field(i)
		if f.Type.Kind() == reflect.Struct {
			if err := applyEnv(fv, name, env); err != nil {
				return err
			}
			continue
		}
		val, ok := env[name]
		if !ok {
			continue
		}
		switch {
		case f.Type == reflect.TypeOf(Duration(0)):
			d, err := time.ParseDuration(val)
			if err != nil {
				return fmt.Errorf("%s: invalid duration %q", name, val)
			}
			fv.SetInt(int64(d))
		case f.Type.Kind() == reflect.String:
			fv.SetString(val)
		case f.Type == reflect.TypeOf([]string(nil)):
			fv.Set(reflect.ValueOf(splitList(val)))
		case f.Type.Kind() == reflect.Int:
			n, err := strconv.Atoi(val)
			if err != nil {
				return fmt.Errorf("%s: invalid number %q", name, val)
			}
			fv.SetInt(int64(n))
		case f.Type.Kind() == reflect.Float64:
			x, err := strconv.ParseFloat(val, 64)
			if err != nil {
				return fmt.Errorf("%s: invalid number %q", name, val)
			}
			fv.SetFloat(x)
		case f.Type.Kind() == reflect.Bool:
			b, err := strconv.ParseBool(val)
			if err != nil {
				return fmt.Errorf("%s: invalid boolean %q", name, val)
			}
			fv.SetBool(b)
		}
	}
	return nil
}

// splitList reads a comma-separated environment value: items are trimmed,
// empty ones dropped ("" is the empty list).
func splitList(val string) []string {
	out := []string{}
	for _, item := range strings.Split(val, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// validate checks the whole config and reports every problem, each naming
// the key and the file.
func (c *Config) validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: %s", c.file, key, fmt.Sprintf(format, args...)))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "%q is not host:port", c.Listen)
	}
	if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		bad("public_url", "%q must be an absolute http(s) URL without query or fragment", c.PublicURL)
	} else if u.Scheme == "http" && !loopbackAddr(c.Listen) {
		// CI tokens and minted credentials would cross the network in
		// clear, and verifiers would fetch the JWKS in clear. TLS
		// terminated in front of the broker still gives an https public_url.
		bad("public_url", "%q is plain http while listen %q is not a loopback address: terminate TLS in front of the broker and set an https public_url (plain http only with a loopback listen)", c.PublicURL, c.Listen)
	}
	if !exchange.ValidAlgorithm(c.Signing.Algorithm) {
		bad("signing.algorithm", "%q is not one of ES256, RS256, EdDSA", c.Signing.Algorithm)
	}
	if len(c.Providers) == 0 {
		bad("providers", "at least one provider is required")
	}
	for i, p := range c.Providers {
		if p.Preset == devPreset {
			bad(fmt.Sprintf("providers[%d].preset", i), "%q is the development issuer of `tokenbroker dev`; serve never trusts it", p.Preset)
		}
	}
	for _, key := range slices.Sorted(maps.Keys(c.zeros)) {
		if !zeroDurationOK[key] {
			bad(key, "0 is not allowed (leave the key out for its default)")
		}
	}
	if c.Limits.Leeway < 0 || c.Limits.Leeway.D() > 5*time.Minute {
		bad("limits.leeway", "%s must be between 0 and 5m", c.Limits.Leeway.D())
	}
	if c.Limits.MaxTTL.D() < time.Minute || c.Limits.MaxTTL.D() > 24*time.Hour {
		bad("limits.max_ttl", "%s must be between 1m and 24h", c.Limits.MaxTTL.D())
	}
	errs = append(errs, c.validateLimits())
	errs = append(errs, c.validateSigning())
	return errors.Join(errs...)
}

// providerLeeway is limits.leeway for providers.Options, where zero means
// providers.DefaultLeeway and a negative value none: a configured 0 is
// passed as -1.
func (c *Config) providerLeeway() time.Duration {
	if d := c.Limits.Leeway.D(); d > 0 {
		return d
	}
	return -1
}

// providerConfigs converts the providers: list.
func (c *Config) providerConfigs() []providers.Config {
	out := make([]providers.Config, 0, len(c.Providers))
	for _, p := range c.Providers {
		out = append(out, providers.Config{Name: p.Name, Preset: p.Preset, Issuer: p.Issuer, Algorithms: p.Algorithms, Params: p.Params})
	}
	return out
}

// loopbackAddr reports whether host:port names a loopback host.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
