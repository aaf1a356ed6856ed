//go:build integration

package outage

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/gateway"
	"github.com/switchboard-chat/switchboard/internal/testkit"
	"github.com/switchboard-chat/switchboard/internal/wsclient"
)

// Redis loses its data (stopped, its append-only file deleted): after its
// restart every key is gone — the
// sessions, the live-gateway registry, the seq counters, the cid dedupe
// records and the restored marker. Sends are refused while Redis is down
// and, once it is back, until the router (running throughout) has rebuilt
// the views from chat-log, raised the seq counters and restored the dedupe
// records. Then sends carry on with the next seq, a retry of a cid
// acknowledged before the loss returns the original message, and clients
// that stayed connected receive again without reconnecting: the gateway
// registers their sessions again on its next heartbeat.
func TestWhileRedisIsDownSendsAreAnsweredUnavailableInTimeReadinessFailsAndSendsWorkOnceItIsBackWithoutRestartingTheGateway(t *testing.T) {
	const (
		redisTimeout = time.Second
		every        = 200 * time.Millisecond
		slack        = 10 // goroutines
	)
	// A connection's sends are handled in order, in batches: a send that
	// arrives while a batch waits for Redis waits for that batch first, then
	// for its own round trip. Its answer is due within two Redis timeouts,
	// plus a second of slack.
	bound := 2*redisTimeout + time.Second
	// The gateway registers itself and its sessions again on its first
	// heartbeat (every third of the lease) that reaches the new Redis.
	regBound := lease/3 + redisTimeout + time.Second
	// A message accepted for a registered session is delivered within this.
	const liveBound = 3 * time.Second
	in := startInfra(t)
	before := settledGoroutines(t)
	g := in.startGateway("gw-redis", func(c *gateway.Config) { c.RedisTimeout = redisTimeout })
	rtr := in.startRouter(nil)
	alice, bob := g.dial("alice"), g.dial("bob")
	conv := chat.DirectConv("alice", "bob")
	ctx := context.Background()

	warm := warmUp(t, alice, bob, 3, "before the outage")
	firstSent, lastSeq := warm[0], warm[len(warm)-1].Seq
	want := make(map[string]bool) // ids that must be in chat-log
	for _, f := range warm {
		want[f.ID] = true
	}
	if r := g.ready(); r.Status != 200 {
		t.Fatalf("readyz before the outage: %d %v", r.Status, r.Checks)
	}
	base := settledGoroutines(t)
	t.Logf("goroutines before the outage: %d (%d before the gateway and router started)", base, before)

	// Redis goes away.
	tStop := time.Now()
	in.stopRedis()
	in.wipeRedis()
	tDown := time.Now()
	r := g.awaitReady(503, 10*time.Second)
	t.Logf("readyz while Redis is down: %d in %v, checks %v", r.Status, r.Took.Round(time.Millisecond), r.Checks)
	checkNotReady(t, r, "redis")

	// Sends for three seconds: each is answered unavailable in time.
	pc := pace(alice, "bob", "r", every)
	for deadline := time.Now().Add(30 * time.Second); len(pc.sends()) < 15; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the pacer stalled at %d sends", len(pc.sends()))
		}
	}
	sends := pc.halt(t)
	deadline := time.Now().Add(2 * bound)
	for _, s := range sends {
		alice.await(0, time.Until(deadline), isAnswer(s.CID))
	}
	refusedCIDs := make(map[string]bool) // must never reach chat-log
	var lat []time.Duration
	for _, a := range answers(sends, alice.snapshot()) {
		refusedCIDs[a.CID] = true
		switch {
		case !a.Ok:
			t.Errorf("send %s while Redis was down was never answered", a.CID)
		case a.Answer.Type != "error" || a.Answer.Code != "unavailable" || a.Answer.RetryAfterMS <= 0:
			t.Errorf("send %s while Redis was down answered %s, want unavailable with retry_after_ms", a.CID, a.Answer.Raw)
		default:
			lat = append(lat, a.Latency)
			if a.Latency > bound {
				t.Errorf("send %s answered after %v, over 2*REDIS_TIMEOUT+1s = %v", a.CID, a.Latency.Round(time.Millisecond), bound)
			}
		}
	}
	t.Logf("unavailable answers while Redis is down (REDIS_TIMEOUT %v): %s", redisTimeout, latencyStats(lat))
	checkNotReady(t, g.ready(), "redis")

	// A new connection cannot register its session: it is closed with
	// 1013 before any frame.
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	start := time.Now()
	ws, _, err := websocket.Dial(dctx, g.wsURL("carol"), nil)
	if err != nil {
		cancel()
		t.Fatalf("dial while Redis is down: %v", err)
	}
	typ, data, err := ws.Read(dctx)
	cancel()
	ws.CloseNow()
	if st := websocket.CloseStatus(err); st != websocket.StatusTryAgainLater {
		t.Errorf("a connection opened while Redis was down read %v %s, %v; want close 1013", typ, data, err)
	} else {
		t.Logf("a connection opened while Redis was down was closed with 1013 after %v", time.Since(start).Round(time.Millisecond))
	}

	// Redis comes back, empty; alice keeps sending to bob every 100 ms.
	in.startRedis()
	tUp := time.Now()
	t.Logf("Redis was down for %v", tUp.Sub(tDown).Round(time.Millisecond))
	pa := pace(alice, "bob", "a", every)

	// Wait (up to restoreLimit) for the restored marker, /readyz 200 (only
	// once sends are accepted again), the gateway's registration, alice's
	// and bob's sessions (registered again by the gateway, not by a
	// reconnect) and the first accepted send.
	reg := g.route.Prefix + "gw"
	var markerAt, readyAt, regAt, sessAt time.Time
	var firstOK rx
	accepted := func(f wsclient.Frame) bool { return f.Type == "sent" && strings.HasPrefix(f.CID, "a-") }
	for deadline := tUp.Add(restoreLimit); markerAt.IsZero() || readyAt.IsZero() || regAt.IsZero() || sessAt.IsZero() || firstOK.At.IsZero(); {
		if time.Now().After(deadline) {
			pa.halt(t)
			t.Fatalf("%v after Redis came back: restored marker at %v, readyz 200 at %v, gateway registered at %v, sessions registered at %v, first send accepted at %v (zero: not yet); alice: %s",
				restoreLimit, markerAt, readyAt, regAt, sessAt, firstOK.At, alice.describe())
		}
		now := time.Now()
		if markerAt.IsZero() && in.restored() {
			markerAt = now
		}
		if readyAt.IsZero() {
			if r := g.ready(); r.Status == 200 {
				readyAt = now
				if !in.restored() { // the marker, once set, stays
					t.Errorf("readyz answered 200 while the restored marker was missing: %v", r.Checks)
				}
			}
		}
		if regAt.IsZero() && in.inspect.ZScore(ctx, reg, string(g.id)).Err() == nil {
			regAt = now
		}
		if sessAt.IsZero() && in.inspect.Exists(ctx, prefix+"sess:alice", prefix+"sess:bob").Val() == 2 {
			sessAt = now
		}
		if firstOK.At.IsZero() {
			if f, ok := alice.await(0, 20*time.Millisecond, accepted); ok {
				firstOK = f
			}
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("after Redis was back: gateway registered again after %v, alice's and bob's sessions after %v, restored marker after %v, readyz 200 after %v, first send accepted after %v",
		regAt.Sub(tUp).Round(time.Millisecond), sessAt.Sub(tUp).Round(time.Millisecond),
		markerAt.Sub(tUp).Round(time.Millisecond), readyAt.Sub(tUp).Round(time.Millisecond), firstOK.At.Sub(tUp).Round(time.Millisecond))
	if d := regAt.Sub(tUp); d > regBound {
		t.Errorf("the gateway registered again %v after Redis was back, over lease/3+REDIS_TIMEOUT+1s = %v", d.Round(time.Millisecond), regBound)
	}
	if d := sessAt.Sub(tUp); d > regBound {
		t.Errorf("the connected clients' sessions were registered again %v after Redis was back, over %v", d.Round(time.Millisecond), regBound)
	}
	checkRestoreTime(t, firstOK.At.Sub(tUp))

	// Ten more sends once both hold, then the answers: refused (never
	// with a seq) until the restore, then accepted with the next seqs.
	pa.awaitSendsAfter(t, maxTime(sessAt, firstOK.At), 10, 30*time.Second)
	sends = pa.halt(t)
	deadline = time.Now().Add(2 * bound)
	for _, s := range sends {
		alice.await(0, time.Until(deadline), isAnswer(s.CID))
	}
	var refused []time.Duration
	var acked []answered
	restoring := 0
	for _, a := range answers(sends, alice.snapshot()) {
		if !a.Ok {
			t.Errorf("send %s after Redis was back was never answered", a.CID)
			continue
		}
		if a.Latency > bound {
			t.Errorf("send %s after Redis was back answered %s after %v, over %v", a.CID, a.Answer.Type, a.Latency.Round(time.Millisecond), bound)
		}
		if a.Answer.Type == "sent" {
			switch {
			case len(acked) == 0 && a.Answer.Seq != lastSeq+1:
				t.Errorf("the first send accepted after the loss got seq %d, want %d (the log's last was %d): %s", a.Answer.Seq, lastSeq+1, lastSeq, a.Answer.Raw)
			case len(acked) > 0 && a.Answer.Seq <= acked[len(acked)-1].Answer.Seq:
				t.Errorf("seq went back from %d to %d: %s", acked[len(acked)-1].Answer.Seq, a.Answer.Seq, a.Answer.Raw)
			}
			acked = append(acked, a)
			want[a.Answer.ID] = true
			continue
		}
		refusedCIDs[a.CID] = true
		if a.Answer.Code != "unavailable" || a.Answer.RetryAfterMS <= 0 {
			t.Errorf("send %s before the restore answered %s, want unavailable with retry_after_ms", a.CID, a.Answer.Raw)
		}
		if len(acked) > 0 {
			t.Errorf("send %s was refused after %s had been accepted: %s", a.CID, acked[0].CID, a.Answer.Raw)
		}
		if strings.Contains(a.Answer.Message, "being restored") {
			restoring++
		}
		refused = append(refused, a.Latency)
	}
	if len(acked) == 0 {
		t.Fatal("no send after Redis was back was accepted")
	}
	t.Logf("sends after Redis was back: %d refused (%d of them \"being restored\"), answered %s; %d accepted, seqs %d..%d (the last before the loss: %d)",
		len(refused), restoring, latencyStats(refused), len(acked), acked[0].Answer.Seq, acked[len(acked)-1].Answer.Seq, lastSeq)

	// bob, connected since before the outage, receives live again as soon
	// as sends are accepted and his session is registered again: every
	// message sent after that reaches him.
	// Deliveries to bob are ordered, so once those arrived any earlier one
	// that is missing never will (bob would get it by a sync).
	deadline = time.Now().Add(15 * time.Second)
	var firstLive time.Time
	var notLive []string
	for _, a := range acked {
		if !a.At.After(sessAt) {
			continue
		}
		m, ok := bob.await(0, time.Until(deadline), isMessage(a.CID))
		if !ok {
			t.Errorf("bob (connected through the loss) never got %s, sent %v after his session was registered again: %s",
				a.CID, a.At.Sub(sessAt).Round(time.Millisecond), bob.describe())
			continue
		}
		if m.ID != a.Answer.ID || m.Seq != a.Answer.Seq {
			t.Errorf("bob got %s for %s, alice was told %s", m.Raw, a.CID, a.Answer.Raw)
		}
	}
	for _, a := range acked {
		m, ok := bob.await(0, 0, isMessage(a.CID))
		if !ok {
			notLive = append(notLive, a.CID)
			continue
		}
		if firstLive.IsZero() || m.At.Before(firstLive) {
			firstLive = m.At
		}
	}
	if firstLive.IsZero() {
		t.Fatalf("bob received nothing live after Redis was back")
	}
	t.Logf("bob received live again %v after Redis was back, without reconnecting; %d message(s) accepted before his session was registered again were not delivered live: %v",
		firstLive.Sub(tUp).Round(time.Millisecond), len(notLive), notLive)
	if d := firstLive.Sub(maxTime(sessAt, firstOK.At)); d > liveBound {
		t.Errorf("bob received live again only %v after sends were accepted and his session registered again, over %v", d.Round(time.Millisecond), liveBound)
	}

	// A public message reaches bob too (the live-gateway registry is back).
	mark, bobMark := alice.count(), bob.count()
	alice.sendConv("after-pub", "public", "public after the restart")
	pub := alice.expect(mark, bound, "the public send's answer", isAnswer("after-pub"))
	if pub.Type != "sent" {
		t.Fatalf("public send after Redis's restart answered %s", pub.Raw)
	}
	want[pub.ID] = true
	bob.expect(bobMark, 10*time.Second, "bob gets the public message", isMessage("after-pub"))

	// A retry of a cid acknowledged before the loss returns the original
	// message and sends nothing: a message sent after it reaches bob, and
	// nothing for the retried cid came before it.
	mark = alice.count()
	alice.send(firstSent.CID, "bob", "before the outage")
	dup := alice.expect(mark, bound, "the answer to a retried pre-outage cid", isAnswer(firstSent.CID))
	if dup.Type != "sent" || dup.ID != firstSent.ID || dup.Seq != firstSent.Seq || dup.TS != firstSent.TS {
		t.Errorf("retry of pre-loss cid %s answered %s, first answer was %s", firstSent.CID, dup.Raw, firstSent.Raw)
	}
	mark = alice.count()
	alice.send("after-last", "bob", "after the retry")
	last := alice.expect(mark, bound, "the answer to the last send", isAnswer("after-last"))
	if last.Type != "sent" || last.Seq <= acked[len(acked)-1].Answer.Seq {
		t.Fatalf("the last send answered %s after seq %d", last.Raw, acked[len(acked)-1].Answer.Seq)
	}
	want[last.ID] = true
	bob.expect(bobMark, 10*time.Second, "bob gets the last message", isMessage("after-last"))
	for _, f := range bob.snapshot()[bobMark:] {
		if f.Type == "message" && f.CID == firstSent.CID {
			t.Errorf("the retry of pre-loss cid %s was delivered again: %s", firstSent.CID, f.Raw)
		}
	}

	// The router rebuilt the history from the log: it has every message
	// of the conversation, from before and after the loss.
	deadline = time.Now().Add(15 * time.Second)
	for {
		have := make(map[string]bool)
		for _, m := range in.history(conv) {
			have[m.ID] = true
		}
		missing := 0
		for id := range want {
			if id != pub.ID && !have[id] {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("the router's history of %s lacks %d of the %d messages sent", conv, missing, len(want)-1)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}

	// chat-log: every accepted message, no refused one, no seq twice, no
	// second message for the retried cid.
	msgs := in.chatLog("chat-log", hasIDs(want), 60*time.Second)
	have := make(map[string]bool)
	for _, m := range msgs {
		have[m.ID] = true
		if m.From == "alice" && refusedCIDs[m.CID] {
			t.Errorf("chat-log holds %s (%s), which was answered unavailable", m.CID, m.ID)
		}
		if m.From == "alice" && m.CID == firstSent.CID && m.ID != firstSent.ID {
			t.Errorf("chat-log holds a second message %s (seq %d) for the retried cid %s (first %s)", m.ID, m.Seq, m.CID, firstSent.ID)
		}
	}
	for id := range want {
		if !have[id] {
			t.Errorf("accepted message %s is not in chat-log", id)
		}
	}
	logged := checkConvLog(t, msgs, conv, true)
	t.Logf("chat-log: %d messages of %s, seqs %d..%d", len(logged), conv, logged[0].Seq, logged[len(logged)-1].Seq)

	// Reconnecting still works, and leaves one session per client.
	alice.close()
	bob.close()
	alice, bob = g.dial("alice"), g.dial("bob")
	for i := 0; i < 3; i++ {
		cid := fmt.Sprintf("re-%d", i)
		alice.send(cid, "bob", "after reconnecting")
		f := alice.expect(0, bound+6*time.Second, "answer after reconnecting", isAnswer(cid))
		if f.Type != "sent" {
			t.Fatalf("send after reconnecting answered %s", f.Raw)
		}
		if m := bob.expect(0, 15*time.Second, "delivery after reconnecting", isMessage(cid)); m.ID != f.ID {
			t.Fatalf("bob got %s, alice was told %s", m.Raw, f.Raw)
		}
	}
	if n := in.inspect.HLen(ctx, g.route.Prefix+"sess:bob").Val(); n != 1 {
		t.Errorf("bob has %d sessions in Redis after reconnecting, want 1", n)
	}
	g.awaitReady(200, 10*time.Second)

	n := awaitGoroutinesAtMost(t, base+slack, 30*time.Second)
	t.Logf("goroutines: %d before the outage, %d after the recovery (allowed %d); Redis stopped at +0, down at +%v, up at +%v",
		base, n, base+slack, tDown.Sub(tStop).Round(time.Millisecond), tUp.Sub(tStop).Round(time.Millisecond))

	rtr.stop()
	g.stop()
	checkLeftovers(t, before, "after the gateway and the router stopped")
}

// With no router running when Redis loses its data, nothing can raise the
// seq counters: every send is refused, promptly and with a reason, for as
// long as that lasts; a router started later restores the log and sends
// carry on with the next seq.
func TestAfterRedisLostItsDataSendsAreRefusedUntilARouterRestoresTheLog(t *testing.T) {
	const (
		redisTimeout = time.Second
		refuseFor    = 2 * time.Second // longer than a heartbeat interval
	)
	bound := 2*redisTimeout + time.Second
	in := startInfra(t)
	before := settledGoroutines(t)
	g := in.startGateway("gw-loss", func(c *gateway.Config) { c.RedisTimeout = redisTimeout })
	alice, bob := g.dial("alice"), g.dial("bob")
	warm := warmUp(t, alice, bob, 3, "before the loss")
	firstSent, lastSeq := warm[0], warm[len(warm)-1].Seq

	in.stopRedis()
	in.wipeRedis()
	in.startRedis()
	tUp := time.Now()
	if in.restored() {
		t.Fatal("the restored marker is set in the new, empty Redis")
	}

	// Refused until a router runs: first (while the Redis clients
	// reconnect) perhaps as unavailable, then as being restored, for as
	// long as we keep trying.
	pc := pace(alice, "bob", "n", 200*time.Millisecond)
	restoring, ok := alice.await(0, 10*time.Second, func(f wsclient.Frame) bool {
		return f.Type == "error" && strings.HasPrefix(f.CID, "n-") && strings.Contains(f.Message, "being restored")
	})
	if !ok {
		pc.halt(t)
		t.Fatalf("no send was refused as being restored within 10s of Redis's restart; alice: %s", alice.describe())
	}
	pc.awaitSendsAfter(t, restoring.At.Add(refuseFor), 1, 30*time.Second)
	sends := pc.halt(t)
	deadline := time.Now().Add(2 * bound)
	for _, s := range sends {
		alice.await(0, time.Until(deadline), isAnswer(s.CID))
	}
	var lat []time.Duration
	seenRestoring := false
	for _, a := range answers(sends, alice.snapshot()) {
		switch {
		case !a.Ok:
			t.Errorf("send %s was never answered", a.CID)
		case a.Answer.Type != "error" || a.Answer.Code != "unavailable" || a.Answer.RetryAfterMS <= 0:
			t.Errorf("send %s with no router running answered %s, want unavailable", a.CID, a.Answer.Raw)
		case strings.Contains(a.Answer.Message, "being restored"):
			seenRestoring = true
			lat = append(lat, a.Latency)
			if a.Latency > redisTimeout {
				t.Errorf("send %s was refused as being restored only after %v, over REDIS_TIMEOUT", a.CID, a.Latency.Round(time.Millisecond))
			}
		case seenRestoring:
			t.Errorf("send %s answered %s after sends had been refused as being restored", a.CID, a.Answer.Raw)
		}
	}
	t.Logf("with no router: first \"being restored\" answer %v after Redis was back; %d sends refused over %v, \"being restored\" answers %s",
		restoring.At.Sub(tUp).Round(time.Millisecond), len(sends), refuseFor, latencyStats(lat))
	if in.restored() {
		t.Error("the restored marker was set with no router running")
	}
	if r := g.ready(); r.Status != 503 || r.Checks["redis"] != "ok" || !strings.Contains(r.Checks["sends"], "being restored") {
		t.Errorf("readyz while sends are refused as being restored: %d %v, want 503 with the reason", r.Status, r.Checks)
	}

	// A router starts and restores the log.
	tRouter := time.Now()
	rtr := in.startRouter(nil)
	pc = pace(alice, "bob", "m", 200*time.Millisecond)
	first, ok := alice.await(0, restoreLimit, func(f wsclient.Frame) bool { return f.Type == "sent" && strings.HasPrefix(f.CID, "m-") })
	sends = pc.halt(t)
	if !ok {
		t.Fatalf("no send was accepted within %v of the router's start; alice: %s", restoreLimit, alice.describe())
	}
	checkRestoreTime(t, first.At.Sub(tRouter))
	t.Logf("first send accepted %v after the router started (%d sends tried since)", first.At.Sub(tRouter).Round(time.Millisecond), len(sends))
	if first.Seq != lastSeq+1 {
		t.Errorf("the first send accepted after the restore got seq %d, want %d: %s", first.Seq, lastSeq+1, first.Raw)
	}
	if m := bob.expect(0, 10*time.Second, "bob (connected through the loss) gets it", isMessage(first.CID)); m.ID != first.ID {
		t.Errorf("bob got %s, alice was told %s", m.Raw, first.Raw)
	}
	// The restore sets the markers of all 16,384 slots in one pipeline:
	// a send into a slot set early is accepted a moment before the last
	// marker is set, and readiness follows within that moment.
	testkit.Eventually(t, 2*time.Second, "readyz 200 once sends are accepted again", func() bool {
		return g.ready().Status == 200
	})

	// A retry of a pre-loss cid returns the original message; a retry of a
	// refused one is accepted now, with a new seq.
	mark := alice.count()
	alice.send(firstSent.CID, "bob", "before the loss")
	if f := alice.expect(mark, bound, "retry of a pre-loss cid", isAnswer(firstSent.CID)); f.Type != "sent" || f.ID != firstSent.ID || f.Seq != firstSent.Seq {
		t.Errorf("retry of pre-loss cid %s answered %s, first answer %s", firstSent.CID, f.Raw, firstSent.Raw)
	}
	mark = alice.count()
	alice.send("n-000", "bob", "paced n-000")
	if f := alice.expect(mark, bound, "retry of a refused cid", isAnswer("n-000")); f.Type != "sent" || f.Seq <= first.Seq {
		t.Errorf("retry of refused cid n-000 answered %s after seq %d", f.Raw, first.Seq)
	}

	rtr.stop()
	g.stop()
	checkLeftovers(t, before, "after the gateway and the router stopped")
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
