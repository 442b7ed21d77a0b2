package sqlstore

import (
	"database/sql"
	"fmt"

	"github.com/tokenbroker/tokenbroker/exchange"
)

// KeyColumns lists the signing_keys columns in the order of KeyRow.Args and
// KeyRow.Dest.
const KeyColumns = "id, algorithm, private_key, created_at, active_at, retired_at, remove_at"

// KeyRow is a signing key in its column encoding.
type KeyRow struct {
	ID         string
	Algorithm  string
	PrivateKey []byte
	CreatedAt  int64
	ActiveAt   sql.NullInt64
	RetiredAt  sql.NullInt64
	RemoveAt   sql.NullInt64
}

// EncodeKey returns the column encoding of k.
func EncodeKey(k exchange.StoredKey) (KeyRow, error) {
	r := KeyRow{ID: k.ID, Algorithm: k.Algorithm, PrivateKey: k.PrivateKey}
	var err error
	if r.CreatedAt, err = Nanos(k.CreatedAt); err != nil {
		return KeyRow{}, fmt.Errorf("signing key %q created_at: %w", k.ID, err)
	}
	if r.ActiveAt, err = NullNanos(k.ActiveAt); err != nil {
		return KeyRow{}, fmt.Errorf("signing key %q active_at: %w", k.ID, err)
	}
	if r.RetiredAt, err = NullNanos(k.RetiredAt); err != nil {
		return KeyRow{}, fmt.Errorf("signing key %q retired_at: %w", k.ID, err)
	}
	if r.RemoveAt, err = NullNanos(k.RemoveAt); err != nil {
		return KeyRow{}, fmt.Errorf("signing key %q remove_at: %w", k.ID, err)
	}
	return r, nil
}

// Args returns the values of r in KeyColumns order.
func (r *KeyRow) Args() []any {
	return []any{r.ID, r.Algorithm, r.PrivateKey, r.CreatedAt, r.ActiveAt, r.RetiredAt, r.RemoveAt}
}

// Dest returns scan targets in KeyColumns order.
func (r *KeyRow) Dest() []any {
	return []any{&r.ID, &r.Algorithm, &r.PrivateKey, &r.CreatedAt, &r.ActiveAt, &r.RetiredAt, &r.RemoveAt}
}

// Key decodes r.
func (r *KeyRow) Key() exchange.StoredKey {
	return exchange.StoredKey{
		ID:         r.ID,
		Algorithm:  r.Algorithm,
		PrivateKey: r.PrivateKey,
		CreatedAt:  Time(r.CreatedAt),
		ActiveAt:   NullTime(r.ActiveAt),
		RetiredAt:  NullTime(r.RetiredAt),
		RemoveAt:   NullTime(r.RemoveAt),
	}
}

// AuditColumns lists the audit_events columns in the order of AuditRow.Args
// and AuditRow.Dest.
const AuditColumns = "time, request_id, client_ip, action, outcome, error_code, reason, " +
	"issuer, subject, policy, candidates, token_type, audience, scopes, credential_id, expires_at"

// AuditRow is an audit event in its column encoding.
type AuditRow struct {
	Time         int64
	RequestID    string
	ClientIP     string
	Action       string
	Outcome      string
	ErrorCode    string
	Reason       string
	Issuer       string
	Subject      string
	Policy       string
	Candidates   string
	TokenType    string
	Audience     string
	Scopes       string
	CredentialID string
	ExpiresAt    sql.NullInt64
}

