//go:build integration

// Package outage stops, restarts and suspends Kafka and Redis underneath a
// running gateway and router (both in-process) and checks how they and the
// gateway's clients live through it, and that they leave no goroutine
// behind once stopped.
//
// These tests never touch the shared broker and Redis of `make test`
// (127.0.0.1:9092 and 6379): every test starts its own Kafka broker and
// Redis with the project's scripts (deploy/kafka/kafka.sh,
// deploy/redis/redis.sh) on free loopback ports between 20000 and 29999,
// with state under $TMPDIR/switchboard-outage/<pid>-<n>, and stops them and
// removes that directory when it ends (OUTAGE_KEEP_STATE=1 keeps it, logs
// included, for a look afterwards). The broker jars come from the
// repository's .cache/kafka. Processes left behind by a test binary that
// was killed (a -timeout, a Ctrl-C) are stopped by the next run.
package outage

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/internal/health"
	"github.com/switchboard-chat/switchboard/internal/wsclient"
)

const (
	// stateRoot, under os.TempDir(), holds one directory per started infra.
	stateRoot = "switchboard-outage"
	// envFile in an infra directory records the scripts' environment, so a
	// later run can stop what a killed run left behind.
	envFile = "infra.env"
	// scriptTimeout bounds one start or stop script.
	scriptTimeout = 4 * time.Minute
	// prefix is the Redis key prefix of the gateways and the router.
	prefix = "sb:"
	// lease is the gateways' lease: they heartbeat every third of it, and
	// a gateway that finds its registration gone registers its sessions
	// again on that heartbeat.
	lease = 3 * time.Second
	// leftoverSlack is how many more goroutines than before a test started
	// its gateway and router may still run once both have stopped.
	leftoverSlack = 3
	// readyBound bounds a /readyz answer: its checks run concurrently,
	// each bounded by health.Timeout.
	readyBound = health.Timeout + 500*time.Millisecond
	// restoreExpected bounds how long a router may need, once Redis lost
	// its data, to restore these tests' short chat-log (until then every
	// send is refused): it waits out the gateways' 5 s produce timeout
	// (a send that took its seq from the old Redis may still reach the
	// log) before it vouches for the counters. restoreLimit is what the
	// tests wait before they give up.
	restoreExpected = 5*time.Second + 3*time.Second
	restoreLimit    = 60 * time.Second
)

// checkRestoreTime fails the test when sends were refused for longer than
// restoreExpected after Redis lost its data.
func checkRestoreTime(t *testing.T, took time.Duration) {
	t.Helper()
	if took > restoreExpected {
		t.Errorf("sends were refused for %v after Redis lost its data, over the %v a restore of this short log may take",
			took.Round(time.Millisecond), restoreExpected)
	}
}

var (
	instances atomic.Int64
	setupOnce sync.Once
)

// waitDelivering waits until a note to self from one session of a probe
// user reaches the probe's second session through the gateway's topic.
func (g *gw) waitDelivering(timeout time.Duration) {
	t := g.t
	t.Helper()
	user := fmt.Sprintf("probe%d", instances.Add(1))
	sender, watcher := g.dial(user), g.dial(user)
	defer sender.close()
	defer watcher.close()
	deadline := time.Now().Add(timeout)
	for i := 0; ; i++ {
		cid := fmt.Sprintf("probe-%d", i)
		mark := watcher.count()
		sender.send(cid, user, "probe")
		if _, ok := watcher.await(mark, 2*time.Second, isMessage(cid)); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway %s never delivered its own probe within %v; sender saw %s", g.id, timeout, sender.describe())
		}
	}
}

func (g *gw) wsURL(user string) string {
	return "ws://" + g.srv.Addr().String() + "/ws?user=" + url.QueryEscape(user)
}

// readiness is a /readyz answer.
type readiness struct {
	Status int
	Ready  bool              `json:"ready"`
	Checks map[string]string `json:"checks"`
	Took   time.Duration
}

// ready asks the gateway's /readyz.
func (g *gw) ready() readiness {
	g.t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	start := time.Now()
	resp, err := client.Get("http://" + g.srv.Addr().String() + "/readyz")
	if err != nil {
		g.t.Fatalf("readyz: %v", err)
	}
	defer resp.Body.Close()
	var r readiness
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		g.t.Fatalf("readyz body: %v", err)
	}
	r.Status, r.Took = resp.StatusCode, time.Since(start)
	return r
}

