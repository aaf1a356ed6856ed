//go:build integration

package crash

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard-chat/switchboard/internal/wsclient"
)

// Bounds of the resilient client.
const (
	dialTimeout    = 3 * time.Second
	writeTimeout   = 5 * time.Second
	reconnectBound = 30 * time.Second // a reconnect that takes longer fails the client
	backoffMin     = 25 * time.Millisecond
	backoffMax     = 500 * time.Millisecond
	maxAfterMS     = 5000                   // longest reconnect delay honoured
	closeAfterMax  = 5 * time.Second        // a reconnect frame not followed by a close within it (past after_ms) is a problem
	maxDials       = 500                    // per reconnect
	maxSessions    = 50                     // per client
	gapWaitMin     = 300 * time.Millisecond // a seq gap this old is filled by a sync (only)
	gapWaitMax     = 5 * time.Second        // backoff of a gap that stays open
)

// How a client first came to hold a message.
const (
	bySent  = "sent"  // its own send, acknowledged
	byLive  = "live"  // a live message frame
	bySync  = "sync"  // a sync after a reconnect
	byGap   = "gap"   // a sync filling a seq gap while connected
	byFinal = "final" // the final sync
)

// ack is a send the server acknowledged.
type ack struct {
	cid string
	id  string
	seq int64
	at  time.Time // when sent arrived (after Kafka acknowledged it)
}

// held is a message of the conversation that the client holds.
type held struct {
	id, cid, from, body string
	seq                 int64
	how                 string
	at                  time.Time
	epoch               int
	live                bool // some live message frame carried it
}

// pending is a send not acknowledged yet.
type pending struct {
	n        int // position in send order
	cid, to  string
	body     string
	first    time.Time // first written
	retryAt  time.Time // after an error frame: when to resend (zero: not due)
	attempts int
}

// syncRec is one sync the client asked for.
type syncRec struct {
	epoch    int
	final    bool
	gap      bool // a gap fill: only the conversation
	since    int64
	sentAt   time.Time
	doneAt   time.Time // zero until synced arrived
	latest   int64     // synced's seq of the conversation
	failed   bool      // answered with an error instead of synced
	returned map[string]bool
}

// session is one connection of the client.
type session struct {
	epoch     int
	gw        string
	server    string
	dialStart time.Time // when the client started (re)connecting
	helloAt   time.Time
	endAt     time.Time
	end       string // why it ended
	afterMS   int64  // reconnect frame's delay, -1 when none came
	dials     int    // attempts it took
}

// chatClient is one user of a direct conversation, resilient to gateway
// failures: it holds messages by id, tracks the last contiguous seq, keeps
// unacknowledged sends in an outbox, and on a lost connection (error,
// reconnect frame, 1001) reconnects — to the other gateway first, with a
// short bounded backoff — syncs from its last contiguous seq and resends
// the outbox with the same cids. While connected it fills a seq gap that
// stays open for gapWaitMin with a sync of the conversation only, as
// docs/PROTOCOL.md asks of clients. Its methods are safe for concurrent
// use; run owns the connection.
type chatClient struct {
	t    *testing.T
	user string
	peer string
	conv string
	gws  []*gateway
	// peerClient is the other user's client, when the test has it; verify
	// reads when the peer wrote its sends.
	peerClient *chatClient

	sendMu sync.Mutex // held by every write: resends and syncs precede new sends on a new connection

	mu         sync.Mutex
	changed    chan struct{} // closed and replaced on every state change
	cl         *wsclient.Client
	gwIdx      int
	epoch      int
	sessions   []*session
	finalPhase bool
	syncRetry  time.Time // when a failed sync is due again (zero: none)
	stopped    bool      // run returned
	fatal      error

	nextN    int
	outbox   map[string]*pending
	sendAt   map[string]time.Time
	order    map[string]int // cid → send order
	acked    map[string]ack
	held     map[string]*held
	bySeq    map[int64]string
	contig   int64
	maxSeq   int64     // highest seq held
	gapAt    int64     // contig when the open gap was seen
	gapSince time.Time // when it was seen or last synced for (zero: no gap)
	gapWait  time.Duration
	gapSyncs int
	syncs    []*syncRec
	received int // message frames of the conversation
	dupLive  int // live message frames for an id already held
	dupSync  int // sync message frames for an id already held
	errFrame int // error frames answering sends
	resent   int // sends written again (reconnect or error)
	problems []string
}

func newChatClient(t *testing.T, user, peer string, gws []*gateway, first int) *chatClient {
	a, b := user, peer
	if b < a {
		a, b = b, a
	}
	return &chatClient{
		t: t, user: user, peer: peer, conv: "dm:" + a + ":" + b, gws: gws, gwIdx: first,
		changed: make(chan struct{}), outbox: map[string]*pending{}, sendAt: map[string]time.Time{},
		order: map[string]int{}, acked: map[string]ack{}, held: map[string]*held{}, bySeq: map[int64]string{},
	}
}

