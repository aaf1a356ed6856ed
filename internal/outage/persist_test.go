//go:build integration

package outage

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/gateway"
	"github.com/switchboard-chat/switchboard/internal/rediskit"
	"github.com/switchboard-chat/switchboard/internal/wsclient"
)

// refusal is a send answered with an error, and when it was written.
type refusal struct {
	written time.Time
	answer  rx
}

// retrier sends direct messages one at a time, as a client does: a send
// answered unavailable is written again with the same cid after its
// retry_after_ms (at most 200 ms), until it is acknowledged.
type retrier struct {
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	acked   []rx
	refused []refusal
	err     error
}

func retrySends(p *peer, to, prefix string, pause time.Duration) *retrier {
	r := &retrier{stop: make(chan struct{}), done: make(chan struct{})}
	p.t.Cleanup(r.halt)
	go func() {
		defer close(r.done)
		for i := 0; ; i++ {
			cid := fmt.Sprintf("%s-%04d", prefix, i)
			for {
				mark, written := p.count(), time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := p.cl.SendJSON(ctx, wsclient.Send{Type: "send", CID: cid, Body: "retried " + cid, To: to})
				cancel()
				f, ok := p.await(mark, 10*time.Second, isAnswer(cid))
				r.mu.Lock()
				switch {
				case err != nil || !ok:
					r.err = fmt.Errorf("send %s: %v, answered: %v; %s", cid, err, ok, p.describe())
				case f.Type == "sent":
					r.acked = append(r.acked, f)
				case f.Code == "unavailable":
					r.refused = append(r.refused, refusal{written: written, answer: f})
				default:
					r.err = fmt.Errorf("send %s answered %s", cid, f.Raw)
				}
				failed, sent := r.err != nil, f.Type == "sent"
				r.mu.Unlock()
				if failed {
					return
				}
				if sent {
					break
				}
				time.Sleep(min(time.Duration(f.RetryAfterMS)*time.Millisecond, 200*time.Millisecond))
			}
			select {
			case <-r.stop:
				return
			case <-time.After(pause):
			}
		}
	}()
	return r
}

// halt stops after the send in progress is acknowledged.
func (r *retrier) halt() {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	<-r.done
}

// results returns the acknowledged and the refused sends so far.
func (r *retrier) results() ([]rx, []refusal, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.acked), slices.Clone(r.refused), r.err
}

