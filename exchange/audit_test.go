package exchange_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/tokenbroker/tokenbroker/exchange"
)

// memAudit is an AuditStore in memory.
type memAudit struct {
	mu     sync.Mutex
	events []exchange.AuditEvent
}

func (m *memAudit) AppendAudit(_ context.Context, evs []exchange.AuditEvent) error {
	m.mu.Lock()
	m.events = append(m.events, evs...)
	m.mu.Unlock()
	return nil
}

func (m *memAudit) QueryAudit(context.Context, exchange.AuditQuery) ([]exchange.AuditEvent, error) {
	return nil, nil
}

func (m *memAudit) len() int { m.mu.Lock(); defer m.mu.Unlock(); return len(m.events) }

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestAuditRecordAfterClose: a handler outliving a timed-out shutdown
// records after Close; the event is logged, not stored, and nothing panics.
func TestAuditRecordAfterClose(t *testing.T) {
	st := &memAudit{}
	var logs syncBuffer
	w := exchange.NewAuditWriter(st, exchange.AuditWriterOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	w.Record(exchange.AuditEvent{Action: "token.exchange", RequestID: "before"})
	if err := w.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Errorf("Record after Close panicked: %v", r)
			}
		}()
		w.Record(exchange.AuditEvent{Action: "token.exchange", RequestID: "after"})
	}()
	if got := st.len(); got != 1 {
		t.Errorf("%d events stored, want 1 (the one recorded before Close)", got)
	}
	out := logs.String()
	if !strings.Contains(out, "request_id=after") || !strings.Contains(out, "recorded after close") {
		t.Errorf("the late event is not logged as such:\n%s", out)
	}
	if err := w.Close(t.Context()); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestAuditRecordRacingClose records from many goroutines while Close runs
// (with a buffer small enough that Records wait): no panic, and every event
// is either stored or logged as recorded after close.
func TestAuditRecordRacingClose(t *testing.T) {
	st := &memAudit{}
	var logs syncBuffer
	w := exchange.NewAuditWriter(st, exchange.AuditWriterOptions{Buffer: 2, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	const writers, each = 8, 50
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			for j := range each {
				w.Record(exchange.AuditEvent{Action: "token.exchange", RequestID: fmt.Sprintf("%d-%d", i, j)})
			}
		})
	}
	if err := w.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	late := strings.Count(logs.String(), "recorded after close")
	if got := st.len() + late; got != writers*each {
		t.Errorf("%d stored + %d logged after close = %d, want %d", st.len(), late, got, writers*each)
	}
}
