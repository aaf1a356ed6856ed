package gateway

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/switchboard-chat/switchboard/internal/protocol"
	"github.com/switchboard-chat/switchboard/internal/route"
)

// maxCommitSends bounds the sends one commit takes (from every connection
// together): one Redis round trip and one Kafka produce. commitPrepares
// commits are in their Redis round trip at once (a slow round trip, on a
// busy Redis, does not hold the next commit back).
const (
	maxCommitSends = 1024
	commitPrepares = 2
)

// sendJob is one connection's (or one REST request's) batch of sends,
// validated, waiting for the committer.
type sendJob struct {
	sends []*pendingSend
	done  chan struct{} // closed once every send has its plan or error
}

// committer runs the send path of the whole gateway as a group commit:
// the batches that arrive while a commit is being prepared are taken
// together, so the number of Redis round trips grows with the rate of
// commits, not with the number of connections sending.
//
// One loop collects the commits; each runs on a goroutine of its own: its
// prepare (dedupe, seqs and routes in one pipelined round trip, which also
// carries the acknowledgements of earlier commits; at most commitPrepares
// at once, while the next batch grows), then its produce, so the next
// commit is prepared while the last is being acknowledged (the producer
// batches concurrent produces per partition). A connection has at most one batch in the committer (its
// request loop waits for the answers), so its sends stay in order.
type committer struct {
	s    *sendPath
	jobs chan *sendJob
	// acked are sends whose messages Kafka acknowledged, to be recorded
	// with the next prepare (or on their own when no commit follows soon).
	mu    sync.Mutex
	acked []route.Acked
	poke  chan struct{} // there are acked sends to record
	stop  chan struct{} // closed when the loop has exited
	// prepares holds a token per commit in its Redis round trip.
	prepares chan struct{}
	// flights are the produces in progress; the loop waits for them when
	// it stops.
	flights sync.WaitGroup
}

func newCommitter(s *sendPath) *committer {
	// jobs is unbuffered: a job is either taken by the loop or refused
	// once it has stopped, never left behind in a buffer.
	return &committer{s: s, jobs: make(chan *sendJob), poke: make(chan struct{}, 1), stop: make(chan struct{}),
		prepares: make(chan struct{}, commitPrepares)}
}

// run hands job to the committer and waits until every send of it has an
// answer. Once the committer has stopped (the gateway is shutting down),
// the sends are refused as unavailable.
func (c *committer) run(ctx context.Context, job *sendJob) {
	if !job.pending() {
		return
	}
	select {
	case c.jobs <- job:
		<-job.done
	case <-c.stop:
		failAll(job.live(), protocol.CodeUnavailable, "the gateway is shutting down, retry with the same cid")
	}
}

// pending reports whether some send of the job needs the send path.
func (j *sendJob) pending() bool { return len(j.live()) > 0 }

// live returns the job's sends that go through the send path: the first
// of each cid, valid.
func (j *sendJob) live() []*pendingSend {
	var out []*pendingSend
	for _, p := range j.sends {
		if p.first == nil && p.err == nil {
			out = append(out, p)
		}
	}
	return out
}

// loop prepares commits until ctx ends, then waits for the produces in
// flight and records their acknowledgements.
func (c *committer) loop(ctx context.Context) {
	defer close(c.stop)
	for {
		var batch []*sendJob // new each time: the commit's goroutine keeps it
		select {
		case <-ctx.Done():
			c.flights.Wait()
			c.flushAcked(context.WithoutCancel(ctx))
			return
		case j := <-c.jobs:
			batch = append(batch, j)
		case <-c.poke:
			// Acknowledgements with no commit to ride: record them unless
			// a commit is waiting.
			select {
			case j := <-c.jobs:
				batch = append(batch, j)
			default:
				c.flushAcked(ctx)
				continue
			}
		}
		// A prepare slot; while none is free the next batch grows.
		select {
		case c.prepares <- struct{}{}:
		case <-ctx.Done():
			for _, j := range batch {
				failAll(j.live(), protocol.CodeUnavailable, "the gateway is shutting down, retry with the same cid")
				close(j.done)
			}
			continue
		}
		n := len(batch[0].sends)
	more:
		for n < maxCommitSends {
			select {
			case j := <-c.jobs:
				batch = append(batch, j)
				n += len(j.sends)
			default:
				break more
			}
		}
		c.flights.Add(1)
		go func() {
			defer c.flights.Done()
			c.commit(ctx, batch)
		}()
	}
}