// awaitAcked waits until n sends were acknowledged after at.
func (r *retrier) awaitAcked(t *testing.T, at time.Time, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		acked, _, err := r.results()
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for _, f := range acked {
			if f.At.After(at) {
				got++
			}
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d sends acknowledged within %v after %s", got, n, timeout, at.Format("15:04:05.000"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Redis persists (AOF): a restart under traffic is a short outage, not a
// loss. The restored marker and the seq counters survive it, so no router
// rebuilds anything; sends are refused only while Redis is down (and
// succeed when retried with the same cid), seqs carry on without a gap or
// a repeat, and every acknowledged message is in the history exactly once.
func TestARestartOfThePersistedRedisUnderTrafficRebuildsNothingAndRefusesNothingAfterIt(t *testing.T) {
	const redisTimeout = time.Second
	in := startInfra(t)
	g := in.startGateway("gw-aof", func(c *gateway.Config) { c.RedisTimeout = redisTimeout })
	in.startRouter(nil)
	alice, bob := g.dial("alice"), g.dial("bob")
	conv := chat.DirectConv("alice", "bob")
	ctx := context.Background()
	warm := warmUp(t, alice, bob, 3, "before the restart")
	markerKey := prefix + "restored:" + rediskit.SlotTag(0) // one of the markers (one per slot)
	marker, err := in.inspect.Get(ctx, markerKey).Result()
	if err != nil {
		t.Fatalf("restored marker before the restart: %v", err)
	}

	rs := retrySends(alice, "bob", "s", 20*time.Millisecond)
	rs.awaitAcked(t, time.Time{}, 30, 30*time.Second)
	tStop := time.Now()
	in.stopRedis()
	tDown := time.Now()
	// Down until sends were refused (go-redis retries a command once the
	// connection broke, so a short restart refuses nothing).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, refused, _ := rs.results(); len(refused) >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no send refused within 10s of Redis stopping")
		}
	}
	tStart := time.Now()
	in.startRedis()
	tUp := time.Now()
	if !in.restored() {
		t.Errorf("the restored marker did not survive the restart")
	}
	ready := g.awaitReady(200, 10*time.Second)
	tReady := time.Now()
	// Sends go on for a while after the restart: at 20 ms apart, 100 of
	// them outlast a heartbeat interval (lease/3), by which the gateway has
	// registered its sessions again if the janitor purged them while Redis
	// was down longer than the lease; the last one must then reach bob live.
	rs.awaitAcked(t, tUp, 100, 30*time.Second)
	rs.halt()
	acked, refused, err := rs.results()
	if err != nil {
		t.Fatal(err)
	}

	// Refused only while Redis was down: every refused send was written
	// before it answered again, or within one Redis timeout after (a
	// pooled connection that the restart closed fails once).
	var lastRefused time.Time
	for _, r := range refused {
		if r.written.After(tUp.Add(redisTimeout)) {
			t.Errorf("send %s written %v after Redis was back was refused: %s", r.answer.CID, r.written.Sub(tUp).Round(time.Millisecond), r.answer.Raw)
		}
		if r.answer.RetryAfterMS <= 0 {
			t.Errorf("refusal without retry_after_ms: %s", r.answer.Raw)
		}
		lastRefused = maxTime(lastRefused, r.answer.At)
	}
	var firstAfter rx
	for _, f := range acked {
		if f.At.After(tUp) {
			firstAfter = f
			break
		}
	}
	t.Logf("Redis stopped in %v, started in %v (down %v); %d sends refused, the last answered %v after Redis was back; first send acknowledged %v after it; readyz 200 %v after it (%v)",
		tDown.Sub(tStop).Round(time.Millisecond), tUp.Sub(tStart).Round(time.Millisecond), tUp.Sub(tStop).Round(time.Millisecond),
		len(refused), lastRefused.Sub(tUp).Round(time.Millisecond), firstAfter.At.Sub(tUp).Round(time.Millisecond),
		tReady.Sub(tUp).Round(time.Millisecond), ready.Checks)

	// One sender, one send at a time: the seqs are 4, 5, 6, … (3 warm-up
	// messages), each given once, across the restart.
	for i, f := range acked {
		if want := int64(4 + i); f.Seq != want {
			t.Errorf("send %s acknowledged with seq %d, want %d: the seq counter did not carry on", f.CID, f.Seq, want)
			break
		}
	}

	// No rebuild: the marker is the one set before the restart (a rebuild
	// sets a new one), and the history holds every acknowledged message
	// exactly once.
	if now, err := in.inspect.Get(ctx, markerKey).Result(); err != nil || now != marker {
		t.Errorf("restored marker %q (%v) after the restart, %q before: it was set again", now, err, marker)
	}
	want := make(map[string]int64, len(warm)+len(acked))
	for _, f := range append(warm, acked...) {
		want[f.ID] = f.Seq
	}
	var hist []*chat.Message
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		hist = in.history(conv)
		have := 0
		for _, m := range hist {
			if _, ok := want[m.ID]; ok {
				have++
			}
		}
		if have >= len(want) || time.Now().After(deadline) {
			break
		}
	}
	seen := make(map[string]int)
	for _, m := range hist {
		seen[m.ID]++
		if seq, ok := want[m.ID]; ok && seq != m.Seq {
			t.Errorf("history holds %s as seq %d, acknowledged as %d", m.ID, m.Seq, seq)
		}
	}
	for id := range want {
		if seen[id] != 1 {
			t.Errorf("history holds acknowledged message %s %d times", id, seen[id])
		}
	}
	t.Logf("%d sends acknowledged (seqs %d..%d), %d refused while Redis restarted; history holds %d messages of %s",
		len(acked), acked[0].Seq, acked[len(acked)-1].Seq, len(refused), len(hist), conv)

	// bob stayed connected and registered: the last message reached him live.
	last := acked[len(acked)-1]
	if m := bob.expect(0, 10*time.Second, "the last message, live", isMessage(last.CID)); m.ID != last.ID {
		t.Errorf("bob got %s for %s", m.Raw, last.Raw)
	}
}
