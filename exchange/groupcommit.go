package exchange

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Defaults of GroupCommitOptions.
const (
	// DefaultMaxBatch caps the items of one commit.
	DefaultMaxBatch = 256
	// DefaultCommitTimeout bounds one commit.
	DefaultCommitTimeout = 10 * time.Second
)

// ErrCommitterClosed is returned by GroupCommitter.Submit after Close.
var ErrCommitterClosed = errors.New("exchange: group committer closed")

// GroupCommitOptions tune a GroupCommitter; zero values take the defaults.
type GroupCommitOptions struct {
	// MaxBatch caps the items written by one commit (zero: DefaultMaxBatch).
	MaxBatch int
	// MaxWait is how long a commit waits for more items once it has one
	// (zero: no wait). Waiting is rarely useful: while one commit runs, the
	// next batch gathers by itself.
	MaxWait time.Duration
	// CommitTimeout bounds each commit (zero: DefaultCommitTimeout). A
	// commit serves several requests, so it runs on its own context, not on
	// any one request's.
	CommitTimeout time.Duration
}

// GroupCommitter writes items submitted concurrently in groups: one
// goroutine takes every item waiting, writes them with a single call of
// commit (one transaction, one fsync), and only then answers each submitter
// with the commit's result. A durable write thus costs one commit per group
// instead of one per request, and no submitter returns before its own item
// is committed.
type GroupCommitter[T any] struct {
	commit func(ctx context.Context, items []T) error
	opts   GroupCommitOptions
	queue  chan *pending[T]

	mu     sync.RWMutex // guards closed against sends on queue
	closed bool
	done   chan struct{}
}

type pending[T any] struct {
	ctx  context.Context
	item T
	err  chan error // buffered: the committer never blocks on a submitter
}

// NewGroupCommitter starts a committer that writes batches with commit.
// commit must write all the items or none. Close stops it.
func NewGroupCommitter[T any](commit func(ctx context.Context, items []T) error, opts GroupCommitOptions) *GroupCommitter[T] {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.CommitTimeout <= 0 {
		opts.CommitTimeout = DefaultCommitTimeout
	}
	g := &GroupCommitter[T]{
		commit: commit,
		opts:   opts,
		queue:  make(chan *pending[T], opts.MaxBatch),
		done:   make(chan struct{}),
	}
	go g.run()
	return g
}

// Submit hands item to the next commit and waits until it is committed. It
// returns the commit's error, ctx's error if ctx ends first, or
// ErrCommitterClosed. When ctx ends after the item was queued, the item may
// still be committed; the caller must treat it as lost, not as absent.
func (g *GroupCommitter[T]) Submit(ctx context.Context, item T) error {
	p := &pending[T]{ctx: ctx, item: item, err: make(chan error, 1)}
	g.mu.RLock()
	if g.closed {
		g.mu.RUnlock()
		return ErrCommitterClosed
	}
	select {
	case g.queue <- p:
		g.mu.RUnlock()
	case <-ctx.Done():
		g.mu.RUnlock()
		return ctx.Err()
	}
	select {
	case err := <-p.err:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops accepting items, commits those already queued and returns
// once the committer has stopped.
func (g *GroupCommitter[T]) Close() error {
	g.mu.Lock()
	if !g.closed {
		g.closed = true
		close(g.queue)
	}
	g.mu.Unlock()
	<-g.done
	return nil
}

// run is the committer loop.
func (g *GroupCommitter[T]) run() {
	defer close(g.done)
	batch := make([]*pending[T], 0, g.opts.MaxBatch)
	for first := range g.queue {
		batch = append(batch[:0], first)
		batch = g.gather(batch)
		g.write(batch)
		clear(batch)
	}
}

// gather adds the items already queued to batch, and waits up to MaxWait
// for more, until the batch is full.
func (g *GroupCommitter[T]) gather(batch []*pending[T]) []*pending[T] {
	var timeout <-chan time.Time
	if g.opts.MaxWait > 0 {
		t := time.NewTimer(g.opts.MaxWait)
		defer t.Stop()
		timeout = t.C
	}
	for len(batch) < g.opts.MaxBatch {
		select {
		case p, ok := <-g.queue:
			if !ok {
				return batch
			}
			batch = append(batch, p)
			continue
		default:
		}
		if timeout == nil {
			return batch
		}
		select {
		case p, ok := <-g.queue:
			if !ok {
				return batch
			}
			batch = append(batch, p)
		case <-timeout:
			return batch
		}
	}
	return batch
}

// write commits the live items of batch and answers every submitter with
// the commit's result. Items whose submitter has gone are dropped. A failed
// group fails every item in it: callers check their items before submitting,
// so a failure is the store's (unreachable, full), which a retry of each item
// alone would only repeat, slowly.
func (g *GroupCommitter[T]) write(batch []*pending[T]) {
	live := batch[:0:0]
	for _, p := range batch {
		if err := p.ctx.Err(); err != nil {
			p.err <- err
			continue
		}
		live = append(live, p)
	}
	if len(live) == 0 {
		return
	}
	err := g.commitItems(live)
	for _, p := range live {
		p.err <- err
	}
}

func (g *GroupCommitter[T]) commitItems(ps []*pending[T]) error {
	items := make([]T, len(ps))
	for i, p := range ps {
		items[i] = p.item
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.opts.CommitTimeout)
	defer cancel()
	return g.commit(ctx, items)
}
