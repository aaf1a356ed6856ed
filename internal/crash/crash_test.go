//go:build integration

package crash

import (
	"context"
	"sync"
	"testing"
	"time"
)

// Traffic of every test: perClient DMs each way, paced by a ticker.
const (
	perClient   = 2500
	totalRate   = 400.0 // messages per second, both clients together
	trafficMax  = 60 * time.Second
	settleMax   = 30 * time.Second // acknowledging the outbox, final sync
	reconnected = 20 * time.Second // a client is back and synced
)

// pair is two users exchanging DMs, alice starting on gw-1 and bob on gw-2.
type pair struct {
	c        *cluster
	gw1, gw2 *gateway
	a, b     *chatClient
	stops    []func()
}

func newPair(t *testing.T) *pair {
	t.Helper()
	c := newCluster(t)
	gw1, gw2 := c.newGateway("gw-1"), c.newGateway("gw-2")
	c.startRouter()
	gw1.start()
	gw2.start()
	return c.pairOn(gw1, gw2)
}

// pairOn starts alice on gw1 and bob on gw2, both running.
func (c *cluster) pairOn(gw1, gw2 *gateway) *pair {
	t := c.t
	p := &pair{c: c, gw1: gw1, gw2: gw2}
	gws := []*gateway{p.gw1, p.gw2}
	p.a = newChatClient(t, "alice", "bob", gws, 0)
	p.b = newChatClient(t, "bob", "alice", gws, 1)
	p.a.peerClient, p.b.peerClient = p.b, p.a
	p.stops = append(p.stops, p.a.start(context.Background()), p.b.start(context.Background()))
	t.Cleanup(p.stop)
	return p
}

func (p *pair) stop() {
	for _, s := range p.stops {
		s()
	}
	p.stops = nil
}

// traffic sends perClient messages from each client at totalRate in all
// and returns a wait for the end of it.
func (p *pair) traffic(t *testing.T) (wait func()) {
	ctx, cancel := context.WithTimeout(context.Background(), trafficMax)
	interval := time.Duration(float64(time.Second) * 2 / totalRate)
	var wg sync.WaitGroup
	for _, c := range []*chatClient{p.a, p.b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for i := 0; i < perClient; i++ {
				select {
				case <-ctx.Done():
					t.Errorf("%s sent only %d of %d messages within %v", c.user, i, perClient, trafficMax)
					return
				case <-tick.C:
				}
				c.send()
			}
		}()
	}
	return func() { wg.Wait(); cancel() }
}

// finish waits for every send to be acknowledged, syncs both clients a
// last time, stops them and verifies what they hold.
func (p *pair) finish(t *testing.T, start time.Time) {
	t.Helper()
	for _, c := range []*chatClient{p.a, p.b} {
		if !c.drainOutbox(settleMax) {
			c.mu.Lock()
			n := len(c.outbox)
			c.mu.Unlock()
			t.Errorf("%s: %d sends unacknowledged %v after the traffic ended", c.user, n, settleMax)
		}
	}
	for _, c := range []*chatClient{p.a, p.b} {
		if err := c.finalSync(settleMax); err != nil {
			t.Error(err)
		}
	}
	p.stop()
	for _, g := range []*gateway{p.gw1, p.gw2} {
		if g.running() {
			g.logMetrics()
		}
	}
	line, missing := verify(t, p.a, p.b)
	t.Logf("%s duration=%v", line, time.Since(start).Round(time.Millisecond))
	p.c.traceInKafka(missing, p.gw1, p.gw2)
}

// onGateway reports whether c is connected to g and its sync on that
// connection answered.
func onGateway(c *chatClient, g *gateway) func() bool {
	return func() bool {
		if c.cl == nil || len(c.sessions) == 0 {
			return false
		}
		s := c.sessions[len(c.sessions)-1]
		if s.gw != g.name {
			return false
		}
		for _, r := range c.syncs {
			if r.epoch == s.epoch && !r.doneAt.IsZero() && !r.failed {
				return true
			}
		}
		return false
	}
}

func TestAClientWhoseGatewayIsKilledMidConversationGetsEveryMessageAfterMovingToTheOtherGateway(t *testing.T) {
	start := time.Now()
	p := newPair(t)
	wait := p.traffic(t)

	if !p.a.waitAcked(perClient*2/5, trafficMax) {
		t.Fatalf("alice never got %d sends acknowledged", perClient*2/5)
	}
	killedAt := time.Now()
	p.gw1.kill()
	t.Logf("killed gw-1 (kill -9) at %s", killedAt.Format("15:04:05.000"))
	if !p.a.await(reconnected, onGateway(p.a, p.gw2)) {
		t.Fatalf("alice did not move to gw-2 and sync within %v", reconnected)
	}
	t.Logf("alice synced on gw-2 %v after the kill", time.Since(killedAt).Round(time.Millisecond))

	wait()
	p.finish(t, start)
}

func TestARollingRestartOfBothGatewaysUnderTrafficLosesNoMessage(t *testing.T) {
	start := time.Now()
	p := newPair(t)
	wait := p.traffic(t)

	if !p.a.waitAcked(perClient/10, trafficMax) {
		t.Fatalf("alice never got %d sends acknowledged", perClient/10)
	}
	for _, step := range []struct{ stop, other *gateway }{{p.gw1, p.gw2}, {p.gw2, p.gw1}} {
		at := time.Now()
		took := step.stop.terminate(30 * time.Second)
		t.Logf("SIGTERM %s: exited after %v", step.stop.name, took.Round(time.Millisecond))
		for _, c := range []*chatClient{p.a, p.b} {
			if !c.await(reconnected, onGateway(c, step.other)) {
				t.Fatalf("%s did not move to %s and sync within %v", c.user, step.other.name, reconnected)
			}
		}
		t.Logf("both clients synced on %s %v after the SIGTERM", step.other.name, time.Since(at).Round(time.Millisecond))
		at = time.Now()
		step.stop.start()
		t.Logf("%s restarted and ready in %v", step.stop.name, time.Since(at).Round(time.Millisecond))
	}
	p.a.mu.Lock()
	sentDuring := p.a.nextN
	p.a.mu.Unlock()
	if sentDuring >= perClient {
		t.Logf("note: the traffic ended before the rolling restart did")
	}

	wait()
	p.finish(t, start)
}
