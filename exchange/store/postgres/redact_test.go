package postgres

import (
	"net/url"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	tests := []struct {
		name, dsn, want string
	}{
		{"url password", "postgres://u:pw-secret@db:5432/tb?sslmode=require", "postgres://u:xxxxx@db:5432/tb?sslmode=require"},
		{"url without password", "postgres://u@db/tb", "postgres://u@db/tb"},
		{"query password", "postgresql://u@db/tb?password=pw-secret&sslmode=disable", "postgresql://u@db/tb?password=xxxxx&sslmode=disable"},
		{"sslpassword", "postgres://db/tb?sslpassword=pw-secret", "postgres://db/tb?sslpassword=xxxxx"},
		{"escaped password", "postgres://u:p%40ss%2Fword@db/tb", "postgres://u:xxxxx@db/tb"},
		{"several hosts", "postgres://u:pw-secret@a:5432,b:5433/tb", "postgres://u:xxxxx@a:5432,b:5433/tb"},
		{"unparseable url", "postgres://u:pw-secret@[::1/tb", "postgres://xxxxx"},
		{"keyword/value", "host=db user=u password=pw-secret dbname=tb", "host=db user=u password=xxxxx dbname=tb"},
		{"keyword/value quoted", `host=db password='pw \' secret' dbname=tb`, "host=db password=xxxxx dbname=tb"},
		{"keyword/value spaced", "host=db PASSWORD = pw-secret", "host=db PASSWORD = xxxxx"},
		{"no password at all", "host=db user=u", "host=db user=u"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Redact(tt.dsn); got != tt.want {
				t.Errorf("Redact(%q) = %q, want %q", tt.dsn, got, tt.want)
			}
		})
	}
}

func TestScrub(t *testing.T) {
	tests := []struct {
		name, msg string
		secrets   []string
		want      string
		ok        bool
	}{
		{"removes every occurrence", "a pw-secret b pw-secret", []string{"pw-secret"}, "a xxxxx b xxxxx", true},
		{"absent short secret is harmless", "connection refused", []string{"zq"}, "connection refused", true},
		{"present short secret withholds", "connection refused", []string{"on"}, "", false},
		{"empty secret ignored", "x", []string{""}, "x", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := scrub(tt.msg, tt.secrets)
			if got != tt.want || ok != tt.ok {
				t.Errorf("scrub = %q, %v; want %q, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

// FuzzRedact checks that a password placed in any of the spots a DSN can
// carry one never survives Redact, not even in part: the password is wrapped
// in a marker letter that nothing else in the DSN holds.
func FuzzRedact(f *testing.F) {
	f.Add("hunter2", "db.example:5432")
	f.Add("p@ss:w/rd?#&=", "[::1]:5432")
	f.Add("x'y\\z ", "a,b")
	f.Fuzz(func(t *testing.T, pw, host string) {
		const marker = "Z"
		if strings.Contains(host, marker) || strings.ContainsAny(host, "/?#@ \t\n\r\v\f'\\") {
			t.Skip()
		}
		pw = marker + pw + marker
		quoted := "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(pw) + "'"
		for _, dsn := range []string{
			"postgres://user:" + url.QueryEscape(pw) + "@" + host + "/db",
			"postgresql://user@" + host + "/db?sslmode=disable&password=" + url.QueryEscape(pw),
			"host=" + host + " password=" + quoted + " dbname=db",
		} {
			if got := Redact(dsn); strings.Contains(got, marker) {
				t.Errorf("Redact(%q) = %q reveals the password", dsn, got)
			}
		}
	})
}
