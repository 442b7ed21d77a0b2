package postgres

import (
	"context"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/tokenbroker/tokenbroker/exchange"
	"github.com/tokenbroker/tokenbroker/exchange/store/internal/sqlstore"
)

// insertAudit inserts one audit event; the JSON list columns arrive as text.
const insertAudit = `INSERT INTO audit_events (` + sqlstore.AuditColumns + `)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, $13::jsonb, $14::jsonb, $15, $16)`

// AppendAudit stores events in one transaction: all or none, in one round
// trip. Every event must carry its time. The batch needs no BEGIN: pgx sends
// it as one pipeline ending in a single Sync, which PostgreSQL runs as one
// implicit transaction (see pgx.Conn.SendBatch).
func (s *Store) AppendAudit(ctx context.Context, events []exchange.AuditEvent) error {
	if len(events) == 0 {
		return nil
	}
	var b pgx.Batch
	for _, e := range events {
		r, err := sqlstore.EncodeAudit(e)
		if err != nil {
			return fmt.Errorf("postgres: append audit: %w", err)
		}
		b.Queue(insertAudit, r.Args()...)
	}
	if err := s.pool.SendBatch(ctx, &b).Close(); err != nil {
		return fmt.Errorf("postgres: append audit: %w", err)
	}
	return nil
}

// QueryAudit returns the events matching q, newest first (events of the same
// time in reverse order of appending). Since is inclusive, Until exclusive.
func (s *Store) QueryAudit(ctx context.Context, q exchange.AuditQuery) ([]exchange.AuditEvent, error) {
	where, args, err := sqlstore.AuditFilter(q, func(i int) string { return "$" + strconv.Itoa(i) })
	if err != nil {
		return nil, fmt.Errorf("postgres: query audit: %w", err)
	}
	args = append(args, sqlstore.AuditLimit(q))
	rows, err := s.pool.Query(ctx, `SELECT `+sqlstore.AuditColumns+` FROM audit_events`+
		where+` ORDER BY time DESC, id DESC LIMIT $`+strconv.Itoa(len(args)), args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: query audit: %w", err)
	}
	defer rows.Close()
	var events []exchange.AuditEvent
	for rows.Next() {
		var r sqlstore.AuditRow
		if err := rows.Scan(r.Dest()...); err != nil {
			return nil, fmt.Errorf("postgres: query audit: %w", err)
		}
		e, err := r.Event()
		if err != nil {
			return nil, fmt.Errorf("postgres: query audit: %w", err)
		}
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: query audit: %w", err)
	}
	return events, nil
}
