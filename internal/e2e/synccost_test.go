//go:build integration

package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/internal/testkit"
	"github.com/switchboard-chat/switchboard/internal/wsclient"
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

// gate holds the send path's Redis round trips while closed, counting
// them.
type gate struct {
	held    atomic.Int64
	release chan struct{}
}

func (g *gate) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (g *gate) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (g *gate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if sendPath(cmds) {
			g.held.Add(1)
			<-g.release
		}
		return next(ctx, cmds)
	}
}

// The send path is a group commit across connections: sends of many
// connections that arrive while earlier ones are in their Redis round
// trip are prepared together, in one round trip, not one each.
func TestSendsOfManyConnectionsShareTheirRedisRoundTrip(t *testing.T) {
	c := newCluster(t)
	gw := c.startGateway("gw-1")
	c.startRouter()
	const n = 40
	clients := make([]*wsclient.Client, n)
	for i := range clients {
		clients[i] = c.dial(gw, fmt.Sprintf("u%02d", i))
	}
	g := &gate{release: make(chan struct{})}
	c.rdb.AddHook(g)
	ctx := context.Background()
	for i, cl := range clients {
		if err := cl.SendTo(ctx, "c", fmt.Sprintf("u%02d", (i+1)%n), "hello"); err != nil {
			t.Fatal(err)
		}
	}
	// Every send was read, and the first commits are held in Redis.
	testkit.Eventually(t, 10*time.Second, "the sends read", func() bool {
		return metric(t, gw, `switchboard_gateway_frames_in_total{type="send"}`) >= n && g.held.Load() >= 1
	})
	close(g.release)
	for _, cl := range clients {
		expect(t, cl, "sent", isSent("c"))
	}
	got := g.held.Load()
	t.Logf("%d sends of %d connections took %d send-path round trips", n, n, got)
	if got > 6 {
		t.Errorf("%d sends of %d connections took %d send-path round trips, want a few (group commit)", n, n, got)
	}
}

// sendPath reports whether a pipeline is the send path's: a script on a
// dedupe key.
func sendPath(cmds []redis.Cmder) bool {
	for _, c := range cmds {
		if c.Name() != "evalsha" {
			continue
		}
		for _, a := range c.Args() {
			if k, ok := a.(string); ok && strings.Contains(k, "dedupe:") {
				return true
			}
		}
	}
	return false
}
