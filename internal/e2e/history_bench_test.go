//go:build integration

package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/kafkabus"
	"github.com/switchboard-chat/switchboard/internal/wsclient"
)

// BenchmarkHistoryPage measures one `history` page of 50 over WebSocket,
// end to end (gateway, Redis, and for old pages chat-log), in a
// conversation of 20,000 messages whose partition also carries 40,000
// messages of 400 other conversations. It reports the median and 99th
// percentile page time.
func BenchmarkHistoryPage(b *testing.B) {
	const mine, others, window = 20000, 40000, 1000
	c := newCluster(b)
	c.historyWindow = window
	g := c.startGateway("gw-1")
	c.startRouter()
	conv := chat.DirectConv("alice", "bob")
	c.fillLog(b, conv, mine, others)
	bob := c.dial(g, "bob")
	for _, bc := range []struct {
		name   string
		lo, hi int64 // before is drawn from [lo, hi)
	}{
		{"window", mine - window + 51, mine + 1},
		{"log", 51, mine - window},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var times []time.Duration
			for b.Loop() {
				before := bc.lo + rand.Int64N(bc.hi-bc.lo)
				start := time.Now()
				p := benchPage(b, bob, string(conv), before)
				times = append(times, time.Since(start))
				if len(p.Messages) != 50 || p.Messages[0].Seq != before-1 {
					b.Fatalf("page before %d: %d messages from seq %d", before, len(p.Messages), p.Messages[0].Seq)
				}
			}
			slices.Sort(times)
			b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(times[len(times)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}

func benchPage(b *testing.B, cl *wsclient.Client, conv string, before int64) wsclient.Frame {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.SendJSON(ctx, map[string]any{"type": "history", "conv": conv, "before": before, "limit": 50}); err != nil {
		b.Fatal(err)
	}
	f, err := cl.WaitFor(ctx, func(f wsclient.Frame) bool { return f.Type == "history" || f.Type == "error" })
	if err != nil || f.Type != "history" {
		b.Fatalf("history: %s %v", f.Raw, err)
	}
	return f
}

// fillLog writes n messages of conv (seq 1..n) and `others` messages of 400
// other direct conversations, interleaved, straight to chat-log, and waits
// until the router applied them all.
func (c *cluster) fillLog(tb testing.TB, conv chat.ConvID, n, others int) {
	tb.Helper()
	p, err := kafkabus.NewProducer(c.kafka())
	if err != nil {
		tb.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	seqs := map[chat.ConvID]int64{}
	var batch []kafkabus.Record
	flush := func() {
		if err := p.Produce(ctx, batch); err != nil {
			tb.Fatal(err)
		}
		batch = batch[:0]
	}
	now := time.Now()
	for i := 0; i < n+others; i++ {
		cv := conv
		if i%(1+others/n) != 0 || seqs[conv] == int64(n) {
			cv = chat.DirectConv("alice", chat.UserID(fmt.Sprintf("u%d", i%400)))
		}
		seqs[cv]++
		m := &chat.Message{ID: chat.NewMessageID(now), Conv: cv, Seq: seqs[cv], From: "alice", Body: fmt.Sprintf("message %d of %s", seqs[cv], cv), TS: now.UnixMilli()}
		batch = append(batch, kafkabus.Record{Topic: c.chatLog, Key: []byte(cv), Value: (&chat.LogRecord{Type: chat.TypeMessage, Message: m}).Encode()})
		if len(batch) == 1000 {
			flush()
		}
	}
	if len(batch) > 0 {
		flush()
	}
	if seqs[conv] != int64(n) {
		tb.Fatalf("wrote %d messages of %s, want %d", seqs[conv], conv, n)
	}
	eventually(tb, 3*time.Minute, "the router applied the log", func() bool {
		end, err1 := c.admin.EndOffsets(ctx, c.chatLog)
		applied, err2 := c.store().Applied(ctx, c.chatLog)
		if err1 != nil || err2 != nil {
			return false
		}
		for p, e := range end {
			if applied[p] < e {
				return false
			}
		}
		return true
	})
}
