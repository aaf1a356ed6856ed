//go:build integration

package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/kafkabus"
	"github.com/switchboard-chat/switchboard/internal/rediskit"
	"github.com/switchboard-chat/switchboard/internal/route"
	"github.com/switchboard-chat/switchboard/internal/store"
	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// restoreSizes are the chat-log sizes the Redis-loss test runs at:
// SWITCHBOARD_RESTORE_RECORDS (comma separated; `make bench-restore` sets
// 100000,1000000), default 20000,100000.
func restoreSizes(t *testing.T) []int {
	var out []int
	for _, f := range strings.Split(testkit.Env("SWITCHBOARD_RESTORE_RECORDS", "20000,100000"), ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1000 {
			t.Fatalf("SWITCHBOARD_RESTORE_RECORDS: %q is not a size of at least 1000", f)
		}
		out = append(out, n)
	}
	return out
}

// A Redis loss with a large chat-log: sends are accepted again after a
// time that does not grow with the log, the views come back equal to
// what the per-record apply materialized, at a rate that is reported (and,
// for a log of a million records or more, asserted ≥
// SWITCHBOARD_RESTORE_MIN_RATE when set: `make bench-restore` runs without
// -race), and new seqs follow the old ones.
func TestARedisLossIsAShortPauseWhateverTheLogSize(t *testing.T) {
	minRate, _ := strconv.ParseFloat(os.Getenv("SWITCHBOARD_RESTORE_MIN_RATE"), 64)
	for _, n := range restoreSizes(t) {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			res := runRedisLoss(t, n)
			t.Logf("RESULT records=%d accept_after=%v restore_work=%v rebuild=%v rebuild_rate=%.0f/s",
				n, res.accept.Round(time.Millisecond), res.work.Round(time.Millisecond), res.replay.Round(time.Millisecond), res.rate)
			if minRate > 0 && n >= 1000000 && res.rate < minRate { // smaller logs pay fixed costs
				t.Errorf("rebuild rate %.0f records/s, want at least %.0f", res.rate, minRate)
			}
		})
	}
}

type lossResult struct {
	accept, work, replay time.Duration
	rate                 float64
}

// testLease is the gateway lease the router assumes: a restore also waits
// one gateway heartbeat (a third of it, plus a retry), 1.2 s here, within
// restoreGrace.
const testLease = 3 * time.Second

// restoreGrace is the tests' RestoreGrace (the default is 5 s, the
// gateways' default produce timeout); acceptBound is how long past it a
// send may stay refused, whatever the log's size.
const (
	restoreGrace = 2 * time.Second
	acceptBound  = restoreGrace + 3*time.Second
	lookback     = 40 * time.Second // the bulk of the log is older; the tail, even on a loaded machine, is not
)

