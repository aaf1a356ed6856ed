//go:build integration

package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/kafkabus"
)

// A receipt far beyond the conversation's latest seq, logged by an older
// gateway that did not refuse it, is clamped when applied and stays
// clamped when the views are rebuilt from the log.
func TestAnOutOfRangeReceiptInTheLogIsClampedLiveAndAfterARebuild(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway("gw-1")
	r := c.startRouter()
	alice := c.dial(g, "alice")
	sent := sendMany(t, alice, "bob", "r", 3)
	conv := chat.ConvID(sent[2].Conv)

	p, err := kafkabus.NewProducer(c.kafka())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bogus := &chat.Receipt{Conv: conv, User: "bob", Seq: 9_000_000_000_000_000, Status: "read", TS: time.Now().UnixMilli()}
	if err := p.Produce(ctx, []kafkabus.Record{{Topic: c.chatLog, Key: []byte(conv),
		Value: (&chat.LogRecord{Type: chat.TypeReceipt, Receipt: bogus}).Encode()}}); err != nil {
		t.Fatal(err)
	}
	marks := func() map[string]int64 {
		rs, err := c.store().Receipts(ctx, conv)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int64{}
		for _, m := range rs {
			out[string(m.User)+"|"+m.Status] = m.Seq
		}
		return out
	}
	want := sent[2].Seq
	eventually(t, 10*time.Second, "the receipt applied", func() bool { return marks()["bob|read"] > 0 })
	if got := marks(); got["bob|read"] != want || got["bob|delivered"] != want {
		t.Fatalf("live apply stored %v, want both marks clamped to %d", got, want)
	}
	if _, err := r.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	if got := marks(); got["bob|read"] != want || got["bob|delivered"] != want {
		t.Fatalf("after a rebuild the marks are %v, want both clamped to %d", got, want)
	}
}
