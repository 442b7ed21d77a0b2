package sqlite

import (
	"context"
	"fmt"

	"github.com/tokenbroker/tokenbroker/exchange"
	"github.com/tokenbroker/tokenbroker/exchange/store/internal/sqlstore"
)

// AppendAudit stores events in one transaction: all or none. Every event
// must carry its time.
func (s *Store) AppendAudit(ctx context.Context, events []exchange.AuditEvent) error {
	if len(events) == 0 {
		return nil
	}
	rows := make([]sqlstore.AuditRow, len(events))
	for i, e := range events {
		r, err := sqlstore.EncodeAudit(e)
		if err != nil {
			return fmt.Errorf("sqlite: append audit: %w", err)
		}
		rows[i] = r
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: append audit: %w", err)
	}
	defer func() { _ = tx.Rollback() }() // a no-op after Commit
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO audit_events (`+sqlstore.AuditColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("sqlite: append audit: %w", err)
	}
	defer stmt.Close()
	for i := range rows {
		if _, err := stmt.ExecContext(ctx, rows[i].Args()...); err != nil {
			return fmt.Errorf("sqlite: append audit: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: append audit: %w", err)
	}
	return nil
}

// QueryAudit returns the events matching q, newest first (events of the same
// time in reverse order of appending). Since is inclusive, Until exclusive.
func (s *Store) QueryAudit(ctx context.Context, q exchange.AuditQuery) ([]exchange.AuditEvent, error) {
	where, args, err := sqlstore.AuditFilter(q, func(int) string { return "?" })
	if err != nil {
		return nil, fmt.Errorf("sqlite: query audit: %w", err)
	}
	args = append(args, sqlstore.AuditLimit(q))
	rows, err := s.read.QueryContext(ctx, `SELECT `+sqlstore.AuditColumns+` FROM audit_events`+
		where+` ORDER BY time DESC, id DESC LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: query audit: %w", err)
	}
	defer rows.Close()
	var events []exchange.AuditEvent
	for rows.Next() {
		var r sqlstore.AuditRow
		if err := rows.Scan(r.Dest()...); err != nil {
			return nil, fmt.Errorf("sqlite: query audit: %w", err)
		}
		e, err := r.Event()
		if err != nil {
			return nil, fmt.Errorf("sqlite: query audit: %w", err)
		}
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: query audit: %w", err)
	}
	return events, nil
}