// EncodeAudit returns the column encoding of e. An event must carry its time.
func EncodeAudit(e exchange.AuditEvent) (AuditRow, error) {
	r := AuditRow{
		RequestID:    e.RequestID,
		ClientIP:     e.ClientIP,
		Action:       e.Action,
		Outcome:      e.Outcome,
		ErrorCode:    e.ErrorCode,
		Reason:       e.Reason,
		Issuer:       e.Issuer,
		Subject:      e.Subject,
		Policy:       e.Policy,
		Candidates:   List(e.Candidates),
		TokenType:    e.TokenType,
		Audience:     List(e.Audience),
		Scopes:       List(e.Scopes),
		CredentialID: e.CredentialID,
	}
	var err error
	if r.Time, err = Nanos(e.Time); err != nil {
		return AuditRow{}, fmt.Errorf("audit event %q time: %w", e.RequestID, err)
	}
	if r.ExpiresAt, err = NullNanos(e.ExpiresAt); err != nil {
		return AuditRow{}, fmt.Errorf("audit event %q expires_at: %w", e.RequestID, err)
	}
	return r, nil
}

// Args returns the values of r in AuditColumns order.
func (r *AuditRow) Args() []any {
	return []any{r.Time, r.RequestID, r.ClientIP, r.Action, r.Outcome, r.ErrorCode, r.Reason,
		r.Issuer, r.Subject, r.Policy, r.Candidates, r.TokenType, r.Audience, r.Scopes,
		r.CredentialID, r.ExpiresAt}
}

// Dest returns scan targets in AuditColumns order.
func (r *AuditRow) Dest() []any {
	return []any{&r.Time, &r.RequestID, &r.ClientIP, &r.Action, &r.Outcome, &r.ErrorCode, &r.Reason,
		&r.Issuer, &r.Subject, &r.Policy, &r.Candidates, &r.TokenType, &r.Audience, &r.Scopes,
		&r.CredentialID, &r.ExpiresAt}
}

// Event decodes r.
func (r *AuditRow) Event() (exchange.AuditEvent, error) {
	e := exchange.AuditEvent{
		Time:         Time(r.Time),
		RequestID:    r.RequestID,
		ClientIP:     r.ClientIP,
		Action:       r.Action,
		Outcome:      r.Outcome,
		ErrorCode:    r.ErrorCode,
		Reason:       r.Reason,
		Issuer:       r.Issuer,
		Subject:      r.Subject,
		Policy:       r.Policy,
		TokenType:    r.TokenType,
		CredentialID: r.CredentialID,
		ExpiresAt:    NullTime(r.ExpiresAt),
	}
	var err error
	if e.Candidates, err = ParseList(r.Candidates); err != nil {
		return exchange.AuditEvent{}, err
	}
	if e.Audience, err = ParseList(r.Audience); err != nil {
		return exchange.AuditEvent{}, err
	}
	if e.Scopes, err = ParseList(r.Scopes); err != nil {
		return exchange.AuditEvent{}, err
	}
	return e, nil
}

// AuditFilter is the WHERE clause of an audit query, built with placeholders
// that placeholder(i) renders (i counts from 1: "?" for SQLite, "$i" for
// PostgreSQL), and its arguments. Since is inclusive, Until exclusive.
func AuditFilter(q exchange.AuditQuery, placeholder func(i int) string) (string, []any, error) {
	var (
		conds []string
		args  []any
	)
	add := func(cond string, arg any) {
		args = append(args, arg)
		conds = append(conds, fmt.Sprintf(cond, placeholder(len(args))))
	}
	if !q.Since.IsZero() {
		n, err := Nanos(q.Since)
		if err != nil {
			return "", nil, fmt.Errorf("audit query since: %w", err)
		}
		add("time >= %s", n)
	}
	if !q.Until.IsZero() {
		n, err := Nanos(q.Until)
		if err != nil {
			return "", nil, fmt.Errorf("audit query until: %w", err)
		}
		add("time < %s", n)
	}
	if q.Subject != "" {
		add("subject = %s", q.Subject)
	}
	if q.Policy != "" {
		add("policy = %s", q.Policy)
	}
	if q.Outcome != "" {
		add("outcome = %s", q.Outcome)
	}
	if len(conds) == 0 {
		return "", nil, nil
	}
	where := " WHERE " + conds[0]
	for _, c := range conds[1:] {
		where += " AND " + c
	}
	return where, args, nil
}
