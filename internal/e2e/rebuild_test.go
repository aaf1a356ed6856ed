//go:build integration

package e2e

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/kafkabus"
	"github.com/switchboard-chat/switchboard/internal/rediskit"
	"github.com/switchboard-chat/switchboard/internal/router"
	"github.com/switchboard-chat/switchboard/internal/store"
	"github.com/switchboard-chat/switchboard/internal/wsclient"
)

// views is everything the router materializes, for comparison.
type views struct {
	Users         map[chat.UserID]chat.User
	Conversations map[chat.ConvID]chat.Conversation
	History       map[chat.ConvID][]chat.Message
	Convs         map[chat.UserID][]chat.ConvID
	Receipts      map[chat.ConvID][]chat.Receipt
	Seq           map[chat.ConvID]int64
	Index         map[chat.ConvID][]store.LogPos
	Deleted       map[chat.ConvID][]string
}

func (c *cluster) snapshot(t *testing.T, users []chat.UserID, convs []chat.ConvID) views {
	t.Helper()
	ctx := context.Background()
	st := c.store()
	v := views{Users: map[chat.UserID]chat.User{}, Conversations: map[chat.ConvID]chat.Conversation{},
		History: map[chat.ConvID][]chat.Message{}, Convs: map[chat.UserID][]chat.ConvID{},
		Receipts: map[chat.ConvID][]chat.Receipt{}, Seq: map[chat.ConvID]int64{},
		Index: map[chat.ConvID][]store.LogPos{}, Deleted: map[chat.ConvID][]string{}}
	for _, conv := range convs {
		msgs, err := st.History(ctx, conv, 0, 100000)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			v.History[conv] = append(v.History[conv], *m)
		}
		marks, err := st.Receipts(ctx, conv)
		if err != nil {
			t.Fatal(err)
		}
		sort.Slice(marks, func(i, j int) bool {
			return marks[i].User+chat.UserID(marks[i].Status) < marks[j].User+chat.UserID(marks[j].Status)
		})
		v.Receipts[conv] = marks
		v.Seq[conv], _ = c.rdb.Get(ctx, c.table().SeqKey(conv)).Int64()
		if v.Index[conv], err = st.Locate(ctx, conv, 1, v.Seq[conv]); err != nil {
			t.Fatal(err)
		}
		v.Deleted[conv], _ = c.rdb.SMembers(ctx, st.DeletedKey(conv)).Result()
		sort.Strings(v.Deleted[conv])
		if cv, ok, err := st.Conversation(ctx, conv); err != nil {
			t.Fatal(err)
		} else if ok {
			v.Conversations[conv] = cv
		}
	}
	for _, u := range users {
		v.Convs[u], _ = st.Conversations(ctx, u)
		if usr, ok, err := st.User(ctx, u); err != nil {
			t.Fatal(err)
		} else if ok {
			v.Users[u] = usr
		}
	}
	return v
}

// waitApplied waits until the router has applied chat-log to its end.
func (c *cluster) waitApplied(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	end, err := c.admin.EndOffsets(ctx, c.chatLog)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the router to apply the whole log", func() bool {
		applied, err := c.store().Applied(ctx, c.chatLog)
		if err != nil {
			return false
		}
		for p, e := range end {
			if e > 0 && applied[p] < e {
				return false
			}
		}
		return true
	})
}

