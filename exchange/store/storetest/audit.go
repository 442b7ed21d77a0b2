package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokenbroker/tokenbroker/exchange"
)

// event returns a minimal event with the given identity.
func event(id string, at time.Time, subject, policy, outcome string) exchange.AuditEvent {
	return exchange.AuditEvent{
		Time:      at,
		RequestID: id,
		Action:    "token.exchange",
		Outcome:   outcome,
		Issuer:    "https://ci.example",
		Subject:   subject,
		Policy:    policy,
	}
}

func requestIDs(events []exchange.AuditEvent) []string {
	var ids []string
	for _, e := range events {
		ids = append(ids, e.RequestID)
	}
	return ids
}

func testAuditRoundTrip(t *testing.T, open func(t *testing.T) exchange.Store) {
	full := exchange.AuditEvent{
		Time:         base,
		RequestID:    "req-full",
		ClientIP:     "2001:db8::1",
		Action:       "token.exchange",
		Outcome:      exchange.OutcomeAllowed,
		ErrorCode:    "",
		Reason:       "policy deploy-prod allowed; \"quoted\" and ünïcode",
		Issuer:       "https://token.actions.githubusercontent.com",
		Subject:      "repo:octo-org/app:environment:prod",
		Policy:       "deploy-prod",
		Candidates:   []string{"deploy-prod", "deploy-any"},
		TokenType:    "urn:ietf:params:oauth:token-type:jwt",
		Audience:     []string{"deploy-api", "https://api.example"},
		Scopes:       []string{"deploy:prod", "deploy:read"},
		CredentialID: "jti-123",
		ExpiresAt:    base.Add(10*time.Minute + time.Nanosecond),
	}
	denied := exchange.AuditEvent{
		Time:      base.Add(time.Second),
		RequestID: "req-denied",
		ClientIP:  "192.0.2.7",
		Action:    "token.exchange",
		Outcome:   exchange.OutcomeDenied,
		ErrorCode: "invalid_request",
		Reason:    "no policy matched",
		Issuer:    "https://gitlab.com",
		Subject:   "project_path:group/app:ref_type:branch:ref:main",
	}
	s := newStore(t, open)
	if err := s.AppendAudit(ctx(t), []exchange.AuditEvent{full, denied}); err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	got, err := s.QueryAudit(ctx(t), exchange.AuditQuery{})
	if err != nil {
		t.Fatalf("QueryAudit: %v", err)
	}
	if d := cmp.Diff([]exchange.AuditEvent{denied, full}, got); d != "" {
		t.Errorf("QueryAudit after round trip (-want +got):\n%s", d)
	}
}

func testAuditQuery(t *testing.T, open func(t *testing.T) exchange.Store) {
	s := newStore(t, open)
	at := func(m int) time.Time { return base.Add(time.Duration(m) * time.Minute) }
	const ok, no, bad = exchange.OutcomeAllowed, exchange.OutcomeDenied, exchange.OutcomeError
	// Two batches, to check ordering across appends; e3 and e4 share a time.
	batches := [][]exchange.AuditEvent{
		{
			event("e1", at(1), "alice", "deploy", ok),
			event("e2", at(2), "bob", "deploy", no),
			event("e3", at(3), "alice", "read", ok),
		},
		{
			event("e4", at(3), "alice", "deploy", bad),
			event("e5", at(5), "bob", "read", ok),
			event("e0", at(0), "carol", "", no),
		},
	}
	for _, b := range batches {
		if err := s.AppendAudit(ctx(t), b); err != nil {
			t.Fatalf("AppendAudit: %v", err)
		}
	}
	tests := []struct {
		name string
		q    exchange.AuditQuery
		want []string
	}{
		{"all, newest first, ties last appended first", exchange.AuditQuery{}, []string{"e5", "e4", "e3", "e2", "e1", "e0"}},
		{"since is inclusive", exchange.AuditQuery{Since: at(3)}, []string{"e5", "e4", "e3"}},
		{"until is exclusive", exchange.AuditQuery{Until: at(3)}, []string{"e2", "e1", "e0"}},
		{"since and until", exchange.AuditQuery{Since: at(1), Until: at(5)}, []string{"e4", "e3", "e2", "e1"}},
		{"subject", exchange.AuditQuery{Subject: "alice"}, []string{"e4", "e3", "e1"}},
		{"policy", exchange.AuditQuery{Policy: "read"}, []string{"e5", "e3"}},
		{"outcome", exchange.AuditQuery{Outcome: no}, []string{"e2", "e0"}},
		{"subject and outcome", exchange.AuditQuery{Subject: "alice", Outcome: ok}, []string{"e3", "e1"}},
		{"all filters", exchange.AuditQuery{Since: at(2), Until: at(4), Subject: "alice", Policy: "deploy", Outcome: bad}, []string{"e4"}},
		{"limit keeps the newest", exchange.AuditQuery{Limit: 2}, []string{"e5", "e4"}},
		{"limit with filter", exchange.AuditQuery{Subject: "bob", Limit: 1}, []string{"e5"}},
		{"nothing matches", exchange.AuditQuery{Subject: "mallory"}, nil},
		{"filter values are not patterns", exchange.AuditQuery{Subject: "%"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.QueryAudit(ctx(t), tt.q)
			if err != nil {
				t.Fatalf("QueryAudit: %v", err)
			}
			if d := cmp.Diff(tt.want, requestIDs(got)); d != "" {
				t.Errorf("QueryAudit(%+v) request ids (-want +got):\n%s", tt.q, d)
			}
		})
	}
}

func testAuditDefaultLimit(t *testing.T, open func(t *testing.T) exchange.Store) {
	s := newStore(t, open)
	events := make([]exchange.AuditEvent, 105)
	for i := range events {
		events[i] = event(fmt.Sprintf("e%03d", i), base.Add(time.Duration(i)*time.Second), "alice", "deploy", exchange.OutcomeAllowed)
	}
	if err := s.AppendAudit(ctx(t), events); err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	got, err := s.QueryAudit(ctx(t), exchange.AuditQuery{})
	if err != nil {
		t.Fatalf("QueryAudit: %v", err)
	}
	if len(got) != 100 || got[0].RequestID != "e104" || got[99].RequestID != "e005" {
		t.Errorf("QueryAudit with zero limit: %d events from %v, want the newest 100 (e104..e005)", len(got), requestIDs(got))
	}
}

func testAuditInvalid(t *testing.T, open func(t *testing.T) exchange.Store) {
	s := newStore(t, open)
	if err := s.AppendAudit(ctx(t), nil); err != nil {
		t.Errorf("AppendAudit(nil) = %v, want nil", err)
	}
	good := event("good", base, "alice", "deploy", exchange.OutcomeAllowed)
	tests := []struct {
		name string
		bad  exchange.AuditEvent
	}{
		{"zero time", event("bad", time.Time{}, "alice", "deploy", exchange.OutcomeAllowed)},
		{"time out of range", event("bad", time.Date(2500, 1, 1, 0, 0, 0, 0, time.UTC), "alice", "deploy", exchange.OutcomeAllowed)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.AppendAudit(ctx(t), []exchange.AuditEvent{good, tt.bad}); err == nil {
				t.Errorf("AppendAudit with a bad event = nil, want an error")
			}
		})
	}
	got, err := s.QueryAudit(ctx(t), exchange.AuditQuery{})
	if err != nil {
		t.Fatalf("QueryAudit: %v", err)
	}
	if len(got) != 0 {
		t.Errorf("QueryAudit after refused batches = %v, want nothing (a batch is all or none)", requestIDs(got))
	}
}
