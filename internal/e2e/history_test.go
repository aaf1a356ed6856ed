//go:build integration

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/kafkabus"
	"github.com/switchboard-chat/switchboard/internal/wsclient"
)

// sendMany sends n direct messages from cl to `to` without waiting for each
// acknowledgement (the gateway batches them) and returns the sent frames in
// send order.
func sendMany(t *testing.T, cl *wsclient.Client, to, prefix string, n int) []wsclient.Frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	errs := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			if err := cl.SendTo(ctx, fmt.Sprintf("%s%d", prefix, i), to, fmt.Sprintf("body %s%d", prefix, i)); err != nil {
				errs <- err
				return
			}
		}
		errs <- nil
	}()
	sent := make(map[string]wsclient.Frame, n)
	for len(sent) < n {
		f, err := cl.WaitFor(ctx, func(f wsclient.Frame) bool { return f.Type == "sent" || f.Type == "error" })
		if err != nil {
			t.Fatalf("after %d of %d acknowledgements: %v", len(sent), n, err)
		}
		if f.Type == "error" {
			t.Fatalf("send refused: %s", f.Raw)
		}
		sent[f.CID] = f
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	out := make([]wsclient.Frame, n)
	for i := range out {
		out[i] = sent[fmt.Sprintf("%s%d", prefix, i)]
	}
	return out
}

// historyPage asks for one history page.
func historyPage(t *testing.T, cl *wsclient.Client, conv string, before int64, limit int) wsclient.Frame {
	t.Helper()
	req := map[string]any{"type": "history", "conv": conv, "limit": limit}
	if before > 0 {
		req["before"] = before
	}
	if err := cl.SendJSON(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	f := expect(t, cl, "history page", func(f wsclient.Frame) bool {
		return f.Type == "history" && f.Conv == conv && f.Before == before || f.Type == "error"
	})
	if f.Type != "history" {
		t.Fatalf("history before %d answered %s", before, f.Raw)
	}
	return f
}

// deleteMessage logs a delete record for m, as the delete endpoint will.
func (c *cluster) deleteMessage(m wsclient.Frame) {
	c.t.Helper()
	p, err := kafkabus.NewProducer(c.kafka())
	if err != nil {
		c.t.Fatal(err)
	}
	defer p.Close()
	d := &chat.Delete{ID: m.ID, Conv: chat.ConvID(m.Conv), By: chat.UserID(m.From), TS: time.Now().UnixMilli()}
	rec := kafkabus.Record{Topic: c.chatLog, Key: []byte(m.Conv), Value: (&chat.LogRecord{Type: chat.TypeDelete, Delete: d}).Encode()}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Produce(ctx, []kafkabus.Record{rec}); err != nil {
		c.t.Fatal(err)
	}
}

func TestSyncAndHistoryReachBackToSeqOneThroughTheLog(t *testing.T) {
	const total, window = 5000, 1000
	c := newCluster(t)
	c.historyWindow = window
	g := c.startGateway("gw-1")
	c.startRouter()
	alice := c.dial(g, "alice")
	sent := sendMany(t, alice, "bob", "m", total)
	conv := sent[0].Conv
	for i := 1; i < total; i++ {
		if sent[i].Seq <= sent[i-1].Seq {
			t.Fatalf("seq %d after %d", sent[i].Seq, sent[i-1].Seq)
		}
	}
	// One deleted message far below the window, one inside it.
	old, recent := sent[10], sent[total-5]
	old.From, recent.From = "alice", "alice"
	c.deleteMessage(old)
	c.deleteMessage(recent)
	deleted := map[string]bool{old.ID: true, recent.ID: true}
	eventually(t, 10*time.Second, "the deletes applied", func() bool {
		n, err := c.rdb.SCard(context.Background(), c.store().DeletedKey(chat.ConvID(conv))).Result()
		return err == nil && n == 2
	})
	check := func(how string, f wsclient.Frame, want wsclient.Frame) {
		t.Helper()
		if f.ID != want.ID || f.Seq != want.Seq || f.Conv != conv || f.From != "alice" {
			t.Fatalf("%s: got %s for seq %d (%s)", how, f.Raw, want.Seq, want.ID)
		}
		if deleted[f.ID] {
			if !f.Deleted || f.Body != "" {
				t.Fatalf("%s: deleted message %d came back as %+v", how, f.Seq, f)
			}
		} else if f.Deleted || f.Body != "body "+want.CID {
			t.Fatalf("%s: message %d has body %q deleted=%v", how, f.Seq, f.Body, f.Deleted)
		}
	}

	// bob was offline for all of it and syncs from 0: all 5,000, once, in
	// order, in batches of at most 50, nothing reported truncated.
	bob := c.dial(g, "bob")
	r := doSync(t, bob, map[string]any{"since": map[string]any{conv: 0}, "only": true})
	if len(r.messages) != total {
		t.Fatalf("sync from 0 returned %d of %d messages (synced %s)", len(r.messages), total, r.synced.Raw)
	}
	for i, f := range r.messages {
		check("sync", f, sent[i])
	}
	for b, n := range r.batches {
		if n > 50 {
			t.Fatalf("batch %d has %d messages", b, n)
		}
	}
	if strings.Contains(string(r.synced.Raw), "truncated") || r.synced.Convs[conv] != sent[total-1].Seq {
		t.Fatalf("synced %s", r.synced.Raw)
	}
	// A sync from the middle of the log-only part returns exactly the rest.
	mid := sent[1234].Seq
	r = doSync(t, bob, map[string]any{"since": map[string]any{conv: mid}, "only": true})
	if len(r.messages) != total-1235 || r.messages[0].Seq != sent[1235].Seq {
		t.Fatalf("sync from seq %d returned %d messages", mid, len(r.messages))
	}

	// History pages, newest first, from the newest back to seq 1.
	var before int64
	var got []wsclient.Frame
	pages := 0
	for {
		p := historyPage(t, bob, conv, before, 100)
		pages++
		if len(p.Messages) > 100 {
			t.Fatalf("a page of %d messages", len(p.Messages))
		}
		got = append(got, p.Messages...)
		if p.NextBefore == 0 {
			break
		}
		if pages > total/100+2 {
			t.Fatalf("more pages than messages allow")
		}
		before = p.NextBefore
	}
	if len(got) != total {
		t.Fatalf("history paged %d of %d messages in %d pages", len(got), total, pages)
	}
	for i, f := range got {
		check("history", f, sent[total-1-i])
	}
	// Someone else's conversation is refused.
	carol := c.dial(g, "carol")
	if err := carol.SendJSON(context.Background(), map[string]any{"type": "history", "conv": conv}); err != nil {
		t.Fatal(err)
	}
	if f := expect(t, carol, "refusal", func(f wsclient.Frame) bool { return f.Type == "error" || f.Type == "history" }); f.Code != "forbidden" {
		t.Fatalf("carol read alice and bob's history: %s", f.Raw)
	}
}
