package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenbroker/tokenbroker/exchange"
	"github.com/tokenbroker/tokenbroker/exchange/store"
)

func TestAuditCommand(t *testing.T) {
	dsn := "sqlite://" + filepath.Join(t.TempDir(), "tb.db")
	ctx := context.Background()
	st, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	events := []exchange.AuditEvent{
		{Time: now.Add(-3 * time.Hour), RequestID: "r1", Action: "token.exchange", Outcome: exchange.OutcomeAllowed, Subject: "repo:a/b:ref:refs/heads/main", Policy: "deploy", CredentialID: "jti-1"},
		{Time: now.Add(-30 * time.Minute), RequestID: "r2", Action: "token.exchange", Outcome: exchange.OutcomeDenied, ErrorCode: "invalid_request", Reason: "subject_token is invalid: providers: token expired"},
		{Time: now.Add(-10 * time.Minute), RequestID: "r3", Action: "token.exchange", Outcome: exchange.OutcomeAllowed, Subject: "repo:a/b:ref:refs/heads/main", Policy: "deploy", CredentialID: "jti-3"},
	}
	if err := st.AppendAudit(ctx, events); err != nil {
		t.Fatal(err)
	}
	_ = st.Close()

	tests := []struct {
		name string
		args []string
		want []string // request ids, newest first
	}{
		{"everything", nil, []string{"r3", "r2", "r1"}},
		{"since a duration", []string{"--since", "1h"}, []string{"r3", "r2"}},
		{"since and until RFC 3339", []string{"--since", now.Add(-4 * time.Hour).Format(time.RFC3339), "--until", now.Add(-time.Hour).Format(time.RFC3339)}, []string{"r1"}},
		{"by outcome", []string{"--outcome", "denied"}, []string{"r2"}},
		{"by subject and policy", []string{"--subject", "repo:a/b:ref:refs/heads/main", "--policy", "deploy"}, []string{"r3", "r1"}},
		{"limit", []string{"--limit", "1"}, []string{"r3"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			cmd := auditCmd()
			cmd.SetOut(&out)
			cmd.SetArgs(append([]string{"--store", dsn, "--json"}, tc.args...))
			if err := cmd.ExecuteContext(ctx); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
				if line == "" {
					continue
				}
				var ev auditJSON
				if err := json.Unmarshal([]byte(line), &ev); err != nil {
					t.Fatalf("line %q: %v", line, err)
				}
				got = append(got, ev.RequestID)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("request ids (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("table names the reason in full", func(t *testing.T) {
		var out bytes.Buffer
		cmd := auditCmd()
		cmd.SetOut(&out)
		cmd.SetArgs([]string{"--store", dsn, "--outcome", "denied"})
		if err := cmd.ExecuteContext(ctx); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "providers: token expired") || !strings.Contains(out.String(), "denied (invalid_request)") {
			t.Errorf("table:\n%s", out.String())
		}
	})
	for _, bad := range [][]string{{"--outcome", "maybe"}, {"--since", "yesterday"}, {"--since", "-1h"}, {"--limit", "-1"}} {
		t.Run("refuses "+strings.Join(bad, " "), func(t *testing.T) {
			cmd := auditCmd()
			cmd.SetOut(&bytes.Buffer{})
			cmd.SetArgs(append([]string{"--store", dsn}, bad...))
			if err := cmd.ExecuteContext(ctx); err == nil {
				t.Error("accepted")
			}
		})
	}
}
