//go:build integration

package e2e

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/kafkabus"
	"github.com/switchboard-chat/switchboard/internal/wsclient"
)

func TestReceiptsReachTheOtherMemberAndAreMaterialized(t *testing.T) {
	c := newCluster(t)
	gw1, gw2 := c.startGateway("gw-1"), c.startGateway("gw-2")
	c.startRouter()
	alice, bob, bob2 := c.dial(gw1, "alice"), c.dial(gw2, "bob"), c.dial(gw1, "bob")
	ctx := context.Background()
	var last wsclient.Frame
	for _, cid := range []string{"r1", "r2", "r3"} {
		if err := alice.SendTo(ctx, cid, "bob", "read me"); err != nil {
			t.Fatal(err)
		}
		last = expect(t, alice, "sent", isSent(cid))
	}
	expect(t, bob, "bob gets r3", isMessage("r3"))
	receipt := func(seq int64, status string) {
		if err := bob.SendJSON(ctx, map[string]any{"type": "receipt", "conv": last.Conv, "seq": seq, "status": status}); err != nil {
			t.Fatal(err)
		}
	}
	isReceipt := func(status string) func(wsclient.Frame) bool {
		return func(f wsclient.Frame) bool { return f.Type == "receipt" && f.Status == status }
	}
	receipt(last.Seq, "delivered")
	receipt(last.Seq, "read")
	for name, cl := range map[string]*wsclient.Client{"alice": alice, "bob's other session": bob2} {
		f := expect(t, cl, name+" gets the read receipt", isReceipt("read"))
		if f.User != "bob" || f.Conv != last.Conv || f.Seq != last.Seq || f.TS == 0 {
			t.Fatalf("%s got %s", name, f.Raw)
		}
	}
	// A lower mark never lowers what is stored.
	receipt(1, "read")
	st := c.store()
	eventually(t, 20*time.Second, "the router to apply the receipts", func() bool {
		marks, err := st.Receipts(ctx, chat.ConvID(last.Conv))
		if err != nil {
			return false
		}
		got := map[string]int64{}
		for _, m := range marks {
			got[string(m.User)+"|"+m.Status] = m.Seq
		}
		return got["bob|read"] == last.Seq && got["bob|delivered"] == last.Seq && len(got) == 2
	})
	// A new session of alice learns bob's marks from sync.
	alice2 := c.dial(gw2, "alice")
	if err := alice2.SendJSON(ctx, map[string]any{"type": "sync", "since": map[string]any{last.Conv: last.Seq}}); err != nil {
		t.Fatal(err)
	}
	f := expect(t, alice2, "bob's read mark in sync", func(f wsclient.Frame) bool {
		return isReceipt("read")(f) && f.Seq == last.Seq
	})
	if f.User != "bob" || f.Seq != last.Seq {
		t.Fatalf("sync receipt %s", f.Raw)
	}
	expect(t, alice2, "synced", func(f wsclient.Frame) bool { return f.Type == "synced" })
	// Receipts for a conversation one is not in are refused.
	if err := bob.SendJSON(ctx, map[string]any{"type": "receipt", "conv": "dm:alice:carol", "seq": 1, "status": "read"}); err != nil {
		t.Fatal(err)
	}
	if f := expect(t, bob, "error", func(f wsclient.Frame) bool { return f.Type == "error" }); f.Code != "forbidden" {
		t.Fatalf("foreign receipt answered %s", f.Raw)
	}
}

func TestTypingIsRelayedThrottledAndStopsByItself(t *testing.T) {
	c := newCluster(t)
	gw1, gw2 := c.startGateway("gw-1"), c.startGateway("gw-2")
	alice, bob := c.dial(gw1, "alice"), c.dial(gw2, "bob")
	ctx := context.Background()
	typing := func(state string) {
		if err := alice.SendJSON(ctx, map[string]any{"type": "typing", "to": "bob", "state": state}); err != nil {
			t.Fatal(err)
		}
	}
	isTyping := func(f wsclient.Frame) bool { return f.Type == "typing" }
	typing("start")
	f := expect(t, bob, "typing start", isTyping)
	if !strings.Contains(string(f.Raw), `"state":"start"`) || f.User != "alice" || f.Conv != "dm:alice:bob" {
		t.Fatalf("bob got %s", f.Raw)
	}
	typing("start") // within the throttle window: not relayed
	typing("stop")
	f = expect(t, bob, "typing stop", isTyping)
	if !strings.Contains(string(f.Raw), `"state":"stop"`) {
		t.Fatalf("after a throttled start bob got %s, want the stop", f.Raw)
	}
	// A start after the throttle window, then silence: the gateway stops it.
	eventually(t, 10*time.Second, "the throttle window to pass", func() bool {
		typing("start")
		cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		_, err := bob.WaitFor(cctx, isTyping)
		return err == nil
	})
	start := time.Now()
	f = expect(t, bob, "the automatic stop", isTyping)
	if !strings.Contains(string(f.Raw), `"state":"stop"`) || time.Since(start) > 8*time.Second {
		t.Fatalf("got %s after %v", f.Raw, time.Since(start))
	}
}