func TestRedisFlushedThenRebuiltFromTheLogHoldsTheSameViews(t *testing.T) {
	c := newCluster(t)
	gw1, gw2 := c.startGateway("gw-1"), c.startGateway("gw-2")
	r := c.startRouter()
	users := []chat.UserID{"alice", "bob", "carol"}
	cl := map[chat.UserID]*wsclient.Client{"alice": c.dial(gw1, "alice"), "bob": c.dial(gw2, "bob"), "carol": c.dial(gw1, "carol")}
	ctx := context.Background()
	convSet := map[chat.ConvID]bool{chat.Public: true}
	n := 0
	var lastDM wsclient.Frame
	for round := 0; round < 20; round++ {
		for i, from := range users {
			to := users[(i+1+round%2)%3]
			cid := fmt.Sprintf("m%d", n)
			n++
			var err error
			if round%5 == 0 {
				err = cl[from].SendConv(ctx, cid, "public", "public "+cid)
			} else {
				err = cl[from].SendTo(ctx, cid, string(to), "dm "+cid)
			}
			if err != nil {
				t.Fatal(err)
			}
			f := expect(t, cl[from], "sent", isSent(cid))
			convSet[chat.ConvID(f.Conv)] = true
			if f.Conv == "dm:alice:bob" {
				lastDM = f
			}
		}
	}
	for _, st := range []string{"delivered", "read"} {
		if err := cl["bob"].SendJSON(ctx, map[string]any{"type": "receipt", "conv": lastDM.Conv, "seq": lastDM.Seq - 1, "status": st}); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl["alice"].SendJSON(ctx, map[string]any{"type": "receipt", "conv": lastDM.Conv, "seq": lastDM.Seq, "status": "delivered"}); err != nil {
		t.Fatal(err)
	}
	// A delete in the log (deletes arrive through the REST API).
	producer, err := kafkabus.NewProducer(c.kafka())
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	del := &chat.LogRecord{Type: chat.TypeDelete, Delete: &chat.Delete{ID: lastDM.ID, Conv: chat.ConvID(lastDM.Conv), By: "alice", TS: 1}}
	if err := producer.Produce(ctx, []kafkabus.Record{{Topic: c.chatLog, Key: []byte(lastDM.Conv), Value: del.Encode()}}); err != nil {
		t.Fatal(err)
	}
	var convs []chat.ConvID
	for conv := range convSet {
		convs = append(convs, conv)
	}
	eventually(t, 20*time.Second, "receipts in the views", func() bool {
		marks, _ := c.store().Receipts(ctx, chat.ConvID(lastDM.Conv))
		return len(marks) == 3
	})
	c.waitApplied(t)
	eventually(t, 20*time.Second, "users and conversations in the views", func() bool {
		v := c.snapshot(t, users, convs)
		return len(v.Users) == 3 && len(v.Conversations) == 3
	})
	before := c.snapshot(t, users, convs)
	if cv := before.Conversations["dm:alice:bob"]; cv.Kind != chat.KindDirect || !reflect.DeepEqual(cv.Members, []chat.UserID{"alice", "bob"}) || cv.CreatedAt == 0 {
		t.Fatalf("conversation dm:alice:bob = %+v", cv)
	}
	if u := before.Users["carol"]; u.ID != "carol" || u.CreatedAt == 0 {
		t.Fatalf("user carol = %+v", u)
	}
	if len(before.History["dm:alice:bob"]) == 0 || !before.History["dm:alice:bob"][len(before.History["dm:alice:bob"])-1].Deleted {
		t.Fatalf("the deleted message is not marked deleted before the rebuild")
	}
	if idx, del := before.Index["dm:alice:bob"], before.Deleted["dm:alice:bob"]; int64(len(idx)) != before.Seq["dm:alice:bob"] || len(del) != 1 || del[0] != lastDM.ID {
		t.Fatalf("before the rebuild: index %v, deleted %v", idx, del)
	}

	// Flush everything this cluster has in Redis: views, seq counters,
	// sessions, registrations, dedupe records.
	if n, err := rediskit.DeleteMatching(ctx, c.rdb, c.prefix+"*"); err != nil {
		t.Fatal(err)
	} else if n == 0 {
		t.Fatal("nothing to flush")
	}
	if h, _ := c.store().History(ctx, chat.Public, 0, 10); len(h) != 0 {
		t.Fatal("history survived the flush")
	}
	stats, err := r.Rebuild(ctx)
	if err != nil {
		t.Fatal(err)
	}
	after := c.snapshot(t, users, convs)
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("views differ after the rebuild (%+v)\nbefore: %+v\nafter:  %+v", stats, before, after)
	}
	t.Logf("rebuild replayed %d records over %d conversations", stats.Records, len(convs))
	// The send path carries on from the restored counters.
	if err := cl["alice"].SendTo(ctx, "after-rebuild", "bob", "x"); err != nil {
		t.Fatal(err)
	}
	if f := expect(t, cl["alice"], "sent", isSent("after-rebuild")); f.Seq != before.Seq["dm:alice:bob"]+1 {
		t.Fatalf("seq after rebuild %d, want %d", f.Seq, before.Seq["dm:alice:bob"]+1)
	}
}

