//go:build integration

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/kafkabus"
)

func TestAGatewayRestartedWithTheSameIDResumesItsTopicFromCommittedOffsets(t *testing.T) {
	c := newCluster(t)
	gw1, gw2 := c.startGateway("gw-1"), c.startGateway("gw-2")
	alice, bob := c.dial(gw1, "alice"), c.dial(gw2, "bob")
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		cid := fmt.Sprintf("old%d", i)
		if err := alice.SendTo(ctx, cid, "bob", "before the restart"); err != nil {
			t.Fatal(err)
		}
		expect(t, bob, "delivered before the restart", isMessage(cid))
	}
	bob.Close()
	if err := gw2.stop(); err != nil {
		t.Fatal(err)
	}
	// Three copies arrive while gw-2 is down.
	producer, err := kafkabus.NewProducer(c.kafka())
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	for i := 0; i < 3; i++ {
		m := &chat.Message{ID: fmt.Sprintf("down%d", i), Conv: "dm:alice:bob", Seq: int64(100 + i), From: "alice", To: "bob", Body: "x", TS: time.Now().UnixMilli()}
		d := &chat.Delivery{Type: chat.TypeMessage, To: []chat.UserID{"bob"}, Message: m}
		if err := producer.Produce(ctx, []kafkabus.Record{{Topic: gw2.id.Topic(), Key: []byte("bob"), Value: d.Encode()}}); err != nil {
			t.Fatal(err)
		}
	}
	again := c.launchGateway("gw-2")
	if again.id != gw2.id {
		t.Fatalf("restarted as %s", again.id)
	}
	eventually(t, 30*time.Second, "the restarted gateway to consume the 3 new copies", func() bool {
		return metric(t, again, "switchboard_gateway_consumed_total") >= 3
	})
	bob = c.dial(again, "bob")
	if err := alice.SendTo(ctx, "new", "bob", "after the restart"); err != nil {
		t.Fatal(err)
	}
	expect(t, bob, "delivered after the restart", isMessage("new"))
	// 3 copies from the downtime and 1 new one; none of the 10 old ones.
	if n := metric(t, again, "switchboard_gateway_consumed_total"); n != 4 {
		t.Fatalf("the restarted gateway consumed %v records, want 4 (it replayed old ones?)", n)
	}
}
