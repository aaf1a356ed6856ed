//go:build integration

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/wsclient"
)

func TestDirectMessagesFlowBothWaysBetweenGateways(t *testing.T) {
	c := newCluster(t)
	gw1, gw2 := c.startGateway("gw-1"), c.startGateway("gw-2")
	alice, bob := c.dial(gw1, "alice"), c.dial(gw2, "bob")
	if alice.Hello.Server != string(gw1.id) || bob.Hello.Server != string(gw2.id) || alice.Hello.User != "alice" {
		t.Fatalf("hello: %+v / %+v", alice.Hello, bob.Hello)
	}
	if alice.Hello.Session == "" || alice.Hello.HeartbeatMS <= 0 {
		t.Fatalf("hello lacks session or heartbeat: %s", alice.Hello.Raw)
	}
	ctx := context.Background()

	if err := alice.SendTo(ctx, "a1", "bob", "hi bob"); err != nil {
		t.Fatal(err)
	}
	sent := expect(t, alice, "alice's sent", isSent("a1"))
	if sent.Type != "sent" || sent.ID == "" || sent.Conv != "dm:alice:bob" || sent.Seq < 1 || sent.TS == 0 {
		t.Fatalf("sent = %s", sent.Raw)
	}
	got := expect(t, bob, "bob gets alice's message", isMessage("a1"))
	if got.ID != sent.ID || got.From != "alice" || got.To != "bob" || got.Body != "hi bob" || got.Seq != sent.Seq || got.Conv != "dm:alice:bob" || got.TS != sent.TS {
		t.Fatalf("bob got %s, alice's sent was %s", got.Raw, sent.Raw)
	}

	if err := bob.SendConv(ctx, "b1", "dm:alice:bob", "hi alice"); err != nil {
		t.Fatal(err)
	}
	sent2 := expect(t, bob, "bob's sent", isSent("b1"))
	got2 := expect(t, alice, "alice gets bob's message", isMessage("b1"))
	if sent2.Type != "sent" || got2.From != "bob" || got2.To != "alice" || got2.Body != "hi alice" {
		t.Fatalf("sent %s, received %s", sent2.Raw, got2.Raw)
	}
	if sent2.Seq <= sent.Seq {
		t.Fatalf("seq did not increase within dm:alice:bob: %d then %d", sent.Seq, sent2.Seq)
	}
}

func TestEveryDeviceOfTheRecipientAndTheSendersOtherDevicesReceive(t *testing.T) {
	c := newCluster(t)
	gw1, gw2 := c.startGateway("gw-1"), c.startGateway("gw-2")
	alice, alice2 := c.dial(gw1, "alice"), c.dial(gw2, "alice")
	bob1, bob2, bob3 := c.dial(gw1, "bob"), c.dial(gw2, "bob"), c.dial(gw2, "bob")
	ctx := context.Background()

	for i := 0; i < 5; i++ {
		cid := fmt.Sprintf("m%d", i)
		if err := alice.SendTo(ctx, cid, "bob", "to all of bob "+cid); err != nil {
			t.Fatal(err)
		}
		sent := expect(t, alice, "sent", isSent(cid))
		for name, cl := range map[string]*wsclient.Client{"bob on gw-1": bob1, "bob on gw-2": bob2, "bob's third session": bob3, "alice's other device": alice2} {
			if f := expect(t, cl, name, isMessage(cid)); f.ID != sent.ID {
				t.Fatalf("%s got id %s, want %s", name, f.ID, sent.ID)
			}
		}
	}
	// The sending session gets sent, never its own message: after a ping
	// round trip, nothing but the pong is pending for it.
	if err := alice.SendJSON(ctx, map[string]any{"type": "ping", "t": 42}); err != nil {
		t.Fatal(err)
	}
	f := expect(t, alice, "pong", func(f wsclient.Frame) bool { return f.Type != "sent" })
	if f.Type != "pong" || string(f.T) != "42" {
		t.Fatalf("sending session got %s before its pong", f.Raw)
	}
}

func TestPublicMessagesReachEverySessionOnEveryGateway(t *testing.T) {
	c := newCluster(t)
	gw1, gw2 := c.startGateway("gw-1"), c.startGateway("gw-2")
	clients := map[string]*wsclient.Client{
		"alice@gw1": c.dial(gw1, "alice"), "bob@gw2": c.dial(gw2, "bob"),
		"carol@gw1": c.dial(gw1, "carol"), "carol@gw2": c.dial(gw2, "carol"), "dave@gw2": c.dial(gw2, "dave"),
	}
	ctx := context.Background()
	var lastSeq int64
	for _, from := range []string{"alice@gw1", "bob@gw2"} {
		sender := clients[from]
		cid := "pub-" + from
		if err := sender.SendConv(ctx, cid, "public", "hello everyone from "+from); err != nil {
			t.Fatal(err)
		}
		sent := expect(t, sender, "sent", isSent(cid))
		if sent.Type != "sent" || sent.Conv != "public" || sent.Seq <= lastSeq {
			t.Fatalf("sent %s after seq %d", sent.Raw, lastSeq)
		}
		lastSeq = sent.Seq
		for name, cl := range clients {
			if name == from {
				continue
			}
			f := expect(t, cl, name+" gets "+cid, isMessage(cid))
			if f.Conv != "public" || f.ID != sent.ID || f.To != "" {
				t.Fatalf("%s got %s", name, f.Raw)
			}
		}
	}
}