func runRedisLoss(t *testing.T, n int) lossResult {
	ctx := context.Background()
	name := fmt.Sprintf("rl%d-%d", time.Now().UnixNano()%1e9, n)
	prefix := "test:" + name + ":"
	chatLog, chatState := "chat-log-"+name, "chat-state-"+name
	rdb, admin := testkit.Connect(t, "restore-test")
	t.Cleanup(func() {
		testkit.DropNamespace(t, admin, rdb, prefix, []string{chatLog, chatState, chatLog + "-checkpoint"})
		admin.Close()
		rdb.Close()
	})
	kcfg := kafkabus.Config{Brokers: []string{testkit.KafkaAddr()}, ClientID: "restore-test"}
	r, err := New(Config{
		Addr: "127.0.0.1:0", ChatLogTopic: chatLog, ChatStateTopic: chatState, GroupID: "router-" + name,
		CheckpointInterval: 500 * time.Millisecond, RestoreCheck: 100 * time.Millisecond,
		RestoreGrace: restoreGrace, DedupeLookback: lookback,
	}, Deps{
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Redis:  rdb, Route: route.Config{Prefix: prefix, Lease: testLease}, Store: store.Config{Prefix: prefix}, Kafka: kcfg,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.EnsureTopics(ctx, r.topics()...); err != nil {
		t.Fatal(err)
	}
	producer, err := kafkabus.NewProducer(kcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()

	// The log: n records, then the router materializes it record by record.
	// Like a real log, it spans weeks: the dedupe records of its last 24 h
	// (about 3% of it) come back with the rebuild.
	g := newLogGen(chatLog, chatState, time.Now().Add(-30*24*time.Hour))
	filled, state := time.Now(), g.state()
	if err := produceAll(ctx, producer, state); err != nil {
		t.Fatal(err)
	}
	if err := produceAll(ctx, producer, g.records(n, time.Now())); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d records produced in %v", n, time.Since(filled).Round(time.Millisecond))
	filled = time.Now()
	// The cluster ran from the start: its Redis holds the counters (the
	// router raises them as it applies the log), so no restore runs now.
	table, st := route.New(rdb, route.Config{Prefix: prefix}), store.New(rdb, store.Config{Prefix: prefix})
	if err := table.MarkRestored(ctx); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("router: %v", err)
		}
	}()
	applied := time.Now()
	waitApplied(t, admin, st, chatLog, 20*time.Minute)
	t.Logf("router applied them record by record in %v", time.Since(applied).Round(time.Millisecond))
	// A checkpoint covers them, then a tail the restore reads from the log:
	// recent messages, one of them retried below.
	end, err := admin.EndOffsets(ctx, chatLog)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, time.Minute, "a checkpoint covering the log", func() bool {
		cp := newCheckpoint()
		if err := r.readCheckpoint(ctx, cp); err != nil {
			return false
		}
		for p, e := range end {
			if cp.covered[p] < e {
				return false
			}
		}
		return true
	})
	// The restore's dedupe look-back holds the tail, not the bulk of the
	// log: only the passing of time can make it so.
	time.Sleep(time.Until(filled.Add(lookback)))
	if err := produceAll(ctx, producer, g.records(200, time.Now())); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, admin, st, chatLog, time.Minute)
	recent, old := g.last, g.dayOld
	before := dumpViews(t, rdb, prefix)

	// Redis loses everything under the prefix (the restored marker last).
	wipe(t, rdb, prefix)
	lost := time.Now()
	conv := recent.Conv
	req := route.SendRequest{From: recent.From, CID: "after-loss", Conv: conv, ID: chat.NewMessageID(time.Now()), TS: time.Now().UnixMilli()}
	var plan route.SendPlan
	for {
		plans, _, err := table.PrepareSends(ctx, []route.SendRequest{req})
		if err == nil && plans[0].Refused == nil {
			plan = plans[0]
			break
		}
		if err == nil {
			err = plans[0].Refused
		}
		if !errors.Is(err, route.ErrNotRestored) {
			t.Fatal(err)
		}
		if time.Since(lost) > time.Minute {
			t.Fatal("sends still refused a minute after the loss")
		}
		time.Sleep(10 * time.Millisecond)
	}
	res := lossResult{accept: time.Since(lost)}
	if res.accept > acceptBound {
		t.Errorf("a send was accepted %v after the loss, over %v", res.accept, acceptBound)
	}
	if plan.Seq != g.seq[conv]+1 {
		t.Errorf("first seq of %s after the loss is %d, want %d", conv, plan.Seq, g.seq[conv]+1)
	}
	// A retry of a message logged just before the loss answers the original.
	retry, _, err := table.PrepareSends(ctx, []route.SendRequest{{From: recent.From, CID: recent.CID, Conv: conv, ID: "other", TS: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if p := retry[0]; !p.Dup || !p.Acked || p.ID != recent.ID || p.Seq != recent.Seq {
		t.Errorf("retry of %s right after the restore: %+v, want the original %s seq %d", recent.CID, p, recent.ID, recent.Seq)
	}
	// The rebuild behind it: the lock is held until the views are complete.
	testkit.Eventually(t, 20*time.Minute, "the rebuild to finish", func() bool {
		busy, err1 := st.Rebuilding(ctx)
		pending, err2 := st.RebuildPending(ctx)
		return err1 == nil && err2 == nil && !busy && !pending
	})
	rb := r.lastRebuild.Load()
	if rb == nil || rb.Restore == nil {
		t.Fatalf("no rebuild with a restore recorded: %+v", rb)
	}
	res.work, res.replay, res.rate = rb.Restore.Work, rb.Replay, rb.Rate()
	if rb.Records != n+200+len(state) {
		t.Errorf("the rebuild replayed %d records, want %d", rb.Records, n+200+len(state))
	}
	t.Logf("restore read %d records after the checkpoint, raised %d counters, restored %d dedupe records",
		rb.Restore.Tail, rb.Restore.Conversations, rb.Restore.Dedupes)
	after := dumpViews(t, rdb, prefix)
	before[strings.TrimPrefix(route.SeqKey(prefix, conv), prefix)] = strconv.FormatInt(g.seq[conv]+1, 10) // the send above
	diffViews(t, before, after)
	// The full dedupe TTL is back: a cid of a day ago too.
	retry, _, err = table.PrepareSends(ctx, []route.SendRequest{{From: old.From, CID: old.CID, Conv: old.Conv, ID: "other", TS: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if p := retry[0]; !p.Dup || p.ID != old.ID || p.Seq != old.Seq {
		t.Errorf("retry of a cid of a day ago after the rebuild: %+v, want %s seq %d", p, old.ID, old.Seq)
	}
	return res
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func produceAll(ctx context.Context, p *kafkabus.Producer, recs []kafkabus.Record) error {
	for len(recs) > 0 {
		k := min(len(recs), 20000)
		if err := p.Produce(ctx, recs[:k]); err != nil {
			return err
		}
		recs = recs[k:]
	}
	return nil
}

func waitApplied(t *testing.T, admin *kafkabus.Admin, st *store.Store, topic string, timeout time.Duration) {
	t.Helper()
	end, err := admin.EndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(timeout)
	for {
		applied, err := st.Applied(context.Background(), topic)
		if err != nil {
			t.Fatal(err)
		}
		ok := true
		for p, e := range end {
			ok = ok && applied[p] >= e
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the router applied %v of %v within %v", applied, end, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// logGen makes a realistic chat-log: many users, a public room and
// direct conversations of skewed sizes (some past the window), receipts,
// deletes (of messages in and out of the window) and retried sends
// written twice.
type logGen struct {
	chatLog, chatState string
	rnd                *rand.Rand
	users              []chat.UserID
	pairs              [][2]chat.UserID
	seq                map[chat.ConvID]int64
	ids                map[chat.ConvID][]*chat.Message // recent messages per conversation
	ts                 int64
	i                  int
	// dayOld is the first message of the last 23 h, last the last one.
	dayOld, last *chat.Message
}

func newLogGen(chatLog, chatState string, start time.Time) *logGen {
	g := &logGen{chatLog: chatLog, chatState: chatState, rnd: rand.New(rand.NewPCG(1, 2)),
		seq: map[chat.ConvID]int64{}, ids: map[chat.ConvID][]*chat.Message{}, ts: start.UnixMilli()}
	for i := range 2000 {
		g.users = append(g.users, chat.UserID(fmt.Sprintf("u%04d", i)))
	}
	for len(g.pairs) < 5000 {
		a, b := g.users[g.rnd.IntN(len(g.users))], g.users[g.rnd.IntN(len(g.users))]
		if a != b {
			g.pairs = append(g.pairs, [2]chat.UserID{a, b})
		}
	}
	return g
}

func (g *logGen) state() []kafkabus.Record {
	var out []kafkabus.Record
	for _, u := range g.users {
		sr := &chat.StateRecord{Type: chat.TypeUser, User: &chat.User{ID: u, CreatedAt: g.ts}}
		out = append(out, kafkabus.Record{Topic: g.chatState, Key: sr.Key(), Value: sr.Encode()})
	}
	for _, p := range g.pairs {
		c := chat.DirectConv(p[0], p[1])
		a, b, _ := c.Members()
		sr := &chat.StateRecord{Type: chat.TypeConversation, Conversation: &chat.Conversation{ID: c, Kind: chat.KindDirect, Members: []chat.UserID{a, b}, CreatedAt: g.ts}}
		out = append(out, kafkabus.Record{Topic: g.chatState, Key: sr.Key(), Value: sr.Encode()})
	}
	return out
}

// records returns the next n chat-log records, their timestamps spread
// evenly up to until.
func (g *logGen) records(n int, until time.Time) []kafkabus.Record {
	out := make([]kafkabus.Record, 0, n)
	step := max((until.UnixMilli()-g.ts)/int64(n), 1)
	dayAgo := until.Add(-23 * time.Hour).UnixMilli()
	for range n {
		g.i++
		g.ts += step
		x := g.rnd.Float64()
		var conv chat.ConvID
		var from chat.UserID
		if x < 0.2 {
			conv, from = chat.Public, g.users[g.rnd.IntN(len(g.users))]
		} else {
			p := g.pairs[int(g.rnd.Float64()*g.rnd.Float64()*float64(len(g.pairs)))]
			conv, from = chat.DirectConv(p[0], p[1]), p[g.rnd.IntN(2)]
		}
		recent := g.ids[conv]
		var lr *chat.LogRecord
		switch y := g.rnd.Float64(); {
		case y < 0.05 && len(recent) > 0:
			st := "delivered"
			if g.rnd.IntN(2) == 0 {
				st = "read"
			}
			lr = &chat.LogRecord{Type: chat.TypeReceipt, Receipt: &chat.Receipt{Conv: conv, User: from, Seq: recent[g.rnd.IntN(len(recent))].Seq, Status: st, TS: g.ts}}
		case y < 0.06 && len(recent) > 0:
			m := recent[g.rnd.IntN(len(recent))]
			lr = &chat.LogRecord{Type: chat.TypeDelete, Delete: &chat.Delete{ID: m.ID, Conv: conv, By: m.From, TS: g.ts}}
		case y < 0.065 && len(recent) > 0: // a retried send, written again
			lr = &chat.LogRecord{Type: chat.TypeMessage, Message: recent[len(recent)-1]}
		default:
			g.seq[conv]++
			m := &chat.Message{ID: chat.NewMessageID(time.UnixMilli(g.ts)), Conv: conv, Seq: g.seq[conv], From: from,
				Body: fmt.Sprintf("message %d with a body of a realistic length", g.i), TS: g.ts, CID: fmt.Sprintf("c%d", g.i)}
			if a, b, ok := conv.Members(); ok {
				m.To = a
				if a == from {
					m.To = b
				}
			}
			if len(recent) == 2000 {
				recent = recent[1:]
			}
			g.ids[conv] = append(recent, m)
			if g.dayOld == nil && m.TS >= dayAgo {
				g.dayOld = m
			}
			g.last = m
			lr = &chat.LogRecord{Type: chat.TypeMessage, Message: m}
		}
		out = append(out, kafkabus.Record{Topic: g.chatLog, Key: []byte(conv), Value: lr.Encode()})
	}
	return out
}

// dumpViews returns every key under prefix that the log rebuilds, with a
// canonical rendering of its value: message JSON is decoded (the live
// delete re-encodes it in Lua). Routing and operational keys are left out.
func dumpViews(t *testing.T, rdb redis.UniversalClient, prefix string) map[string]string {
	t.Helper()
	ctx := context.Background()
	skip := map[string]bool{"dedupe": true, "cid": true, "restored": true, "restoring": true, "rebuilding": true, "rebuildpending": true, "gw": true, "sess": true, "gwsess": true, "gwdead": true}
	all, err := rediskit.Keys(ctx, rdb, prefix+"*")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, k := range all {
		k = strings.TrimPrefix(k, prefix)
		kind, _, _ := strings.Cut(k, ":")
		if !skip[kind] {
			keys = append(keys, k)
		}
	}
	out := make(map[string]string, len(keys))
	for start := 0; start < len(keys); start += 2000 {
		batch := keys[start:min(start+2000, len(keys))]
		pipe := rdb.Pipeline()
		types := make([]*redis.StatusCmd, len(batch))
		for i, k := range batch {
			types[i] = pipe.Type(ctx, prefix+k)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		vals := make([]redis.Cmder, len(batch))
		for i, k := range batch {
			switch types[i].Val() {
			case "string":
				vals[i] = pipe.Get(ctx, prefix+k)
			case "hash":
				vals[i] = pipe.HGetAll(ctx, prefix+k)
			case "zset":
				vals[i] = pipe.ZRangeWithScores(ctx, prefix+k, 0, -1)
			case "set":
				vals[i] = pipe.SMembers(ctx, prefix+k)
			default:
				t.Fatalf("key %s has type %s", k, types[i].Val())
			}
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		for i, k := range batch {
			out[k] = render(t, k, vals[i])
		}
	}
	return out
}

func render(t *testing.T, key string, c redis.Cmder) string {
	switch c := c.(type) {
	case *redis.StringCmd:
		return c.Val()
	case *redis.MapStringStringCmd:
		m := c.Val()
		if strings.HasPrefix(key, "msg:") {
			for id, v := range m {
				var msg chat.Message
				if err := json.Unmarshal([]byte(v), &msg); err != nil {
					t.Fatalf("%s[%s]: %v", key, id, err)
				}
				m[id] = fmt.Sprintf("%+v", msg)
			}
		}
		return fmt.Sprint(m) // fmt sorts map keys
	case *redis.ZSliceCmd:
		return fmt.Sprint(c.Val())
	case *redis.StringSliceCmd:
		v := c.Val()
		sort.Strings(v)
		return fmt.Sprint(v)
	}
	return ""
}

func diffViews(t *testing.T, before, after map[string]string) {
	t.Helper()
	if reflect.DeepEqual(before, after) {
		return
	}
	var diffs []string
	for k, v := range before {
		if a, ok := after[k]; !ok {
			diffs = append(diffs, "missing after: "+k)
		} else if a != v {
			diffs = append(diffs, fmt.Sprintf("%s differs:\nbefore %.600s\nafter  %.600s", k, v, a))
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			diffs = append(diffs, "only after: "+k)
		}
	}
	sort.Strings(diffs)
	t.Errorf("%d of %d view keys differ after the rebuild; first ones:\n%s", len(diffs), len(before), strings.Join(diffs[:min(len(diffs), 8)], "\n"))
}

// wipe deletes every key under prefix, the restored markers last (one
// key on a single Redis, restored:{tag} per slot on a cluster). Keys are
// deleted one by one (rediskit.Delete), so they may hash to any slots.
func wipe(t *testing.T, rdb redis.UniversalClient, prefix string) {
	t.Helper()
	ctx := context.Background()
	all, err := rediskit.Keys(ctx, rdb, prefix+"*")
	if err != nil {
		t.Fatal(err)
	}
	var keys, markers []string
	for _, k := range all {
		if kind, _, _ := strings.Cut(strings.TrimPrefix(k, prefix), ":"); kind == "restored" {
			markers = append(markers, k)
		} else {
			keys = append(keys, k)
		}
	}
	for start := 0; start < len(keys); start += 1000 {
		if _, err := rediskit.Delete(ctx, rdb, keys[start:min(start+1000, len(keys))]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := rediskit.Delete(ctx, rdb, markers); err != nil {
		t.Fatal(err)
	}
}
