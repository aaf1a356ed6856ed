//go:build integration

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/switchboard-chat/switchboard/internal/wsclient"
)

// syncResult is what one sync returned.
type syncResult struct {
	messages []wsclient.Frame
	batches  map[int]int // batch number → messages in it
	synced   wsclient.Frame
}

func doSync(t *testing.T, cl *wsclient.Client, req map[string]any) syncResult {
	t.Helper()
	req["type"] = "sync"
	if err := cl.SendJSON(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	r := syncResult{batches: map[int]int{}}
	r.synced = expect(t, cl, "synced", func(f wsclient.Frame) bool {
		if f.Type == "message" && f.Batch > 0 {
			r.messages = append(r.messages, f)
			r.batches[f.Batch]++
		}
		return f.Type == "synced" || f.Type == "error"
	})
	if r.synced.Type != "synced" {
		t.Fatalf("sync answered %s", r.synced.Raw)
	}
	return r
}

func TestAnOfflineUserGetsEverythingOnReconnectInBatchesOfAtMost50(t *testing.T) {
	c := newCluster(t)
	gw1, gw2 := c.startGateway("gw-1"), c.startGateway("gw-2")
	c.startRouter()
	alice, bob := c.dial(gw1, "alice"), c.dial(gw2, "bob")
	ctx := context.Background()
	send := func(cid, to, conv string) wsclient.Frame {
		var err error
		if to != "" {
			err = alice.SendTo(ctx, cid, to, "body "+cid)
		} else {
			err = alice.SendConv(ctx, cid, conv, "body "+cid)
		}
		if err != nil {
			t.Fatal(err)
		}
		return expect(t, alice, "sent "+cid, isSent(cid))
	}
	// bob holds the first 5 DMs and 2 public messages, then goes offline.
	var held = map[string]int64{}
	for i := 0; i < 5; i++ {
		f := send(fmt.Sprintf("before%d", i), "bob", "")
		expect(t, bob, "live DM", isMessage(f.CID))
		held[f.Conv] = f.Seq
	}
	for i := 0; i < 2; i++ {
		f := send(fmt.Sprintf("pub-before%d", i), "", "public")
		expect(t, bob, "live public", isMessage(f.CID))
		held[f.Conv] = f.Seq
	}
	bob.Close()

	var missed []wsclient.Frame
	for i := 0; i < 130; i++ {
		missed = append(missed, send(fmt.Sprintf("dm%d", i), "bob", ""))
	}
	for i := 0; i < 7; i++ {
		missed = append(missed, send(fmt.Sprintf("pub%d", i), "", "public"))
	}

	bob = c.dial(gw1, "bob") // back, on the other gateway
	since := map[string]any{}
	for k, v := range held {
		since[k] = v
	}
	r := doSync(t, bob, map[string]any{"since": since})
	got := map[string]wsclient.Frame{}
	for _, f := range r.messages {
		if _, dup := got[f.ID]; dup {
			t.Fatalf("sync sent %s twice", f.ID)
		}
		got[f.ID] = f
	}
	for _, s := range missed {
		m, ok := got[s.ID]
		if !ok {
			t.Fatalf("sync lacks %s (%s seq %d)", s.CID, s.Conv, s.Seq)
		}
		if m.Seq != s.Seq || m.Conv != s.Conv || m.Body != "body "+s.CID {
			t.Fatalf("sync returned %s for %s", m.Raw, s.Raw)
		}
	}
	if len(r.messages) != len(missed) {
		t.Fatalf("sync returned %d messages, %d were missed", len(r.messages), len(missed))
	}
	for b, n := range r.batches {
		if n > 50 {
			t.Fatalf("batch %d has %d messages", b, n)
		}
	}
	if len(r.batches) < 3 {
		t.Fatalf("130+7 messages came in %d batches", len(r.batches))
	}
	// Each conversation's messages come in seq order.
	last := map[string]int64{}
	for _, f := range r.messages {
		if f.Seq <= last[f.Conv] {
			t.Fatalf("%s: seq %d after %d", f.Conv, f.Seq, last[f.Conv])
		}
		last[f.Conv] = f.Seq
	}
	dm, pub := missed[129], missed[136]
	if r.synced.Convs[dm.Conv] != dm.Seq || r.synced.Convs["public"] != pub.Seq {
		t.Fatalf("synced %s, want %s=%d public=%d", r.synced.Raw, dm.Conv, dm.Seq, pub.Seq)
	}
	// Synced again from there: nothing more.
	again := doSync(t, bob, map[string]any{"since": map[string]any{dm.Conv: dm.Seq, "public": pub.Seq}})
	if len(again.messages) != 0 {
		t.Fatalf("a caught-up sync returned %d messages", len(again.messages))
	}
}

func TestANewDeviceGetsTheRecentWindowOfEachConversation(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway("gw-1", func(cfg *gatewayConfig) { cfg.SyncRecent = 20 })
	c.startRouter()
	alice := c.dial(g, "alice")
	ctx := context.Background()
	var lastDM, lastCarol wsclient.Frame
	for i := 0; i < 30; i++ {
		cid := fmt.Sprintf("d%d", i)
		if err := alice.SendTo(ctx, cid, "bob", "x"); err != nil {
			t.Fatal(err)
		}
		lastDM = expect(t, alice, "sent", isSent(cid))
	}
	if err := alice.SendTo(ctx, "c1", "carol", "x"); err != nil {
		t.Fatal(err)
	}
	lastCarol = expect(t, alice, "sent", isSent("c1"))

	bob := c.dial(g, "bob")
	r := doSync(t, bob, map[string]any{"since": map[string]any{}})
	if len(r.messages) != 20 || r.messages[19].ID != lastDM.ID || r.synced.Convs[lastDM.Conv] != lastDM.Seq {
		t.Fatalf("bob's new device got %d messages, synced %s", len(r.messages), r.synced.Raw)
	}
	if _, ok := r.synced.Convs["public"]; !ok {
		t.Fatalf("synced lacks public: %s", r.synced.Raw)
	}
	if _, ok := r.synced.Convs[lastCarol.Conv]; ok {
		t.Fatalf("bob's sync names a conversation he is not in: %s", r.synced.Raw)
	}
	// only: just the named conversation.
	r = doSync(t, bob, map[string]any{"since": map[string]any{lastDM.Conv: lastDM.Seq - 2}, "only": true})
	if len(r.messages) != 2 || len(r.synced.Convs) != 1 {
		t.Fatalf("only-sync: %d messages, synced %s", len(r.messages), r.synced.Raw)
	}
	// Another user's conversation is never synced.
	r = doSync(t, bob, map[string]any{"since": map[string]any{lastCarol.Conv: 0}, "only": true})
	if len(r.messages) != 0 || len(r.synced.Convs) != 0 {
		t.Fatalf("bob synced alice and carol's conversation: %s", r.synced.Raw)
	}
}

func TestASyncReachingBeyondTheHistoryWindowReadsTheRestFromTheLog(t *testing.T) {
	c := newCluster(t)
	c.historyWindow = 10
	g := c.startGateway("gw-1")
	c.startRouter()
	alice := c.dial(g, "alice")
	ctx := context.Background()
	var sent []wsclient.Frame
	for i := 0; i < 25; i++ {
		cid := fmt.Sprintf("w%d", i)
		if err := alice.SendTo(ctx, cid, "bob", "x"); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, expect(t, alice, "sent", isSent(cid)))
	}
	bob := c.dial(g, "bob")
	conv := sent[0].Conv
	r := doSync(t, bob, map[string]any{"since": map[string]any{conv: sent[1].Seq}, "only": true})
	if len(r.messages) != 23 {
		t.Fatalf("got %d messages, want 23", len(r.messages))
	}
	for i, f := range r.messages {
		if f.ID != sent[i+2].ID || f.Seq != sent[i+2].Seq {
			t.Fatalf("message %d is seq %d, want %d", i, f.Seq, sent[i+2].Seq)
		}
	}
	if strings.Contains(string(r.synced.Raw), "truncated") {
		t.Fatalf("synced %s reports a truncation, but the log holds everything", r.synced.Raw)
	}
	// From inside the window: just the rest.
	r = doSync(t, bob, map[string]any{"since": map[string]any{conv: sent[20].Seq}, "only": true})
	if len(r.messages) != 4 || strings.Contains(string(r.synced.Raw), "truncated") {
		t.Fatalf("%d messages, synced %s", len(r.messages), r.synced.Raw)
	}
}