func TestTheJanitorAnnouncesOfflineAndDeletesTheTopicOfAGatewayThatNeverReturns(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway("gw-1")
	c.startRouter(func(cfg *router.Config) { cfg.OrphanGrace = time.Second })
	alice := c.dial(g, "alice")
	ctx := context.Background()
	if err := alice.SendTo(ctx, "hi", "carol", "hello"); err != nil {
		t.Fatal(err)
	}
	expect(t, alice, "sent", isSent("hi"))
	eventually(t, 20*time.Second, "carol's conversation list", func() bool {
		convs, _ := c.store().Conversations(ctx, "carol")
		return len(convs) == 1
	})
	// carol's only session is on a gateway that dies; a second gateway
	// dies but comes back within the grace period.
	ghost, back := chat.ServerID("ghost-"+c.name), chat.ServerID("back-"+c.name)
	c.topics = append(c.topics, ghost.Topic(), back.Topic())
	if err := c.admin.EnsureTopics(ctx, kafkabus.TopicSpec{Name: ghost.Topic(), Retention: time.Hour},
		kafkabus.TopicSpec{Name: back.Topic(), Retention: time.Hour}); err != nil {
		t.Fatal(err)
	}
	short := c.table()
	for _, gw := range []chat.ServerID{ghost, back} {
		if _, err := short.Heartbeat(ctx, gw); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := short.AddSession(ctx, "carol", "s1", ghost); err != nil {
		t.Fatal(err)
	}
	// Both leases lapse (3s); only "back" returns.
	f := expect(t, alice, "carol's offline presence", func(f wsclient.Frame) bool { return f.Type == "presence" && f.User == "carol" })
	if f.Online {
		t.Fatalf("presence %s", f.Raw)
	}
	eventually(t, 20*time.Second, "the orphaned topic to be deleted", func() bool {
		// "back" heartbeats like a live gateway (a purge may race with it).
		if _, err := short.Heartbeat(ctx, back); err != nil {
			t.Fatal(err)
		}
		ok, err := c.admin.TopicExists(ctx, ghost.Topic())
		return err == nil && !ok
	})
	eventually(t, 10*time.Second, "the returned gateway to be forgotten as dead", func() bool {
		if _, err := short.Heartbeat(ctx, back); err != nil {
			t.Fatal(err)
		}
		dead, _ := short.Dead(ctx)
		_, ok := dead[back]
		return !ok
	})
	if ok, err := c.admin.TopicExists(ctx, back.Topic()); err != nil || !ok {
		t.Fatalf("the returned gateway's topic is gone (%v)", err)
	}
}

func TestAfterRedisLosesItsDataSendsWaitForTheRouterAndSeqNeverRepeats(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway("gw-1")
	c.startRouter()
	alice := c.dial(g, "alice")
	ctx := context.Background()
	var first wsclient.Frame
	for i := 0; i < 5; i++ {
		cid := fmt.Sprintf("pre%d", i)
		if err := alice.SendTo(ctx, cid, "bob", "x"); err != nil {
			t.Fatal(err)
		}
		f := expect(t, alice, "sent", isSent(cid))
		if i == 0 {
			first = f
		}
	}
	c.waitApplied(t)
	// Redis lost everything.
	if _, err := rediskit.DeleteMatching(ctx, c.rdb, c.prefix+"*"); err != nil {
		t.Fatal(err)
	}
	// Sends never take a seq that is already logged: until the router has
	// restored the counters they answer unavailable; then they carry on.
	// The client retries with the same cid, as the protocol asks: a send
	// refused after it took a seq (a recipient's sessions not restored yet,
	// on a cluster) gets that seq when it is retried.
	var got wsclient.Frame
	deadline := time.Now().Add(30 * time.Second)
	for {
		cid := "post"
		if err := alice.SendTo(ctx, cid, "bob", "x"); err != nil {
			t.Fatal(err)
		}
		got = expect(t, alice, "answer", isSent(cid))
		if got.Type == "sent" {
			break
		}
		if got.Code != "unavailable" || !strings.Contains(got.Message, "restored") || time.Now().After(deadline) {
			t.Fatalf("while restoring: %s", got.Raw)
		}
		time.Sleep(50 * time.Millisecond) // a client's retry pacing
	}
	if got.Seq != 6 {
		t.Fatalf("first seq after the loss is %d, want 6", got.Seq)
	}
	// A retried cid from before the loss is still recognized.
	if err := alice.SendTo(ctx, "pre0", "bob", "x"); err != nil {
		t.Fatal(err)
	}
	if f := expect(t, alice, "retry", isSent("pre0")); f.ID != first.ID || f.Seq != first.Seq {
		t.Fatalf("retry after the loss answered %s, first was %s", f.Raw, first.Raw)
	}
}

// On a Redis Cluster each shard can lose its data alone. The restored
// marker is one key per slot, beside that slot's seq counters: a slot
// whose marker is gone refuses the sends of its conversations until the
// router restores it, and every other conversation carries on.
func TestALostSlotMarkerRefusesOnlyItsOwnConversations(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway("gw-1")
	alice := c.dial(g, "alice")
	ctx := context.Background()
	table := c.table()
	lost := chat.DirectConv("alice", "bob")
	// A peer whose conversation with alice is on another slot.
	var kept chat.ConvID
	var peer string
	for i := 0; kept == ""; i++ {
		peer = fmt.Sprintf("user%d", i)
		if cv := chat.DirectConv("alice", chat.UserID(peer)); rediskit.Slot(table.SeqKey(cv)) != rediskit.Slot(table.SeqKey(lost)) {
			kept = cv
		}
	}
	send := func(cid, to string) wsclient.Frame {
		t.Helper()
		if err := alice.SendTo(ctx, cid, to, "x"); err != nil {
			t.Fatal(err)
		}
		return expect(t, alice, "answer to "+cid, isSent(cid))
	}
	if f := send("before", "bob"); f.Type != "sent" {
		t.Fatalf("before the loss: %s", f.Raw)
	}
	marker := c.prefix + "restored:" + rediskit.SlotTag(rediskit.Slot(table.SeqKey(lost)))
	if n, err := c.rdb.Del(ctx, marker).Result(); err != nil || n != 1 {
		t.Fatalf("deleting the marker %s: %d %v", marker, n, err)
	}
	if f := send("refused", "bob"); f.Type != "error" || f.Code != "unavailable" || !strings.Contains(f.Message, "restored") {
		t.Fatalf("a send in the lost slot answered %s, want unavailable until restored", f.Raw)
	}
	for i := range 3 {
		if f := send(fmt.Sprintf("kept%d", i), peer); f.Type != "sent" {
			t.Fatalf("a send in another slot answered %s", f.Raw)
		}
	}
	// The router notices, restores the counters and every marker; the
	// lost slot's conversation carries on from its logged seq.
	c.startRouter()
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; ; i++ {
		f := send(fmt.Sprintf("after%d", i), "bob")
		if f.Type == "sent" {
			if f.Seq != 2 {
				t.Fatalf("first seq after the restore is %d, want 2 (the refused sends took none)", f.Seq)
			}
			break
		}
		if f.Code != "unavailable" || time.Now().After(deadline) {
			t.Fatalf("while restoring: %s", f.Raw)
		}
		time.Sleep(50 * time.Millisecond) // a client's retry pacing
	}
}

// A Redis Cluster shard can lose its data alone: the sessions, counters
// and markers of its slots go, the rest stays. Here the keys of a third of
// the slots are deleted (a shard's share, on a single Redis as on a
// cluster). Sends into the lost slots wait (unavailable) until the router
// has restored them and the gateways have registered their sessions
// again; then every message is acknowledged and delivered live, nothing
// repeats a seq.
func TestAfterAShardLosesItsDataEveryMessageIsDeliveredLive(t *testing.T) {
	c := newCluster(t)
	gw1, gw2 := c.startGateway("gw-1"), c.startGateway("gw-2")
	c.startRouter()
	ctx := context.Background()
	const lostSlots = rediskit.Slots / 3
	table := c.table()
	inLost := func(key string) bool { return rediskit.Slot(key) < lostSlots }
	// Receivers whose session hashes are in the lost slots, and some not.
	type pair struct {
		from, to *wsclient.Client
		name     string
		seq      int64
	}
	var pairs []*pair
	lostSessions := 0
	for i := 0; len(pairs) < 8; i++ {
		name := fmt.Sprintf("r%d", i)
		lost := inLost(c.prefix + "sess:" + name)
		if lost && lostSessions >= 4 || !lost && len(pairs)-lostSessions >= 4 {
			continue
		}
		if lost {
			lostSessions++
		}
		pairs = append(pairs, &pair{from: c.dial(gw1, "s"+name), to: c.dial(gw2, name), name: name})
	}
	send := func(p *pair, cid string) wsclient.Frame {
		t.Helper()
		if err := p.from.SendTo(ctx, cid, p.name, cid); err != nil {
			t.Fatal(err)
		}
		return expect(t, p.from, "answer to "+cid, isSent(cid))
	}
	for _, p := range pairs {
		f := send(p, "before")
		if f.Type != "sent" {
			t.Fatalf("before the loss: %s", f.Raw)
		}
		p.seq = f.Seq
		expect(t, p.to, p.name+" gets before", isMessage("before"))
	}
	c.waitApplied(t)
	keys, err := rediskit.Keys(ctx, c.rdb, c.prefix+"*")
	if err != nil {
		t.Fatal(err)
	}
	var gone []string
	for _, k := range keys {
		if inLost(k) {
			gone = append(gone, k)
		}
	}
	if _, err := rediskit.Delete(ctx, c.rdb, gone); err != nil {
		t.Fatal(err)
	}
	t.Logf("deleted %d of %d keys (the slots below %d)", len(gone), len(keys), lostSlots)
	deadline := time.Now().Add(60 * time.Second)
	refused := 0
	for _, p := range pairs {
		for i := 0; ; i++ {
			f := send(p, fmt.Sprintf("after%d", i))
			if f.Type == "sent" {
				if f.Seq <= p.seq {
					t.Fatalf("%s: seq %d after the loss repeats one (last before: %d)", p.name, f.Seq, p.seq)
				}
				// Delivered live, not only stored.
				expect(t, p.to, p.name+" gets the message sent after the loss", isMessage(fmt.Sprintf("after%d", i)))
				break
			}
			refused++
			if f.Code != "unavailable" || time.Now().After(deadline) {
				t.Fatalf("%s after the loss: %s", p.name, f.Raw)
			}
			time.Sleep(50 * time.Millisecond) // a client's retry pacing
		}
	}
	if refused == 0 {
		t.Fatalf("no send was refused after a third of the slots lost their data")
	}
	if ok, err := table.Restored(ctx); err != nil || !ok {
		t.Fatalf("restored markers after the restore: %v %v", ok, err)
	}
}
