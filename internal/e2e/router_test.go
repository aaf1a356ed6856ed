//go:build integration

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/route"
	"github.com/switchboard-chat/switchboard/internal/store"
	"github.com/switchboard-chat/switchboard/internal/wsclient"
)

func TestTheRouterMaterializesHistoryFromTheLog(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway("gw-1")
	c.startRouter()
	alice, bob := c.dial(g, "alice"), c.dial(g, "bob")
	ctx := context.Background()
	var sent []wsclient.Frame
	for i := 0; i < 5; i++ {
		cid := fmt.Sprintf("h%d", i)
		if err := alice.SendTo(ctx, cid, "bob", "history "+cid); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, expect(t, alice, "sent", isSent(cid)))
	}
	if err := bob.SendConv(ctx, "p1", "public", "public one"); err != nil {
		t.Fatal(err)
	}
	expect(t, bob, "sent", isSent("p1"))

	st := c.store()
	dm := chat.DirectConv("alice", "bob")
	var hist []*chat.Message
	eventually(t, 20*time.Second, "the router to apply 5 direct messages", func() bool {
		var err error
		hist, err = st.History(ctx, dm, 0, 100)
		return err == nil && len(hist) == 5
	})
	for i, m := range hist {
		if m.ID != sent[i].ID || m.Seq != sent[i].Seq || m.Body != fmt.Sprintf("history h%d", i) || m.From != "alice" || m.To != "bob" {
			t.Fatalf("history[%d] = %+v, sent %s", i, m, sent[i].Raw)
		}
	}
	if after, _ := st.History(ctx, dm, sent[2].Seq, 100); len(after) != 2 || after[0].Seq != sent[3].Seq {
		t.Fatalf("history after seq %d: %d messages", sent[2].Seq, len(after))
	}
	eventually(t, 20*time.Second, "the public message in history", func() bool {
		h, err := st.History(ctx, chat.Public, 0, 100)
		return err == nil && len(h) == 1 && h[0].Body == "public one"
	})
	for _, u := range []chat.UserID{"alice", "bob"} {
		convs, err := st.Conversations(ctx, u)
		if err != nil || len(convs) != 1 || convs[0] != dm {
			t.Fatalf("conversations of %s = %v %v", u, convs, err)
		}
	}
	// Applying a message again changes nothing.
	if err := st.Apply(ctx, &chat.LogRecord{Type: chat.TypeMessage, Message: hist[0]}, store.Position{}); err != nil {
		t.Fatalf("re-apply: %v", err)
	}
	if h, _ := st.History(ctx, dm, 0, 100); len(h) != 5 {
		t.Fatalf("history has %d messages after a re-apply", len(h))
	}
}

func TestTheRouterRestoresALostSeqCounterFromTheLog(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway("gw-1")
	c.startRouter()
	alice := c.dial(g, "alice")
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		cid := fmt.Sprintf("s%d", i)
		if err := alice.SendTo(ctx, cid, "bob", "x"); err != nil {
			t.Fatal(err)
		}
		expect(t, alice, "sent", isSent(cid))
	}
	dm := chat.DirectConv("alice", "bob")
	seqKey := c.table().SeqKey(dm)
	eventually(t, 20*time.Second, "history to hold 3 messages", func() bool {
		h, _ := c.store().History(ctx, dm, 0, 10)
		return len(h) == 3
	})
	c.rdb.Del(ctx, seqKey)
	// Replaying one message (as a rebuild does) raises the counter again.
	h, _ := c.store().History(ctx, dm, 0, 10)
	if err := c.store().Apply(ctx, &chat.LogRecord{Type: chat.TypeMessage, Message: h[2]}, store.Position{}); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.rdb.Get(ctx, seqKey).Int64(); n != h[2].Seq {
		t.Fatalf("seq counter = %d after replay, want %d", n, h[2].Seq)
	}
	if err := alice.SendTo(ctx, "s3", "bob", "x"); err != nil {
		t.Fatal(err)
	}
	if f := expect(t, alice, "sent", isSent("s3")); f.Seq != h[2].Seq+1 {
		t.Fatalf("next seq %d, want %d", f.Seq, h[2].Seq+1)
	}
}