func TestPresenceReachesUsersWhoShareADirectConversation(t *testing.T) {
	c := newCluster(t)
	gw1, gw2 := c.startGateway("gw-1"), c.startGateway("gw-2")
	c.startRouter()
	alice, bob, carol := c.dial(gw1, "alice"), c.dial(gw2, "bob"), c.dial(gw2, "carol")
	ctx := context.Background()
	if err := alice.SendTo(ctx, "hi", "bob", "hello"); err != nil {
		t.Fatal(err)
	}
	expect(t, alice, "sent", isSent("hi"))
	eventually(t, 20*time.Second, "the conversation in alice's list", func() bool {
		convs, _ := c.store().Conversations(ctx, "bob")
		return len(convs) == 1
	})
	isPresence := func(f wsclient.Frame) bool { return f.Type == "presence" && f.User == "bob" }
	bob.Close()
	if f := expect(t, alice, "bob offline", isPresence); strings.Contains(string(f.Raw), `"online":true`) || f.TS == 0 {
		t.Fatalf("alice got %s", f.Raw)
	}
	c.dial(gw1, "bob") // back online
	if f := expect(t, alice, "bob online", isPresence); !strings.Contains(string(f.Raw), `"online":true`) {
		t.Fatalf("alice got %s", f.Raw)
	}
	// A second session is not news; carol shares no conversation with bob.
	_ = c.dial(gw2, "bob")
	if err := carol.SendJSON(ctx, map[string]any{"type": "ping", "t": 1}); err != nil {
		t.Fatal(err)
	}
	if f := expect(t, carol, "carol's pong", func(f wsclient.Frame) bool { return f.Type != "message" }); f.Type != "pong" {
		t.Fatalf("carol got %s", f.Raw)
	}
	// Full sync tells a new session who is online.
	alice2 := c.dial(gw2, "alice")
	if err := alice2.SendJSON(ctx, map[string]any{"type": "sync"}); err != nil {
		t.Fatal(err)
	}
	if f := expect(t, alice2, "bob's presence in sync", isPresence); !strings.Contains(string(f.Raw), `"online":true`) {
		t.Fatalf("sync presence %s", f.Raw)
	}
}

func TestACopyForAUserWhoMovedIsForwardedOnceAndNeverLoops(t *testing.T) {
	c := newCluster(t)
	gw1, gw2 := c.startGateway("gw-1"), c.startGateway("gw-2")
	bob := c.dial(gw1, "bob")
	producer, err := kafkabus.NewProducer(c.kafka())
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	ctx := context.Background()
	copyTo := func(gw *gw, id string, hops int) {
		m := &chat.Message{ID: id, Conv: "dm:alice:bob", Seq: 1, From: "alice", To: "bob", Body: "moved", TS: time.Now().UnixMilli(), CID: id}
		d := &chat.Delivery{Type: chat.TypeMessage, To: []chat.UserID{"bob"}, Hops: hops, Message: m}
		if err := producer.Produce(ctx, []kafkabus.Record{{Topic: gw.id.Topic(), Key: []byte("bob"), Value: d.Encode()}}); err != nil {
			t.Fatal(err)
		}
	}
	// A copy routed to gw-2 while bob is on gw-1 reaches him through one forward.
	copyTo(gw2, "fwd-1", 0)
	expect(t, bob, "the forwarded copy", isMessage("fwd-1"))
	// A copy that was already forwarded is not forwarded again.
	copyTo(gw2, "fwd-2", 1)
	eventually(t, 10*time.Second, "gw-2 to drop the second-hop copy", func() bool {
		return metric(t, gw2, `switchboard_gateway_drops_total{reason="forwarded_not_connected"}`) >= 1
	})
	if n := metric(t, gw2, "switchboard_gateway_forwarded_total"); n != 1 {
		t.Fatalf("gw-2 forwarded %v copies, want 1", n)
	}
	_ = gw1
}

// metric reads one sample from a gateway's /metrics (0 when absent).
func metric(t *testing.T, g *gw, name string) float64 {
	t.Helper()
	resp, err := http.Get(g.adminURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				return f
			}
		}
	}
	return 0
}
