package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// plan is one message to send: from a session to a session (a direct
// message) or to the public room (to == nil), with the number of our
// sessions that should receive it.
type plan struct {
	from, to *session
	toIdx    int // index of to in the run's sessions, -1 for public
	expect   int32
}

// traffic sends paced messages over sessions and tracks every one of
// them: send time, acknowledgement, deliveries. Arrays are indexed by the
// message number carried in the cid; every field is safe for concurrent
// use.
type traffic struct {
	t0      time.Time
	sendAt  []atomic.Int64 // ns since t0, 0 = not sent
	expect  []atomic.Int32
	recv    []atomic.Int32 // receiving session + 1 for a DM
	acked   []atomic.Bool
	failed  []atomic.Bool
	got     []atomic.Int32
	next    atomic.Int64
	nAcked  atomic.Int64
	nFailed atomic.Int64
	nExpect atomic.Int64
	nGot    atomic.Int64
	nSynced atomic.Int64
	ack     hist
	del     hist
	// phase splits the delivery latency in two (the sync scenario).
	phase    atomic.Int32
	delPhase [2]hist
	lag      hist // how late each send left against its schedule
	series   *series
	ooo      atomic.Int64 // deliveries whose seq was not above the last one seen in that conversation
	mu       sync.Mutex
	errs     map[string]int
}

func newTraffic(capacity, seconds int) *traffic {
	return &traffic{
		sendAt: make([]atomic.Int64, capacity),
		expect: make([]atomic.Int32, capacity),
		recv:   make([]atomic.Int32, capacity),
		acked:  make([]atomic.Bool, capacity),
		failed: make([]atomic.Bool, capacity),
		got:    make([]atomic.Int32, capacity),
		series: newSeries(seconds),
		errs:   map[string]int{},
	}
}

func (t *traffic) since() int64 { return int64(time.Since(t.t0)) }

func (t *traffic) valid(idx int) bool {
	return idx >= 0 && idx < len(t.sendAt) && t.sendAt[idx].Load() != 0
}

func (t *traffic) countError(code string) {
	t.mu.Lock()
	t.errs[code]++
	t.mu.Unlock()
}

// handle is every session's event handler.
func (t *traffic) handle(s *session, ev event) {
	switch ev.kind {
	case evAck:
		if t.valid(ev.idx) && !t.acked[ev.idx].Swap(true) {
			now := t.since()
			lat := time.Duration(now - t.sendAt[ev.idx].Load())
			t.ack.Record(lat)
			t.series.ack(now, lat)
			t.nAcked.Add(1)
		}
	case evDeliver:
		if ev.seq > 0 && !ev.batch {
			if s.seqs == nil {
				s.seqs = map[string]int64{}
			}
			if ev.seq <= s.seqs[ev.conv] {
				t.ooo.Add(1)
			} else {
				s.seqs[ev.conv] = ev.seq
			}
		}
		if t.valid(ev.idx) {
			now := t.since()
			lat := time.Duration(now - t.sendAt[ev.idx].Load())
			t.got[ev.idx].Add(1)
			t.nGot.Add(1)
			t.del.Record(lat)
			t.delPhase[t.phase.Load()].Record(lat)
			t.series.deliver(now, lat)
		}
	case evSynced:
		t.nSynced.Add(1)
		if s.synced != nil {
			select {
			case s.synced <- ev.synced:
			default:
			}
		}
	case evError:
		t.countError(ev.code)
		if ev.idx < 0 && s.synced != nil {
			// An error about no send: on a session waiting for its sync,
			// the sync's answer (nil: failed).
			s.syncRetry.Store(int64(ev.retryAfter))
			select {
			case s.synced <- nil:
			default:
			}
		}
		if t.valid(ev.idx) && !t.failed[ev.idx].Swap(true) {
			t.nFailed.Add(1)
			t.nExpect.Add(-int64(t.expect[ev.idx].Load()))
		}
	}
}

// send paces messages from `senders` goroutines at rate in total until
// the duration, the count or the capacity runs out; pick chooses message
// idx for sender g. It returns the number sent and how long it took.
func (t *traffic) send(ctx context.Context, rate float64, senders int, duration time.Duration, limit int,
	pick func(g, idx int) plan) (int, time.Duration) {
	limit = min(limit, len(t.sendAt))
	interval := time.Duration(float64(senders) * float64(time.Second) / rate)
	start := time.Now()
	end := start.Add(duration)
	var wg sync.WaitGroup
	for g := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Stagger the senders over one interval.
			next := start.Add(interval * time.Duration(g) / time.Duration(senders))
			for ctx.Err() == nil {
				if d := time.Until(next); d > 0 {
					time.Sleep(d)
				}
				now := time.Now()
				if now.After(end) {
					return
				}
				t.lag.Record(now.Sub(next))
				next = next.Add(interval)
				idx := int(t.next.Add(1) - 1)
				if idx >= limit {
					return
				}
				p := pick(g, idx)
				var frame []byte
				if p.to == nil {
					frame = p.from.tgt.public(idx, p.from.name)
				} else {
					frame = p.from.tgt.dm(idx, p.from.name, p.to.name)
					t.recv[idx].Store(int32(p.toIdx + 1))
				}
				t.expect[idx].Store(p.expect)
				t.nExpect.Add(int64(p.expect))
				at := t.since()
				t.sendAt[idx].Store(at)
				t.series.sent(at)
				wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				err := p.from.write(wctx, frame)
				cancel()
				if err != nil {
					t.countError("write_failed")
					if !t.failed[idx].Swap(true) {
						t.nFailed.Add(1)
						t.nExpect.Add(-int64(p.expect))
					}
				}
			}
		}()
	}
	wg.Wait()
	return min(int(t.next.Load()), limit), time.Since(start)
}

