//go:build integration

package e2e

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
)

// roundTrips counts the Redis round trips of every client of one
// redis.Client: single commands and pipelines alike.
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.n.Add(1)
		return next(ctx, cmd)
	}
}

func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.n.Add(1)
		return next(ctx, cmds)
	}
}

// A sync naming many of one's own conversations costs a bounded number of
// Redis round trips, not a few per conversation: its state (the seq each
// conversation is at, the receipts, group memberships) is read in
// pipelines for all of them at once.
func TestASyncOfManyConversationsCostsABoundedNumberOfRoundTrips(t *testing.T) {
	c := newCluster(t)
	gw := c.startGateway("gw-1")
	c.startRouter()
	counter := &roundTrips{}
	c.rdb.AddHook(counter)
	alice := c.dial(gw, "alice")
	ctx := context.Background()
	since := map[string]any{}
	for i := range 250 {
		cid := fmt.Sprintf("c%d", i)
		if err := alice.SendTo(ctx, cid, fmt.Sprintf("peer%03d", i), "hello"); err != nil {
			t.Fatal(err)
		}
		f := expect(t, alice, "sent "+cid, isSent(cid))
		since[f.Conv] = f.Seq
	}
	// A first sync waits until the views hold all of them.
	first := doSync(t, alice, map[string]any{"since": since})
	if n := len(first.messages); n != 0 {
		t.Fatalf("a sync from the latest seqs returned %d messages", n)
	}
	for _, size := range []int{10, 250} {
		named := map[string]any{}
		for conv, seq := range since {
			if len(named) == size {
				break
			}
			named[conv] = seq
		}
		before := counter.n.Load()
		r := doSync(t, alice, map[string]any{"since": named, "only": true})
		trips := counter.n.Load() - before
		t.Logf("a sync naming %d conversations: %d Redis round trips (all clients together)", size, trips)
		if got := len(r.synced.Convs); got != size {
			t.Fatalf("synced covers %d conversations, want %d", got, size)
		}
		// The sync's own reads are about 8 round trips; heartbeats and
		// the router may add a few meanwhile.
		if trips > 20 {
			t.Errorf("a sync naming %d conversations took %d Redis round trips, want at most 20 whatever the number", size, trips)
		}
	}
}
