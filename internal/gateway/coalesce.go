package gateway

import (
	"context"
	"sync"
)

// coalesced shares one read among the callers that want it at the same
// time: a caller waits for the next read that starts after it asked (never
// one already under way, whose answer could predate it), and at most one
// read runs at a time. A reconnect storm's thousands of syncs then cost a
// read per round trip time, not one each.
type coalesced[T any] struct {
	read func(context.Context) (T, error)

	mu      sync.Mutex
	pending *flight[T] // the next read's callers
	running bool
}

type flight[T any] struct {
	done chan struct{}
	val  T
	err  error
}

func newCoalesced[T any](read func(context.Context) (T, error)) *coalesced[T] {
	return &coalesced[T]{read: read}
}

// get returns the result of a read that started after get was called.
// The read runs with a context detached from the callers' (it serves
// them all); ctx only bounds this caller's wait.
func (c *coalesced[T]) get(ctx context.Context) (T, error) {
	c.mu.Lock()
	f := c.pending
	if f == nil {
		f = &flight[T]{done: make(chan struct{})}
		c.pending = f
	}
	if !c.running {
		c.running = true
		go c.run(context.WithoutCancel(ctx))
	}
	c.mu.Unlock()
	select {
	case <-f.done:
		return f.val, f.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// run performs reads while callers are waiting for one.
func (c *coalesced[T]) run(ctx context.Context) {
	for {
		c.mu.Lock()
		f := c.pending
		c.pending = nil
		if f == nil {
			c.running = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		f.val, f.err = c.read(ctx)
		close(f.done)
	}
}