// checkNotReady checks a /readyz answer given while only failing (kafka
// or redis) is unreachable: 503 within readyBound, that check failing and
// every other one passing, except sends, which reads Redis.
func checkNotReady(t *testing.T, r readiness, failing string) {
	t.Helper()
	if r.Status != http.StatusServiceUnavailable || r.Ready {
		t.Errorf("readyz while %s is unreachable: %d ready=%v, want 503", failing, r.Status, r.Ready)
	}
	if r.Took > readyBound {
		t.Errorf("readyz took %v while %s is unreachable, over %v", r.Took.Round(time.Millisecond), failing, readyBound)
	}
	want := map[string]bool{"kafka": true, "redis": true, "sends": true, "draining": true}
	for name, v := range r.Checks {
		ok := v == "ok" || (name == "draining" && v == "no")
		switch {
		case !want[name]:
			t.Errorf("readyz reports an unknown check %s=%q", name, v)
		case name == "sends" && failing == "redis":
			if ok {
				t.Errorf("readyz reports sends as %q while Redis is unreachable", v)
			}
		case name == failing && ok:
			t.Errorf("readyz reports %s as %q while it is unreachable", name, v)
		case name != failing && !ok:
			t.Errorf("readyz reports %s as failing (%q) while only %s is unreachable", name, v, failing)
		}
		delete(want, name)
	}
	for name := range want {
		t.Errorf("readyz has no %s check: %v", name, r.Checks)
	}
}

// awaitReady polls /readyz until it answers want, and returns the answer.
func (g *gw) awaitReady(want int, timeout time.Duration) readiness {
	g.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := g.ready()
		if r.Status == want {
			return r
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("readyz still %d %v after %v, want %d", r.Status, r.Checks, timeout, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rx is a frame and when it arrived.
type rx struct {
	wsclient.Frame
	At time.Time
}

// peer is a client whose frames are all recorded, in order, by one reader
// goroutine that ends when the connection does.
type peer struct {
	t    *testing.T
	user string
	cl   *wsclient.Client
	done chan struct{}

	mu     sync.Mutex
	frames []rx
	more   chan struct{} // closed and replaced when a frame arrives
}

// dial connects user; the connection closes when the test ends.
func (g *gw) dial(user string) *peer {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, _, err := wsclient.Dial(ctx, g.wsURL(user), nil)
	if err != nil {
		g.t.Fatalf("dial %s as %s: %v", g.id, user, err)
	}
	p := &peer{t: g.t, user: user, cl: cl, done: make(chan struct{}), more: make(chan struct{})}
	go func() {
		defer close(p.done)
		for {
			f, err := cl.Next(context.Background())
			if err != nil {
				return
			}
			p.mu.Lock()
			p.frames = append(p.frames, rx{Frame: f, At: time.Now()})
			close(p.more)
			p.more = make(chan struct{})
			p.mu.Unlock()
		}
	}()
	g.t.Cleanup(p.close)
	return p
}

// close drops the connection and waits for the reader.
func (p *peer) close() {
	p.cl.CloseNow()
	<-p.done
}

// send sends a direct message.
func (p *peer) send(cid, to, body string) time.Time {
	p.t.Helper()
	return p.write(wsclient.Send{Type: "send", CID: cid, Body: body, To: to})
}

// sendConv sends to a conversation.
func (p *peer) sendConv(cid, conv, body string) time.Time {
	p.t.Helper()
	return p.write(wsclient.Send{Type: "send", CID: cid, Body: body, Conv: conv})
}

func (p *peer) write(s wsclient.Send) time.Time {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	at := time.Now()
	if err := p.cl.SendJSON(ctx, s); err != nil {
		p.t.Fatalf("%s sends %s: %v", p.user, s.CID, err)
	}
	return at
}

// count is how many frames arrived so far.
func (p *peer) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.frames)
}

// snapshot returns every frame so far.
func (p *peer) snapshot() []rx {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.frames)
}

// await returns the first frame at index from or later that matches,
// waiting up to timeout.
func (p *peer) await(from int, timeout time.Duration, match func(wsclient.Frame) bool) (rx, bool) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		p.mu.Lock()
		for i := from; i < len(p.frames); i++ {
			if match(p.frames[i].Frame) {
				f := p.frames[i]
				p.mu.Unlock()
				return f, true
			}
		}
		from = len(p.frames)
		more := p.more
		p.mu.Unlock()
		select {
		case <-more:
		case <-p.done:
			return rx{}, false
		case <-timer.C:
			return rx{}, false
		}
	}
}

// expect is await that fails the test when nothing matches.
func (p *peer) expect(from int, timeout time.Duration, what string, match func(wsclient.Frame) bool) rx {
	p.t.Helper()
	f, ok := p.await(from, timeout, match)
	if !ok {
		p.t.Fatalf("%s: %s got nothing matching within %v; %s", what, p.user, timeout, p.describe())
	}
	return f
}

// describe summarises the last frames, for failure messages.
func (p *peer) describe() string {
	fs := p.snapshot()
	var b strings.Builder
	fmt.Fprintf(&b, "%d frames", len(fs))
	for _, f := range fs[max(0, len(fs)-5):] {
		fmt.Fprintf(&b, "; %s", f.Raw)
	}
	if err := p.cl.Err(); err != nil {
		fmt.Fprintf(&b, "; connection ended: %v", err)
	}
	return b.String()
}

