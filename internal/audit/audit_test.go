package audit

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/switchboard-chat/switchboard/internal/kafkabus"
)

type fakeProducer struct {
	mu   sync.Mutex
	recs []kafkabus.Record
}

func (f *fakeProducer) Produce(_ context.Context, recs []kafkabus.Record) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.recs = append(f.recs, recs...)
	return nil
}

func TestRecordsAreWrittenAsJSONAndFlushedOnStop(t *testing.T) {
	p := &fakeProducer{}
	l := New(Config{Server: "gw-1", Queue: 8}, p, nil, nil)
	l.Registered("alice", "10.0.0.1")
	l.LoginRefused(strings.Repeat("x", 1000), "10.0.0.2", "bad credentials")
	l.Membership(MemberAdded, "alice", "g:team", "bob", "member")
	l.Deleted("alice", "g:team", "01ABC")
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // Run writes what is queued, then returns
	l.Run(ctx)
	if len(p.recs) != 4 {
		t.Fatalf("%d records written, want 4", len(p.recs))
	}
	var r Record
	if err := json.Unmarshal(p.recs[1].Value, &r); err != nil {
		t.Fatal(err)
	}
	if r.Type != LoginFailed || r.Server != "gw-1" || r.TS == 0 || len(r.Target) > 70 || p.recs[1].Topic != DefaultTopic {
		t.Fatalf("record %+v on %s", r, p.recs[1].Topic)
	}
	if string(p.recs[2].Key) != "alice" {
		t.Fatalf("key %q, want the actor", p.recs[2].Key)
	}
}

func TestAFullQueueDropsInsteadOfBlocking(t *testing.T) {
	l := New(Config{Queue: 2}, &fakeProducer{}, nil, nil)
	for range 10 {
		l.Registered("alice", "") // never blocks: Run is not running
	}
	if len(l.queue) != 2 {
		t.Fatalf("queue holds %d, want 2", len(l.queue))
	}
	var nilLog *Log
	nilLog.Registered("alice", "") // a nil Log records nothing
}
