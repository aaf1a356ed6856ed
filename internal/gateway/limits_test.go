package gateway

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/protocol"
)

// restSend is one REST send's rate check at now, as postMessage makes it.
func restSend(s *Server, u chat.UserID, now time.Time) *protocol.Error {
	return (&conn{s: s, sendLimit: s.sendLimits.limiter(u)}).allowSend(&protocol.Inbound{Type: protocol.TypeSend, CID: "c"}, now)
}

func TestRESTOnlySendsShareOneBucketThatTripsAndRecovers(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s := &Server{sendLimits: newSendLimits(2, 3), m: newMetrics(prometheus.NewRegistry(), func() float64 { return 0 })}
	for i := range 3 {
		if perr := restSend(s, "alice", t0); perr != nil {
			t.Fatalf("send %d within the burst: %v", i+1, perr)
		}
	}
	perr := restSend(s, "alice", t0)
	if perr == nil || perr.Code != protocol.CodeRateLimited || perr.RetryAfterMS != 500 {
		t.Fatalf("fourth send at once: %+v, want rate_limited with retry_after_ms 500", perr)
	}
	if perr := restSend(s, "bob", t0); perr != nil {
		t.Fatalf("another user's send: %v", perr)
	}
	if perr := restSend(s, "alice", t0.Add(499*time.Millisecond)); perr == nil {
		t.Fatal("a send before the retry time was accepted")
	}
	if perr := restSend(s, "alice", t0.Add(500*time.Millisecond)); perr != nil {
		t.Fatalf("a send at the retry time: %v", perr)
	}
}

func TestRESTAndConnectionSendsShareTheBucket(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s := &Server{sendLimits: newSendLimits(1, 2), m: newMetrics(prometheus.NewRegistry(), func() float64 { return 0 })}
	ws := s.sendLimits.acquire("alice")
	defer s.sendLimits.release("alice")
	if !ws.AllowN(t0, 2) {
		t.Fatal("the connection could not spend the burst")
	}
	if perr := restSend(s, "alice", t0); perr == nil || perr.Code != protocol.CodeRateLimited {
		t.Fatalf("REST send after the connection spent the burst: %v, want rate_limited", perr)
	}
}

func TestIdleBucketsAreDroppedOnlyWhenFull(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newSendLimits(1, 2)
	l.now = func() time.Time { return now }
	held := l.acquire("held") // a connection: never dropped
	held.AllowN(now, 2)
	l.limiter("spent").AllowN(now, 2) // empty: dropping it would refill it
	for i := range minSweep - 2 {
		l.limiter(chat.UserID(fmt.Sprintf("idle%d", i))) // full: dropping changes nothing
	}
	l.limiter("trigger") // the map holds minSweep buckets: sweeps first
	if _, ok := l.users["held"]; !ok {
		t.Fatal("a bucket a connection holds was dropped")
	}
	if _, ok := l.users["spent"]; !ok {
		t.Fatal("a bucket that has not refilled was dropped")
	}
	if n := len(l.users); n != 3 {
		t.Fatalf("%d buckets after the sweep, want 3 (held, spent, trigger)", n)
	}
	if l.limiter("spent").AllowN(now, 1) {
		t.Fatal("the spent bucket was replaced by a full one")
	}
	l.release("held")
	now = now.Add(2 * time.Second) // everything refilled
	for i := range minSweep {
		l.limiter(chat.UserID(fmt.Sprintf("again%d", i)))
	}
	if _, ok := l.users["held"]; ok {
		t.Fatal("a released, refilled bucket survived the sweep")
	}
	if n := len(l.users); n > minSweep+1 {
		t.Fatalf("%d buckets: the map is not bounded by the sweep", n)
	}
}

// A sync costs 1 + conversations/100 tokens of the user's sync budget, at
// most the burst: a user syncing many conversations over and over is told
// to wait, small syncs are cheap, and any sync passes once the budget is
// full.
func TestSyncsSpendTheUsersBudgetByTheirSize(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s := &syncStage{budget: newSendLimits(1, 12), m: newMetrics(prometheus.NewRegistry(), func() float64 { return 0 })}
	if perr := s.allow("alice", 1000, t0); perr != nil {
		t.Fatalf("a first sync of 1,000 conversations (11 tokens of 12): %v", perr)
	}
	perr := s.allow("alice", 1000, t0)
	if perr == nil || perr.Code != protocol.CodeRateLimited || perr.RetryAfterMS != 10000 {
		t.Fatalf("a second one at once: %+v, want rate_limited with retry_after_ms 10000", perr)
	}
	if perr := s.allow("alice", -1, t0); perr != nil {
		t.Fatalf("the check before a sync, 1 token left: %v", perr)
	}
	if perr := s.allow("alice", 5, t0); perr != nil {
		t.Fatalf("a small sync (1 token, 1 left): %v", perr)
	}
	if perr := s.allow("alice", -1, t0); perr == nil || perr.RetryAfterMS != 1000 {
		t.Fatalf("the check before a sync on an empty budget: %+v, want rate_limited with retry_after_ms 1000", perr)
	}
	if perr := s.allow("bob", 1000, t0); perr != nil {
		t.Fatalf("another user's sync: %v", perr)
	}
	if perr := s.allow("alice", 1000, t0.Add(10999*time.Millisecond)); perr == nil {
		t.Fatal("a large sync before its tokens were back was accepted")
	}
	if perr := s.allow("alice", 1000, t0.Add(11*time.Second)); perr != nil {
		t.Fatalf("a large sync once its tokens were back: %v", perr)
	}
	if perr := s.allow("carol", 50000, t0); perr != nil {
		t.Fatalf("a sync costing more than the burst, on a full budget: %v", perr)
	}
	unlimited := &syncStage{budget: newSendLimits(-1, 0), m: s.m}
	for range 100 {
		if perr := unlimited.allow("alice", 1000, t0); perr != nil {
			t.Fatalf("unlimited: %v", perr)
		}
	}
}