// notify wakes waiters; mu must be held.
func (c *chatClient) notify() {
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *chatClient) problemf(format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf("%s: %s", c.user, fmt.Sprintf(format, args...)))
}

// await waits until cond (called with mu held) is true, the timeout passes
// or the client stopped; it reports whether cond held.
func (c *chatClient) await(timeout time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		ok, ch, stopped := cond(), c.changed, c.stopped
		c.mu.Unlock()
		if ok {
			return true
		}
		if stopped {
			return false
		}
		select {
		case <-ch:
		case <-deadline.C:
			return false
		}
	}
}

// start connects to the first gateway and runs the client until stop.
func (c *chatClient) start(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); c.run(ctx) }()
	go func() { defer wg.Done(); c.retryLoop(ctx) }()
	if !c.await(reconnectBound, func() bool { return c.cl != nil || c.fatal != nil }) {
		c.t.Errorf("%s did not connect", c.user)
	}
	return func() { cancel(); wg.Wait() }
}

// run owns the connection: connect, sync, resend, read until the
// connection ends, and again, until ctx is done.
func (c *chatClient) run(ctx context.Context) {
	defer func() {
		c.mu.Lock()
		c.stopped = true
		c.notify()
		c.mu.Unlock()
	}()
	next := c.gwIdx // the first connection goes to the given gateway
	for n := 0; ctx.Err() == nil; n++ {
		if n == maxSessions {
			c.mu.Lock()
			c.fatal = fmt.Errorf("%s reconnected %d times", c.user, n)
			c.problemf("%v", c.fatal)
			c.mu.Unlock()
			return
		}
		cl, s, err := c.connect(ctx, next)
		if err != nil {
			if ctx.Err() == nil {
				c.mu.Lock()
				c.fatal = err
				c.problemf("%v", err)
				c.mu.Unlock()
			}
			return
		}
		c.resume(cl, s)
		c.readUntilEnd(ctx, cl, s)
		if ctx.Err() != nil {
			cl.Close()
			return
		}
		if s.afterMS > 0 {
			t := time.NewTimer(time.Duration(min(s.afterMS, maxAfterMS)) * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		next = (s.gwIndex(c.gws) + 1) % len(c.gws) // the other gateway first
	}
}

func (s *session) gwIndex(gws []*gateway) int {
	for i, g := range gws {
		if g.name == s.gw {
			return i
		}
	}
	return 0
}

// connect dials gateways from index first on, alternating, with a short
// bounded backoff, until one answers hello or reconnectBound passes.
func (c *chatClient) connect(ctx context.Context, first int) (*wsclient.Client, *session, error) {
	s := &session{dialStart: time.Now(), afterMS: -1}
	backoff := backoffMin
	var errs []string
	for attempt := 0; ; attempt++ {
		g := c.gws[(first+attempt)%len(c.gws)]
		dctx, cancel := context.WithTimeout(ctx, dialTimeout)
		cl, resp, err := wsclient.Dial(dctx, g.wsURL()+"?user="+url.QueryEscape(c.user), nil)
		cancel()
		s.dials++
		if err == nil {
			s.gw, s.server, s.helloAt = g.name, cl.Hello.Server, time.Now()
			if s.server != g.id {
				c.mu.Lock()
				c.problemf("hello from %s on %s's address", s.server, g.id)
				c.mu.Unlock()
			}
			return cl, s, nil
		}
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		if len(errs) < 10 {
			errs = append(errs, fmt.Sprintf("%s: %d %v", g.name, status, err))
		}
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		if time.Since(s.dialStart) > reconnectBound || s.dials >= maxDials {
			return nil, nil, fmt.Errorf("no gateway accepted %s within %v (%d dials): %v", c.user, time.Since(s.dialStart).Round(time.Millisecond), s.dials, errs)
		}
		if attempt%len(c.gws) == len(c.gws)-1 {
			// Every gateway refused once: back off (full jitter), then again.
			t := time.NewTimer(time.Duration(rand.Int64N(int64(backoff))) + time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, nil, ctx.Err()
			case <-t.C:
			}
			backoff = min(2*backoff, backoffMax)
		}
	}
}

// resume installs cl as the connection, asks for a sync from the last
// contiguous seq and resends every unacknowledged send with its cid, in
// send order, before any new send can be written.
func (c *chatClient) resume(cl *wsclient.Client, s *session) {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	c.mu.Lock()
	c.epoch++
	s.epoch = c.epoch
	c.sessions = append(c.sessions, s)
	c.cl, c.gwIdx = cl, s.gwIndex(c.gws)
	outbox := c.sortedOutbox()
	c.notify()
	c.mu.Unlock()

	c.mu.Lock()
	final := c.finalPhase
	c.mu.Unlock()
	if err := c.writeSync(cl, final, false); err != nil {
		return // the reader sees the connection end
	}
	for _, p := range outbox {
		if err := c.write(cl, p); err != nil {
			return
		}
		c.mu.Lock()
		c.resent++
		c.mu.Unlock()
	}
}

// sortedOutbox returns the unacknowledged sends in send order; mu must be
// held.
func (c *chatClient) sortedOutbox() []*pending {
	out := make([]*pending, 0, len(c.outbox))
	for _, p := range c.outbox {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].n < out[j].n })
	return out
}