// commit prepares the sends of jobs in one round trip, frees its prepare
// slot, then produces them and answers the jobs.
func (c *committer) commit(ctx context.Context, jobs []*sendJob) {
	s := c.s
	released := false
	release := func() {
		if !released {
			released = true
			<-c.prepares
		}
	}
	defer release()
	now := time.Now()
	deadline := now.Add(s.produceTimeout)
	var live []*pendingSend
	var reqs []route.SendRequest
	for _, j := range jobs {
		for _, p := range j.live() {
			// A send reaches Kafka (or fails) within ProduceTimeout of its
			// arrival, whatever it waited for: a restore relies on it.
			if !p.in.Received.IsZero() {
				deadline = minTime(deadline, p.in.Received.Add(s.produceTimeout))
			}
			live = append(live, p)
			reqs = append(reqs, p.req)
		}
	}
	finish := func() {
		for _, j := range jobs {
			close(j.done)
		}
	}
	if !now.Before(deadline) {
		failAll(live, protocol.CodeUnavailable, "the message log did not answer in time, retry with the same cid")
		finish()
		return
	}
	c.mu.Lock()
	acked := c.acked
	c.acked = nil
	c.mu.Unlock()
	rctx, cancel := context.WithDeadline(ctx, minTime(deadline, now.Add(s.redisTimeout)))
	start := time.Now()
	plans, gateways, err := s.table.PrepareSendsMarking(rctx, reqs, acked)
	cancel()
	release()
	s.m.redisLatency.Observe(time.Since(start).Seconds())
	switch {
	case errors.Is(err, route.ErrNotRestored):
		failAll(live, protocol.CodeUnavailable, errNotRestoredMessage)
	case err != nil:
		s.log.Warn("send lookup failed", "err", err)
		failAll(live, protocol.CodeUnavailable, "message store unavailable, retry with the same cid")
	}
	if err != nil {
		// The acknowledgements are harmless to lose (a retry of these
		// cids rewrites the same id and seq), but try them again.
		c.addAcked(acked)
		finish()
		return
	}
	for i, p := range live {
		p.plan = plans[i]
		p.err = refusal(p.req.Conv, p.plan.Refused)
	}
	produced := s.produceSends(ctx, live, gateways, deadline)
	finish()
	done := make([]route.Acked, 0, len(produced))
	for _, p := range produced {
		done = append(done, route.Acked{From: p.user, Conv: p.req.Conv, CID: p.in.CID, Plan: p.plan})
	}
	c.addAcked(done)
}

// errNotRestoredMessage answers a send refused while Redis, or the part of
// a Redis Cluster it needs, is being restored from the log.
const errNotRestoredMessage = "message store is being restored from the log, retry with the same cid"

// addAcked queues acknowledgements for the next prepare and wakes the loop.
func (c *committer) addAcked(a []route.Acked) {
	if len(a) == 0 {
		return
	}
	c.mu.Lock()
	c.acked = append(c.acked, a...)
	c.mu.Unlock()
	select {
	case c.poke <- struct{}{}:
	default:
	}
}

// flushAcked records the queued acknowledgements on their own.
func (c *committer) flushAcked(ctx context.Context) {
	c.mu.Lock()
	acked := c.acked
	c.acked = nil
	c.mu.Unlock()
	if len(acked) == 0 {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, c.s.redisTimeout)
	defer cancel()
	if err := c.s.table.MarkAcked(rctx, acked); err != nil {
		// Harmless: a retry of these cids rewrites the same id and seq.
		c.s.log.Warn("mark acked failed", "err", err)
	}
}