func TestARepeatedCIDYieldsOneMessage(t *testing.T) {
	c := newCluster(t)
	gw1, gw2 := c.startGateway("gw-1"), c.startGateway("gw-2")
	alice, bob := c.dial(gw1, "alice"), c.dial(gw2, "bob")
	ctx := context.Background()
	if err := alice.SendTo(ctx, "same", "bob", "once"); err != nil {
		t.Fatal(err)
	}
	first := expect(t, alice, "first sent", isSent("same"))
	// Again later, and twice within one batch.
	for i := 0; i < 3; i++ {
		if err := alice.SendTo(ctx, "same", "bob", "once"); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		again := expect(t, alice, "repeated sent", isSent("same"))
		if again.Type != "sent" || again.ID != first.ID || again.Seq != first.Seq || again.TS != first.TS {
			t.Fatalf("retry answered %s, first was %s", again.Raw, first.Raw)
		}
	}
	// A reconnect does not make it new either.
	alice.Close()
	alice = c.dial(gw2, "alice")
	if err := alice.SendTo(ctx, "same", "bob", "once"); err != nil {
		t.Fatal(err)
	}
	if again := expect(t, alice, "sent after reconnect", isSent("same")); again.ID != first.ID {
		t.Fatalf("after reconnect: %s, first was %s", again.Raw, first.Raw)
	}
	// Bob saw exactly one copy: the next message he gets is a new one.
	if err := alice.SendTo(ctx, "next", "bob", "second"); err != nil {
		t.Fatal(err)
	}
	expect(t, alice, "sent", isSent("next"))
	var ids []string
	expect(t, bob, "bob's messages", func(f wsclient.Frame) bool {
		if f.Type == "message" {
			ids = append(ids, f.CID)
		}
		return f.CID == "next"
	})
	if len(ids) != 2 || ids[0] != "same" {
		t.Fatalf("bob received cids %v, want [same next]", ids)
	}
}

// A cid is the sender's, not the conversation's: repeated to someone else
// it is still the original message, and the other conversation gets
// nothing.
func TestACIDRepeatedToAnotherConversationIsTheOriginal(t *testing.T) {
	c := newCluster(t)
	gw1, gw2 := c.startGateway("gw-1"), c.startGateway("gw-2")
	alice, bob, carol := c.dial(gw1, "alice"), c.dial(gw2, "bob"), c.dial(gw2, "carol")
	ctx := context.Background()
	if err := alice.SendTo(ctx, "once", "bob", "to bob"); err != nil {
		t.Fatal(err)
	}
	first := expect(t, alice, "sent to bob", isSent("once"))
	expect(t, bob, "bob's copy", isMessage("once"))
	if err := alice.SendTo(ctx, "once", "carol", "to carol"); err != nil {
		t.Fatal(err)
	}
	again := expect(t, alice, "the repeat's answer", isSent("once"))
	if again.Type != "sent" || again.ID != first.ID || again.Seq != first.Seq || again.Conv != first.Conv {
		t.Fatalf("the repeat to carol answered %s, the original was %s", again.Raw, first.Raw)
	}
	// Carol's first message is the next one alice sends her.
	if err := alice.SendTo(ctx, "next", "carol", "hello carol"); err != nil {
		t.Fatal(err)
	}
	expect(t, alice, "sent", isSent("next"))
	if f := expect(t, carol, "carol's first message", func(f wsclient.Frame) bool { return f.Type == "message" }); f.CID != "next" {
		t.Fatalf("carol got %s first, want the message with cid next", f.Raw)
	}
	// A cid whose original is not in Kafka yet (its send is in flight, or
	// failed and was never retried) is refused elsewhere, and kept.
	other := chat.DirectConv("alice", "dave")
	if err := c.rdb.Set(ctx, c.prefix+"cid:alice:pending", string(other), time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if err := alice.SendTo(ctx, "pending", "bob", "x"); err != nil {
		t.Fatal(err)
	}
	f := expect(t, alice, "the answer to a cid pending elsewhere", isSent("pending"))
	if f.Type != "error" || f.Code != "bad_request" || !strings.Contains(f.Message, string(other)) {
		t.Fatalf("a cid pending in %s, sent to bob, answered %s; want bad_request naming %s", other, f.Raw, other)
	}
}

func TestAThousandMessagesFromOneSenderArriveInOrder(t *testing.T) {
	c := newCluster(t)
	gw1, gw2 := c.startGateway("gw-1"), c.startGateway("gw-2")
	alice, bob := c.dial(gw1, "alice"), c.dial(gw2, "bob")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const n = 1000
	errc := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			if err := alice.SendTo(ctx, fmt.Sprintf("c%04d", i), "bob", fmt.Sprintf("message %d", i)); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	var lastSeq int64
	for i := 0; i < n; i++ {
		f, err := bob.WaitFor(ctx, func(f wsclient.Frame) bool { return f.Type == "message" })
		if err != nil {
			t.Fatalf("after %d messages: %v", i, err)
		}
		if want := fmt.Sprintf("c%04d", i); f.CID != want || f.Body != fmt.Sprintf("message %d", i) {
			t.Fatalf("message %d: got cid %s body %q", i, f.CID, f.Body)
		}
		if f.Seq <= lastSeq {
			t.Fatalf("message %d: seq %d after %d", i, f.Seq, lastSeq)
		}
		lastSeq = f.Seq
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	acks := 0
	for acks < n {
		f, err := alice.WaitFor(ctx, func(f wsclient.Frame) bool { return f.Type == "sent" || f.Type == "error" })
		if err != nil || f.Type != "sent" {
			t.Fatalf("ack %d: %s %v", acks, f.Raw, err)
		}
		acks++
	}
}