// complete reports whether every message sent was answered and every
// delivery expected arrived.
func (t *traffic) complete(sent int) bool {
	return t.nAcked.Load()+t.nFailed.Load() >= int64(sent) && t.nGot.Load() >= t.nExpect.Load()
}

// drain waits for outstanding answers and deliveries until none arrived
// for d (or 6×d in all): an overloaded cluster still delivering a backlog
// is late, not lossy; what has not come once the flow stopped for d is
// counted lost.
func (t *traffic) drain(ctx context.Context, sent int, d time.Duration) {
	hardStop := time.Now().Add(6 * d)
	progress := func() int64 { return t.nAcked.Load() + t.nFailed.Load() + t.nGot.Load() }
	last, lastAt := progress(), time.Now()
	for !t.complete(sent) && ctx.Err() == nil && time.Now().Before(hardStop) {
		if p := progress(); p != last {
			last, lastAt = p, time.Now()
		} else if time.Since(lastAt) >= d {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tally fills the report's counts: acknowledged messages whose expected
// deliveries did not all arrive at a session that stayed connected are
// losses; extra deliveries are duplicates.
func (t *traffic) tally(r *Report, sent int, sessions []*session) {
	r.Sent = sent
	for i := range sent {
		exp := int64(t.expect[i].Load())
		got := int64(t.got[i].Load())
		if t.acked[i].Load() {
			r.Acked++
			r.ExpectedDeliveries += exp
			r.Delivered += min(got, exp)
			if got < exp {
				if rv := t.recv[i].Load(); rv > 0 && sessions[rv-1].dropped() {
					r.ReceiverGone += exp - got
				} else {
					r.Lost += exp - got
				}
			}
		} else if !t.failed[i].Load() {
			r.Unanswered++
		}
		if got > exp {
			r.Duplicates += got - exp
		}
	}
	r.OutOfOrder = t.ooo.Load()
	t.mu.Lock()
	r.Errors = map[string]int{}
	for k, v := range t.errs {
		r.Errors[k] = v
	}
	t.mu.Unlock()
	for _, s := range sessions {
		if s.dropped() {
			r.DroppedSessions++
		}
	}
	r.Ack = t.ack.Summary()
	r.Delivery = t.del.Summary()
	r.SendLag = t.lag.Summary()
	r.Series = t.series.seconds(r.Sent > 0)
}

// runTraffic is the body of the traffic scenarios: it starts the
// sessions' readers, samples CPU, sends, drains, closes and reports.
// during, when set, runs beside the sending (it may replace sessions in
// place) and is waited for before the drain; sendDone is closed when the
// sending ends.
func runTraffic(ctx context.Context, o *options, r *Report, sessions []*session, senders int,
	pick func(g, idx int) plan, during func(t *traffic, sendDone <-chan struct{}) error) error {
	capacity := min(o.maxMessages, int(o.rate*o.duration.Seconds()*1.05)+senders+16)
	t := newTraffic(capacity, int((o.duration+6*o.drain).Seconds())+3)
	t.t0 = time.Now()
	for _, s := range sessions {
		go s.run(t.handle)
	}
	defer closeAll(sessions)
	cpu := newCPUSampler(o)
	cpu.start()
	progress := startProgress(ctx, o, t)
	sendDone := make(chan struct{})
	hookErr := make(chan error, 1)
	if during != nil {
		go func() { hookErr <- during(t, sendDone) }()
	} else {
		hookErr <- nil
	}
	sent, sendDur := t.send(ctx, o.rate, senders, o.duration, o.maxMessages, pick)
	close(sendDone)
	if err := <-hookErr; err != nil {
		progress()
		return err
	}
	t.drain(ctx, sent, o.drain)
	progress()
	r.DurationSec = sendDur.Seconds()
	r.AchievedRate = float64(sent) / sendDur.Seconds()
	t.tally(r, sent, sessions)
	r.AckedRate = float64(r.Acked) / sendDur.Seconds()
	r.DeliveriesPerSec = float64(r.Delivered) / sendDur.Seconds()
	r.CPU = cpu.stop(r.Acked, r.Delivered)
	return nil
}

func closeAll(sessions []*session) {
	for _, s := range sessions {
		if s != nil {
			s.closeNow(true)
		}
	}
}

// startProgress prints a live line to stderr every second (unless -quiet)
// and returns a function that stops it.
func startProgress(ctx context.Context, o *options, t *traffic) func() {
	if o.quiet {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		var last int64
		for {
			select {
			case <-done:
				fmt.Fprintln(os.Stderr)
				return
			case <-ctx.Done():
				return
			case <-tick.C:
				n := min(t.next.Load(), int64(len(t.sendAt)))
				t.mu.Lock()
				errs := len(t.errs)
				t.mu.Unlock()
				fmt.Fprintf(os.Stderr, "\r%5.0fs sent %d (%d/s) acked %d delivered %d/%d ack p99 %.1f ms delivery p99 %.1f ms error kinds %d   ",
					time.Since(t.t0).Seconds(), n, n-last, t.nAcked.Load(), t.nGot.Load(), t.nExpect.Load(),
					t.ack.Quantile(.99), t.del.Quantile(.99), errs)
				last = n
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// sortedKeys is the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