func TestTheJanitorPurgesTheSessionsOfADeadGateway(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway("gw-1")
	c.startRouter()
	live := c.dial(g, "carol")
	ctx := context.Background()

	// A gateway that registered a session, then stopped heartbeating.
	ghost := chat.ServerID("ghost-" + c.name)
	short := route.New(c.rdb, route.Config{Prefix: c.prefix, Lease: time.Millisecond})
	if _, err := short.Heartbeat(ctx, ghost); err != nil {
		t.Fatal(err)
	}
	if _, err := short.AddSession(ctx, "carol", "ghost-session", ghost); err != nil {
		t.Fatal(err)
	}
	if _, err := short.AddSession(ctx, "dave", "ghost-session-2", ghost); err != nil {
		t.Fatal(err)
	}
	sessKey := func(u string) string { return c.prefix + "sess:" + u }
	eventually(t, 10*time.Second, "the janitor to purge the dead gateway", func() bool {
		return c.rdb.HExists(ctx, sessKey("carol"), "ghost-session").Val() == false &&
			c.rdb.Exists(ctx, sessKey("dave")).Val() == 0
	})
	if gws, _ := c.table().LiveGateways(ctx); len(gws) != 1 || gws[0] != g.id {
		t.Fatalf("live gateways %v, want only %s", gws, g.id)
	}
	if n := c.rdb.ZScore(ctx, c.prefix+"gw", string(ghost)).Err(); n == nil {
		t.Fatal("the dead gateway is still registered")
	}
	// carol's live session is untouched and still receives.
	if got := c.rdb.HGet(ctx, sessKey("carol"), live.Hello.Session).Val(); got != string(g.id) {
		t.Fatalf("carol's live session points at %q", got)
	}
	alice := c.dial(g, "alice")
	if err := alice.SendTo(ctx, "j1", "carol", "still there?"); err != nil {
		t.Fatal(err)
	}
	expect(t, live, "carol's live session receives", isMessage("j1"))
}

func TestADrainingGatewayTellsClientsToReconnectAndRemovesItsSessions(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway("gw-1")
	other := c.startGateway("gw-2")
	clients := []*wsclient.Client{c.dial(g, "alice"), c.dial(g, "bob"), c.dial(g, "alice")}
	watcher := c.dial(other, "carol")
	ctx := context.Background()

	stopped := make(chan error, 1)
	go func() { stopped <- g.stop() }()
	for i, cl := range clients {
		f := expect(t, cl, "reconnect frame", func(f wsclient.Frame) bool { return f.Type == "reconnect" })
		if f.AfterMS < 0 || f.AfterMS > 500 || f.Reason == "" {
			t.Fatalf("client %d: reconnect %s, want after_ms within the 500ms drain window", i, f.Raw)
		}
		select {
		case <-cl.Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("client %d still open after the drain", i)
		}
		if st := websocketStatus(cl); st != 1001 {
			t.Fatalf("client %d closed with %d (%v), want 1001", i, st, cl.Err())
		}
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Run returned %v", err)
	}
	for _, u := range []string{"alice", "bob"} {
		if n := c.rdb.HLen(ctx, c.prefix+"sess:"+u).Val(); n != 0 {
			t.Fatalf("%s still has %d sessions after the drain", u, n)
		}
	}
	if gws, _ := c.table().LiveGateways(ctx); len(gws) != 1 || gws[0] != other.id {
		t.Fatalf("live gateways after the drain: %v", gws)
	}
	// The rest of the cluster carries on: alice reconnects to gw-2.
	alice := c.dial(other, "alice")
	if err := alice.SendTo(ctx, "after", "carol", "moved"); err != nil {
		t.Fatal(err)
	}
	expect(t, watcher, "carol receives after the drain", isMessage("after"))
}
