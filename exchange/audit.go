package exchange

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Auditor records decisions. Record must not block the exchange on storage.
type Auditor interface {
	Record(ev AuditEvent)
}

// AuditWriter is an Auditor that logs every event at once as a structured
// line and stores events in batches from a background goroutine, so that
// audit writes never serialise the exchange's hot path. When the buffer is
// full, Record waits: an audit event is never dropped silently.
type AuditWriter struct {
	store  AuditStore
	log    *slog.Logger
	events chan AuditEvent
	done   chan struct{}
	once   sync.Once
	// mu guards closed and the close of events: Record sends under the
	// read lock, Close closes under the write lock, so a Record racing
	// Close (a handler outliving a timed-out shutdown) never sends on a
	// closed channel.
	mu     sync.RWMutex
	closed bool
	// OnError, if set, is called when a batch could not be stored.
	onError func(error)
}

// AuditWriterOptions configures an AuditWriter; zero values take defaults.
type AuditWriterOptions struct {
	// Buffer is the number of events queued before Record waits (default 4096).
	Buffer int
	// Logger receives one line per event (default slog.Default()).
	Logger *slog.Logger
	// OnError is called with each batch that could not be stored.
	OnError func(error)
}

// maxAuditBatch caps the events written in one transaction.
const maxAuditBatch = 256

// NewAuditWriter starts a writer storing into store. Close flushes it.
func NewAuditWriter(store AuditStore, opts AuditWriterOptions) *AuditWriter {
	if opts.Buffer <= 0 {
		opts.Buffer = 4096
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	w := &AuditWriter{
		store:   store,
		log:     opts.Logger,
		events:  make(chan AuditEvent, opts.Buffer),
		done:    make(chan struct{}),
		onError: opts.OnError,
	}
	go w.run()
	return w
}

// Record logs ev and queues it for storage. After Close the event is still
// logged, but not stored: an error line says so.
func (w *AuditWriter) Record(ev AuditEvent) {
	w.log.LogAttrs(context.Background(), slog.LevelInfo, "audit",
		slog.String("action", ev.Action),
		slog.String("outcome", ev.Outcome),
		slog.String("request_id", ev.RequestID),
		slog.String("client_ip", ev.ClientIP),
		slog.String("issuer", ev.Issuer),
		slog.String("subject", ev.Subject),
		slog.String("policy", ev.Policy),
		slog.Any("candidates", ev.Candidates),
		slog.String("error", ev.ErrorCode),
		slog.String("reason", ev.Reason),
		slog.String("credential_id", ev.CredentialID),
	)
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		w.log.LogAttrs(context.Background(), slog.LevelError, "audit: event recorded after close; logged, not stored",
			slog.String("action", ev.Action), slog.String("request_id", ev.RequestID))
		return
	}
	w.events <- ev
}

func (w *AuditWriter) run() {
	defer close(w.done)
	batch := make([]AuditEvent, 0, maxAuditBatch)
	for ev := range w.events {
		batch = append(batch[:0], ev)
	fill:
		for len(batch) < maxAuditBatch {
			select {
			case ev, ok := <-w.events:
				if !ok {
					break fill
				}
				batch = append(batch, ev)
			default:
				break fill
			}
		}
		w.store1(batch)
	}
}

func (w *AuditWriter) store1(batch []AuditEvent) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.store.AppendAudit(ctx, batch); err != nil {
		w.log.Error("audit: store batch", slog.Int("events", len(batch)), slog.Any("err", err))
		if w.onError != nil {
			w.onError(err)
		}
	}
}

// Close stops accepting events, stores what is queued and returns when done
// or when ctx ends. Events recorded after it are logged only.
func (w *AuditWriter) Close(ctx context.Context) error {
	w.once.Do(func() {
		// The write lock waits for Records blocked on a full buffer, which
		// the writer drains; it is taken off Close's goroutine so that ctx
		// still bounds Close.
		go func() {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.closed = true
			close(w.events)
		}()
	})
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
