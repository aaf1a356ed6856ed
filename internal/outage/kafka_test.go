//go:build integration

package outage

import (
	"strings"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/gateway"
	"github.com/switchboard-chat/switchboard/internal/wsclient"
)

// The broker stops for ten seconds under a gateway and a router. Sends
// are answered unavailable in time while it is down and succeed again as
// soon as it is back; the consumers (the gateway's delivery consumer, the
// router's chat-log consumer) rejoin their groups after the restart and
// resume within resumeBound.
func TestWhileKafkaIsDownForTenSecondsSendsAreAnsweredUnavailableInTimeAndSucceedAgainOnceItIsBackWithoutRestartingTheGateway(t *testing.T) {
	const (
		produceTimeout = 2 * time.Second
		outage         = 10 * time.Second
		every          = 200 * time.Millisecond
		slack          = 10 // goroutines
		// resumeBound bounds how long after the broker is back live
		// delivery and materialization resume. A consumer rejoins its group
		// as a new member, and the restarted broker waits for the old
		// member's session (6 s) to time out before the rebalance completes.
		resumeBound = 10 * time.Second
	)
	bound := produceTimeout + time.Second
	in := startInfra(t)
	before := settledGoroutines(t)
	g := in.startGateway("gw-kafka", func(c *gateway.Config) { c.ProduceTimeout = produceTimeout })
	rtr := in.startRouter(nil)
	alice, bob := g.dial("alice"), g.dial("bob")
	conv := chat.DirectConv("alice", "bob")

	warm := warmUp(t, alice, bob, 3, "before the outage")
	warmSeq := warm[len(warm)-1].Seq
	// The router materializes as it goes.
	for deadline := time.Now().Add(30 * time.Second); in.latestSeq(conv) < warmSeq; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the router materialized seq %d of %s, want %d", in.latestSeq(conv), conv, warmSeq)
		}
	}
	if r := g.ready(); r.Status != 200 {
		t.Fatalf("readyz before the outage: %d %v", r.Status, r.Checks)
	}
	base := settledGoroutines(t)
	t.Logf("goroutines before the outage: %d", base)

	// alice keeps sending to bob, with a new cid every 200 ms, through the
	// whole outage.
	pc := pace(alice, "bob", "k", every)
	alice.expect(0, 15*time.Second, "a paced send answered before the outage", isAnswer("k-000"))

	tStop := time.Now()
	in.stopKafka()
	tDown := time.Now()
	r := g.awaitReady(503, 10*time.Second)
	t.Logf("readyz while Kafka is down: %d in %v, checks %v", r.Status, r.Took.Round(time.Millisecond), r.Checks)
	checkNotReady(t, r, "kafka")

	// The broker stays down for the whole outage; meanwhile the answers
	// are collected by alice's reader.
	time.Sleep(time.Until(tDown.Add(outage)))
	tStart := time.Now()
	startTook := in.startKafka()
	tUp := time.Now()

	issuedAt := func() map[string]time.Time {
		m := make(map[string]time.Time)
		for _, s := range pc.sends() {
			m[s.CID] = s.At
		}
		return m
	}
	// Recovery: the first sent for a send issued after the broker was gone.
	recovered, ok := alice.await(0, 60*time.Second, func(f wsclient.Frame) bool {
		if f.Type != "sent" || !strings.HasPrefix(f.CID, "k-") {
			return false
		}
		at, known := issuedAt()[f.CID]
		return known && !at.Before(tDown)
	})
	if !ok {
		pc.halt(t)
		t.Fatalf("no send succeeded within 60s of the broker's restart; alice: %s", alice.describe())
	}
	t.Logf("first sent after the outage: cid %s, %v after the broker reported ready (start took %v)",
		recovered.CID, recovered.At.Sub(tUp).Round(time.Millisecond), startTook.Round(time.Millisecond))

	// Keep sending for ten more sends after the recovery, then stop.
	pc.awaitSendsAfter(t, recovered.At, 10, 30*time.Second)
	sends := pc.halt(t)
	deadline := time.Now().Add(2 * bound)
	for _, s := range sends {
		alice.await(0, time.Until(deadline), isAnswer(s.CID))
	}

	// Every send is answered within the bound; while the broker is down
	// with unavailable (and the cid), after the recovery with sent.
	res := answers(sends, alice.snapshot())
	var failedLat, outageLat []time.Duration
	var nSent, nUnavail, nLate int
	var firstFailed *answered
	var maxLat time.Duration
	for i := range res {
		a := &res[i]
		if !a.Ok {
			t.Errorf("send %s (issued %v after the broker stopped) was never answered",
				a.CID, a.At.Sub(tStop).Round(time.Millisecond))
			continue
		}
		answeredAt := a.Answer.At
		duringOutage := !answeredAt.Before(tStop) && !a.At.After(tUp)
		if duringOutage {
			outageLat = append(outageLat, a.Latency)
		}
		maxLat = max(maxLat, a.Latency)
		if a.Latency > bound {
			nLate++
			t.Errorf("send %s issued at +%v (relative to the stop) answered %s after %v, over ProduceTimeout+1s = %v",
				a.CID, a.At.Sub(tStop).Round(time.Millisecond), a.Answer.Type, a.Latency.Round(time.Millisecond), bound)
		}
		switch a.Answer.Type {
		case "sent":
			nSent++
			if !a.At.Before(tDown) && answeredAt.Before(tStart) {
				t.Errorf("send %s was answered sent while no broker was running: %s", a.CID, a.Answer.Raw)
			}
		case "error":
			nUnavail++
			failedLat = append(failedLat, a.Latency)
			if a.Answer.Code != "unavailable" || a.Answer.RetryAfterMS <= 0 {
				t.Errorf("send %s answered %s, want unavailable with retry_after_ms", a.CID, a.Answer.Raw)
			}
			if a.At.After(recovered.At) {
				t.Errorf("send %s issued after the recovery failed: %s", a.CID, a.Answer.Raw)
			}
			if firstFailed == nil && !a.At.Before(tDown) {
				firstFailed = a
			}
		}
		if !a.At.Before(tDown) && answeredAt.Before(tStart) && a.Answer.Type != "error" {
			t.Errorf("send %s issued and answered while the broker was down got %s", a.CID, a.Answer.Raw)
		}
	}
	t.Logf("paced sends: %d, sent %d, unavailable %d, over the bound %d; max latency %v",
		len(res), nSent, nUnavail, nLate, maxLat.Round(time.Millisecond))
	t.Logf("unavailable answers: %s", latencyStats(failedLat))
	t.Logf("answers to sends around the outage (answered after the stop began, issued before the broker was ready): %s", latencyStats(outageLat))
	if firstFailed == nil {
		t.Fatal("no send failed while the broker was down")
	}

	// bob gets every acknowledged message, with the id alice was given.
	var acked []answered
	for _, a := range res {
		if a.Ok && a.Answer.Type == "sent" {
			acked = append(acked, a)
		}
	}
	deadline = time.Now().Add(30 * time.Second)
	var firstAfter time.Time
	for _, a := range acked {
		m, ok := bob.await(0, time.Until(deadline), isMessage(a.CID))
		if !ok {
			t.Errorf("bob never got %s (acknowledged as %s)", a.CID, a.Answer.Raw)
			continue
		}
		if m.ID != a.Answer.ID || m.Seq != a.Answer.Seq {
			t.Errorf("bob got %s for %s, alice was told %s", m.Raw, a.CID, a.Answer.Raw)
		}
		if !a.At.Before(tDown) && (firstAfter.IsZero() || m.At.Before(firstAfter)) {
			firstAfter = m.At
		}
	}
	if firstAfter.IsZero() {
		t.Fatal("bob received no message sent during or after the outage")
	}
	t.Logf("live delivery resumed (bob's first delivery of a message sent since the stop) %v after the broker reported ready; the first send was accepted %v after it",
		firstAfter.Sub(tUp).Round(time.Millisecond), recovered.At.Sub(tUp).Round(time.Millisecond))
	if d := firstAfter.Sub(tUp); d > resumeBound {
		t.Errorf("live delivery resumed %v after the broker was back, over %v", d.Round(time.Millisecond), resumeBound)
	}
	// The router materializes again: its history reaches the first message
	// accepted after the outage.
	for deadline := tUp.Add(30 * time.Second); in.latestSeq(conv) < recovered.Seq; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the router materialized %s only up to seq %d within 30s of the broker's restart, want %d", conv, in.latestSeq(conv), recovered.Seq)
		}
	}
	materialized := time.Now()
	t.Logf("the router materialized seq %d (the first accepted after the outage) %v after the broker reported ready", recovered.Seq, materialized.Sub(tUp).Round(time.Millisecond))
	if d := materialized.Sub(tUp); d > resumeBound {
		t.Errorf("the router resumed materializing %v after the broker was back, over %v", d.Round(time.Millisecond), resumeBound)
	}

	// A retry of a cid that failed during the outage is acknowledged, and
	// a second retry returns the same message.
	body := "paced " + firstFailed.CID
	mark := alice.count()
	alice.send(firstFailed.CID, "bob", body)
	retry := alice.expect(mark, bound+time.Second, "the retry's answer", isAnswer(firstFailed.CID))
	if retry.Type != "sent" {
		t.Fatalf("retry of %s after the recovery answered %s", firstFailed.CID, retry.Raw)
	}
	mark = alice.count()
	alice.send(firstFailed.CID, "bob", body)
	again := alice.expect(mark, bound+time.Second, "the second retry's answer", isAnswer(firstFailed.CID))
	if again.Type != "sent" || again.ID != retry.ID || again.Seq != retry.Seq || again.TS != retry.TS {
		t.Errorf("second retry of %s answered %s, first retry %s", firstFailed.CID, again.Raw, retry.Raw)
	}
	got := bob.expect(0, 15*time.Second, "bob gets the retried message", isMessage(firstFailed.CID))
	if got.ID != retry.ID || got.Seq != retry.Seq || got.Body != body {
		t.Errorf("bob got %s for the retried cid, alice was told %s", got.Raw, retry.Raw)
	}
	lastSeq := acked[len(acked)-1].Answer.Seq
	t.Logf("retried cid %s (failed %v after the stop): sent with seq %d (latest paced seq %d), id %s",
		firstFailed.CID, firstFailed.At.Sub(tStop).Round(time.Millisecond), retry.Seq, lastSeq, retry.ID)

	// No two messages of the conversation share a seq.
	bySeq := make(map[int64]string)
	for _, f := range bob.snapshot() {
		if f.Type != "message" || f.Conv != string(conv) {
			continue
		}
		if id, dup := bySeq[f.Seq]; dup && id != f.ID {
			t.Errorf("seq %d of %s was given to %s and %s", f.Seq, conv, id, f.ID)
		}
		bySeq[f.Seq] = f.ID
	}

	g.awaitReady(200, 30*time.Second)

	n := awaitGoroutinesAtMost(t, base+slack, 30*time.Second)
	t.Logf("goroutines: %d before the outage, %d after the recovery (allowed %d)", base, n, base+slack)

	// Every acknowledged message is in chat-log.
	want := map[string]bool{retry.ID: true}
	for _, a := range acked {
		want[a.Answer.ID] = true
	}
	msgs := in.chatLog("chat-log", hasIDs(want), 60*time.Second)
	have := make(map[string]int)
	failedCIDs := make(map[string]bool)
	for _, a := range res {
		if a.Ok && a.Answer.Type == "error" && a.CID != firstFailed.CID {
			failedCIDs[a.CID] = true
		}
	}
	var inLogUnacked []string
	for _, m := range msgs {
		have[m.ID]++
		if m.From == "alice" && failedCIDs[m.CID] {
			inLogUnacked = append(inLogUnacked, m.CID)
		}
	}
	for id := range want {
		if have[id] == 0 {
			t.Errorf("acknowledged message %s is not in chat-log", id)
		}
	}
	t.Logf("chat-log: %d records; %d cids answered unavailable (and not retried) are in it anyway: %v; the retried cid's record appears %d times",
		len(msgs), len(inLogUnacked), inLogUnacked, have[retry.ID])
	// A produce that timed out may still land later, so the log's order
	// need not follow seq; no seq may belong to two messages, though.
	checkConvLog(t, msgs, conv, false)

	rtr.stop()
	g.stop()
	checkLeftovers(t, before, "after the gateway and the router stopped")
}
