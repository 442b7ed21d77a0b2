package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tokenbroker/tokenbroker/exchange"
	"github.com/tokenbroker/tokenbroker/exchange/store"
)

// auditCmd is `tokenbroker audit`: it reads the audit trail from the store
// that serve writes it to (same config file, environment and flags).
func auditCmd() *cobra.Command {
	var (
		configPath, since, until string
		q                        exchange.AuditQuery
		asJSON                   bool
	)
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Query the audit trail (newest first)",
		Long: "Query the audit trail of every exchange decision, newest first.\n" +
			"--since and --until take a duration back from now (1h, 30m) or an RFC 3339 time.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := adminConfig(configPath, cmd.Flags())
			if err != nil {
				return err
			}
			now := time.Now()
			if q.Since, err = parseWhen(since, now); err != nil {
				return fmt.Errorf("--since: %w", err)
			}
			if q.Until, err = parseWhen(until, now); err != nil {
				return fmt.Errorf("--until: %w", err)
			}
			switch q.Outcome {
			case "", exchange.OutcomeAllowed, exchange.OutcomeDenied, exchange.OutcomeError:
			default:
				return fmt.Errorf("--outcome %q: want allowed, denied or error", q.Outcome)
			}
			if q.Limit < 0 {
				return fmt.Errorf("--limit %d: must not be negative", q.Limit)
			}
			st, err := store.Open(cmd.Context(), cfg.Store)
			if err != nil {
				return fmt.Errorf("%s: store: %w", cfg.file, err)
			}
			defer func() { _ = st.Close() }()
			events, err := st.QueryAudit(cmd.Context(), q)
			if err != nil {
				return err
			}
			if asJSON {
				return writeAuditJSON(cmd.OutOrStdout(), events)
			}
			return writeAuditTable(cmd.OutOrStdout(), events)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&configPath, "config", "c", "", "configuration file (YAML), as for serve")
	f.String("store", "", "store DSN (store)")
	f.StringVar(&since, "since", "", "only events at or after this time (1h or RFC 3339)")
	f.StringVar(&until, "until", "", "only events before this time (1h or RFC 3339)")
	f.StringVar(&q.Subject, "subject", "", "only events for this subject (the CI token's sub)")
	f.StringVar(&q.Policy, "policy", "", "only events decided by this policy")
	f.StringVar(&q.Outcome, "outcome", "", "only allowed, denied or error")
	f.IntVar(&q.Limit, "limit", 100, "at most this many events")
	f.BoolVar(&asJSON, "json", false, "one JSON object per line")
	return cmd
}

// parseWhen reads a duration back from now or an RFC 3339 time; "" is zero.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("%q: the duration counts back from now and must be positive", s)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither a duration (1h) nor an RFC 3339 time", s)
	}
	return t, nil
}

// auditJSON is the --json shape of an event.
type auditJSON struct {
	Time         time.Time  `json:"time"`
	RequestID    string     `json:"request_id"`
	ClientIP     string     `json:"client_ip,omitempty"`
	Action       string     `json:"action"`
	Outcome      string     `json:"outcome"`
	ErrorCode    string     `json:"error,omitempty"`
	Reason       string     `json:"reason,omitempty"`
	Issuer       string     `json:"issuer,omitempty"`
	Subject      string     `json:"subject,omitempty"`
	Policy       string     `json:"policy,omitempty"`
	Candidates   []string   `json:"candidates,omitempty"`
	TokenType    string     `json:"token_type,omitempty"`
	Audience     []string   `json:"audience,omitempty"`
	Scopes       []string   `json:"scopes,omitempty"`
	CredentialID string     `json:"credential_id,omitempty"`
	ExpiresAt    *time.Time `json:"expires_at,omitempty"`
}

func writeAuditJSON(w io.Writer, events []exchange.AuditEvent) error {
	enc := json.NewEncoder(w)
	for _, ev := range events {
		j := auditJSON{
			Time: ev.Time.UTC(), RequestID: ev.RequestID, ClientIP: ev.ClientIP, Action: ev.Action,
			Outcome: ev.Outcome, ErrorCode: ev.ErrorCode, Reason: ev.Reason, Issuer: ev.Issuer,
			Subject: ev.Subject, Policy: ev.Policy, Candidates: ev.Candidates, TokenType: ev.TokenType,
			Audience: ev.Audience, Scopes: ev.Scopes, CredentialID: ev.CredentialID,
		}
		if !ev.ExpiresAt.IsZero() {
			exp := ev.ExpiresAt.UTC()
			j.ExpiresAt = &exp
		}
		if err := enc.Encode(j); err != nil {
			return err
		}
	}
	return nil
}

func writeAuditTable(w io.Writer, events []exchange.AuditEvent) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tOUTCOME\tREQUEST\tCLIENT\tSUBJECT\tPOLICY\tCREDENTIAL\tREASON")
	for _, ev := range events {
		outcome := ev.Outcome
		if ev.ErrorCode != "" {
			outcome += " (" + ev.ErrorCode + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			ev.Time.UTC().Format(time.RFC3339), outcome, ev.RequestID, dash(ev.ClientIP),
			dash(ev.Subject), dash(ev.Policy), dash(ev.CredentialID), dash(oneLine(ev.Reason)))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine keeps a reason on its table row.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