// writeSync sends a sync naming the conversation with the last contiguous
// seq (a gap fill names only it); sendMu must be held.
func (c *chatClient) writeSync(cl *wsclient.Client, final, gap bool) error {
	c.mu.Lock()
	rec := &syncRec{epoch: c.epoch, final: final, gap: gap, since: c.contig, sentAt: time.Now(), returned: map[string]bool{}}
	c.syncs = append(c.syncs, rec)
	req := map[string]any{"type": "sync", "since": map[string]int64{c.conv: c.contig}}
	if gap {
		req["only"] = true
	}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	return cl.SendJSON(ctx, req)
}

// write sends p on cl; sendMu must be held.
func (c *chatClient) write(cl *wsclient.Client, p *pending) error {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	c.mu.Lock()
	p.attempts++
	p.retryAt = time.Time{}
	if p.first.IsZero() {
		p.first = time.Now()
		c.sendAt[p.cid] = p.first
	}
	c.mu.Unlock()
	return cl.SendTo(ctx, p.cid, p.to, p.body)
}

// send queues a new message to the peer and writes it when connected.
func (c *chatClient) send() string {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	c.mu.Lock()
	c.nextN++
	cid := fmt.Sprintf("%s-%05d", c.user, c.nextN)
	p := &pending{n: c.nextN, cid: cid, to: c.peer, body: "body of " + cid}
	c.outbox[cid] = p
	c.order[cid] = c.nextN
	cl := c.cl
	c.mu.Unlock()
	if cl != nil {
		_ = c.write(cl, p) // on failure the reconnect resends it
	}
	return cid
}

// retryLoop resends sends answered with an error once their retry_after_ms
// passed, asks again for a sync that failed, and fills a seq gap that
// stayed open for gapWait (PROTOCOL.md: gap filling while connected), with
// a backoff while it stays open.
func (c *chatClient) retryLoop(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.sendMu.Lock()
		c.mu.Lock()
		cl, now := c.cl, time.Now()
		resync, final := !c.syncRetry.IsZero() && now.After(c.syncRetry), c.finalPhase
		if resync {
			c.syncRetry = time.Time{}
		}
		fill := cl != nil && !resync && !c.gapSince.IsZero() && now.Sub(c.gapSince) >= c.gapWait && c.openSync(c.epoch) == nil
		if fill {
			c.gapSince, c.gapWait = now, min(2*c.gapWait, gapWaitMax)
			c.gapSyncs++
		}
		var due []*pending
		for _, p := range c.sortedOutbox() {
			if !p.retryAt.IsZero() && now.After(p.retryAt) {
				due = append(due, p)
			}
		}
		c.mu.Unlock()
		if cl != nil && (resync || fill) {
			_ = c.writeSync(cl, final, fill)
		}
		if cl != nil {
			for _, p := range due {
				if c.write(cl, p) != nil {
					break
				}
				c.mu.Lock()
				c.resent++
				c.mu.Unlock()
			}
		}
		c.sendMu.Unlock()
	}
}

// readUntilEnd handles frames until the connection ends or ctx is done.
// After a reconnect frame the server must close the connection within
// after_ms plus closeAfterMax; past that the client closes it itself.
func (c *chatClient) readUntilEnd(ctx context.Context, cl *wsclient.Client, s *session) {
	var closeBy time.Time // set by a reconnect frame
	for {
		rctx, cancel := ctx, context.CancelFunc(func() {})
		if !closeBy.IsZero() {
			rctx, cancel = context.WithDeadline(ctx, closeBy)
		}
		f, err := cl.Next(rctx)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			c.mu.Lock()
			c.problemf("%s did not close the connection within %v of a reconnect frame (after_ms %d)", s.gw, closeAfterMax, s.afterMS)
			c.mu.Unlock()
			cl.CloseNow()
			for f, err = cl.Next(ctx); err == nil; f, err = cl.Next(ctx) {
				c.handle(f, s) // what was buffered; ErrClosed once the reader stopped
			}
		}
		if err != nil {
			c.sendMu.Lock() // no write may use the dead connection from now on
			c.mu.Lock()
			s.endAt = time.Now()
			switch {
			case ctx.Err() != nil:
				s.end = "stopped"
			case errors.Is(err, wsclient.ErrClosed):
				if st := websocket.CloseStatus(cl.Err()); st != -1 {
					s.end = fmt.Sprintf("close %d", st)
				} else {
					s.end = fmt.Sprintf("%v", cl.Err())
				}
			default:
				s.end = err.Error()
			}
			c.cl = nil
			c.notify()
			c.mu.Unlock()
			c.sendMu.Unlock()
			return
		}
		c.handle(f, s)
		if f.Type == "reconnect" && closeBy.IsZero() {
			closeBy = time.Now().Add(time.Duration(max(f.AfterMS, 0))*time.Millisecond + closeAfterMax)
		}
	}
}
