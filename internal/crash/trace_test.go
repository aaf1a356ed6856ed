//go:build integration

package crash

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/kafkabus"
)

// traceInKafka logs where the messages with these ids are in Kafka: their
// chat-log records, and the delivery copies on each gateway's topic (with
// their recipients and hops), with the producer's timestamps. It explains
// a missing message after a test failed.
func (c *cluster) traceInKafka(ids map[string]bool, gws ...*gateway) {
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := kafkabus.Config{Brokers: []string{kafkaAddr}, ClientID: "crash-trace"}
	topics := []string{c.chatLog}
	for _, g := range gws {
		topics = append(topics, "messages-"+g.id)
	}
	found := 0
	for _, topic := range topics {
		end, err := c.admin.EndOffsets(ctx, topic)
		if err != nil {
			c.t.Logf("trace %s: %v", topic, err)
			continue
		}
		for p, e := range end {
			err := kafkabus.Replay(ctx, cfg, topic, p, 0, e, func(_ context.Context, r kafkabus.Record) error {
				var m *chat.Message
				var extra string
				if topic == c.chatLog {
					if lr, err := chat.DecodeLogRecord(r.Value); err == nil {
						m = lr.Message
					}
				} else if d, err := chat.DecodeDelivery(r.Value); err == nil && d.Message != nil {
					m = d.Message
					var to []string
					for _, u := range d.To {
						to = append(to, string(u))
					}
					extra = fmt.Sprintf(" to=[%s] all=%v hops=%d skip=%s", strings.Join(to, ","), d.All, d.Hops, d.SkipSession)
				}
				if m != nil && ids[m.ID] {
					found++
					c.t.Logf("trace: %s/%d@%d produced %s: %s seq %d from %s cid %s%s",
						topic, p, r.Offset, r.Time.Format("15:04:05.000000"), m.ID, m.Seq, m.From, m.CID, extra)
				}
				return nil
			})
			if err != nil {
				c.t.Logf("trace %s/%d: %v", topic, p, err)
			}
		}
	}
	c.t.Logf("trace: %d records name the %d missing messages", found, len(ids))
}