// isAnswer matches the sent or error answering cid.
func isAnswer(cid string) func(wsclient.Frame) bool {
	return func(f wsclient.Frame) bool { return (f.Type == "sent" || f.Type == "error") && f.CID == cid }
}

func isMessage(cid string) func(wsclient.Frame) bool {
	return func(f wsclient.Frame) bool { return f.Type == "message" && f.CID == cid }
}

// sendLog records sends made by a pacer.
type sendLog struct {
	CID string
	At  time.Time
}

// pacer sends a new direct message every interval until stopped.
type pacer struct {
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
	mu       sync.Mutex
	sent     []sendLog
	err      error
}

// pace starts sending from p to `to` with cids prefix-000, prefix-001, …,
// until halted or the test ends.
func pace(p *peer, to, prefix string, every time.Duration) *pacer {
	pc := &pacer{stop: make(chan struct{}), done: make(chan struct{})}
	p.t.Cleanup(func() {
		pc.stopOnce.Do(func() { close(pc.stop) })
		<-pc.done
	})
	go func() {
		defer close(pc.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i := 0; ; i++ {
			cid := fmt.Sprintf("%s-%03d", prefix, i)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			at := time.Now()
			err := p.cl.SendJSON(ctx, wsclient.Send{Type: "send", CID: cid, Body: "paced " + cid, To: to})
			cancel()
			pc.mu.Lock()
			if err != nil {
				pc.err = fmt.Errorf("send %s: %w", cid, err)
				pc.mu.Unlock()
				return
			}
			pc.sent = append(pc.sent, sendLog{CID: cid, At: at})
			pc.mu.Unlock()
			select {
			case <-pc.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return pc
}

// halt stops the pacer and returns what it sent.
func (pc *pacer) halt(t *testing.T) []sendLog {
	t.Helper()
	pc.stopOnce.Do(func() { close(pc.stop) })
	<-pc.done
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.err != nil {
		t.Fatalf("pacer: %v", pc.err)
	}
	return slices.Clone(pc.sent)
}

// sends returns what the pacer has sent so far.
func (pc *pacer) sends() []sendLog {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return slices.Clone(pc.sent)
}

// answered pairs each send with the first answer to its cid in frames.
type answered struct {
	sendLog
	Answer  rx
	Ok      bool // an answer arrived
	Latency time.Duration
}

func answers(sends []sendLog, frames []rx) []answered {
	first := make(map[string]rx)
	for _, f := range frames {
		if f.Type == "sent" || f.Type == "error" {
			if _, seen := first[f.CID]; !seen && f.CID != "" {
				first[f.CID] = f
			}
		}
	}
	out := make([]answered, len(sends))
	for i, s := range sends {
		out[i].sendLog = s
		if f, ok := first[s.CID]; ok {
			out[i].Answer, out[i].Ok, out[i].Latency = f, true, f.At.Sub(s.At)
		}
	}
	return out
}

// latencyStats summarises latencies as "n=… min=… median=… max=…".
func latencyStats(ds []time.Duration) string {
	if len(ds) == 0 {
		return "n=0"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return fmt.Sprintf("n=%d min=%v median=%v p90=%v max=%v", len(s), r(s[0]), r(s[len(s)/2]), r(s[len(s)*9/10]), r(s[len(s)-1]))
}

// settledGoroutines waits (bounded) until the goroutine count holds still
// for a few readings, and returns it.
func settledGoroutines(t *testing.T) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	last, same := runtime.NumGoroutine(), 0
	for same < 5 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		n := runtime.NumGoroutine()
		if n == last {
			same++
		} else {
			last, same = n, 0
		}
	}
	return last
}

// awaitGoroutinesAtMost waits until at most limit goroutines run; it fails
// the test with a goroutine dump when they do not settle in time.
func awaitGoroutinesAtMost(t *testing.T, limit int, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n := runtime.NumGoroutine()
		if n <= limit {
			return n
		}
		if time.Now().After(deadline) {
			var b bytes.Buffer
			_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
			t.Errorf("%d goroutines after %v, want at most %d:\n%s", n, timeout, limit, b.String())
			return n
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// warmUp sends n direct messages from alice to bob with cids w-0…, and
// returns the sent frames once each was acknowledged and delivered.
func warmUp(t *testing.T, alice, bob *peer, n int, body string) []rx {
	t.Helper()
	sent := make([]rx, 0, n)
	for i := 0; i < n; i++ {
		cid := fmt.Sprintf("w-%d", i)
		alice.send(cid, "bob", body)
		f := alice.expect(0, 15*time.Second, "warm-up answer", isAnswer(cid))
		if f.Type != "sent" {
			t.Fatalf("warm-up send answered %s", f.Raw)
		}
		bob.expect(0, 15*time.Second, "warm-up delivery", isMessage(cid))
		sent = append(sent, f)
	}
	return sent
}
