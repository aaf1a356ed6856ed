//go:build integration

package crash

import (
	"fmt"
	"time"

	"github.com/switchboard-chat/switchboard/internal/wsclient"
)

// handle applies one frame to the client's state.
func (c *chatClient) handle(f wsclient.Frame, s *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.notify()
	now := time.Now()
	switch f.Type {
	case "sent":
		if f.Conv != c.conv {
			c.problemf("sent for %s in %s", f.CID, f.Conv)
			return
		}
		if prev, ok := c.acked[f.CID]; ok {
			if prev.id != f.ID || prev.seq != f.Seq {
				c.problemf("cid %s acknowledged as %s/%d, then as %s/%d", f.CID, prev.id, prev.seq, f.ID, f.Seq)
			}
		} else {
			c.acked[f.CID] = ack{cid: f.CID, id: f.ID, seq: f.Seq, at: now}
		}
		delete(c.outbox, f.CID)
		p := "body of " + f.CID
		c.hold(&held{id: f.ID, cid: f.CID, from: c.user, body: p, seq: f.Seq, how: bySent, at: now, epoch: s.epoch}, false)
	case "message":
		if f.Conv != c.conv {
			return // the public room's recent window
		}
		c.received++
		how := byLive
		if f.Batch > 0 {
			how = bySync
			if rec := c.openSync(s.epoch); rec != nil {
				rec.returned[f.ID] = true
				if rec.final {
					how = byFinal
				} else if rec.gap {
					how = byGap
				}
			} else {
				c.problemf("sync message %s (batch %d) with no sync outstanding", f.ID, f.Batch)
			}
		}
		dup := c.hold(&held{id: f.ID, cid: f.CID, from: f.From, body: f.Body, seq: f.Seq, how: how, at: now, epoch: s.epoch}, true)
		if f.Batch == 0 {
			c.held[f.ID].live = true
		}
		if dup && f.Batch > 0 {
			c.dupSync++
		} else if dup {
			c.dupLive++
		}
	case "synced":
		rec := c.openSync(s.epoch)
		if rec == nil {
			c.problemf("synced %s with no sync outstanding", f.Raw)
			return
		}
		rec.doneAt, rec.latest = now, f.Convs[c.conv]
	case "error":
		if f.CID == "" {
			// A sync that failed: ask again.
			c.problemf("error frame %s", f.Raw)
			if rec := c.openSync(s.epoch); rec != nil {
				rec.doneAt, rec.failed = now, true
				c.syncRetry = now.Add(time.Duration(max(f.RetryAfterMS, 100)) * time.Millisecond)
			}
			return
		}
		c.errFrame++
		if p, ok := c.outbox[f.CID]; ok {
			p.retryAt = now.Add(time.Duration(max(f.RetryAfterMS, 100)) * time.Millisecond)
		}
	case "reconnect":
		s.afterMS = f.AfterMS
	case "pong", "presence", "typing", "receipt":
	default:
		c.problemf("unexpected frame %s", f.Raw)
	}
}

// openSync returns the oldest sync of this connection still waiting for
// synced; mu must be held.
func (c *chatClient) openSync(epoch int) *syncRec {
	for _, r := range c.syncs {
		if r.epoch == epoch && r.doneAt.IsZero() {
			return r
		}
	}
	return nil
}

// hold records m; it reports whether m's id was already held. mu must be
// held.
func (c *chatClient) hold(m *held, fromFrame bool) bool {
	if prev, ok := c.held[m.id]; ok {
		if prev.seq != m.seq || (fromFrame && prev.body != m.body) {
			c.problemf("message %s seen as seq %d %q and seq %d %q", m.id, prev.seq, prev.body, m.seq, m.body)
		}
		return true
	}
	if other, ok := c.bySeq[m.seq]; ok {
		c.problemf("seq %d held for %s and %s", m.seq, other, m.id)
	}
	c.held[m.id] = m
	c.bySeq[m.seq] = m.id
	c.maxSeq = max(c.maxSeq, m.seq)
	for {
		if _, ok := c.bySeq[c.contig+1]; !ok {
			break
		}
		c.contig++
	}
	switch {
	case c.maxSeq == c.contig:
		c.gapSince = time.Time{}
	case c.gapSince.IsZero() || c.gapAt != c.contig:
		c.gapAt, c.gapSince, c.gapWait = c.contig, time.Now(), gapWaitMin
	}
	return false
}

// waitAcked waits until the client has n acknowledged sends.
func (c *chatClient) waitAcked(n int, timeout time.Duration) bool {
	return c.await(timeout, func() bool { return len(c.acked) >= n })
}

// drainOutbox waits until every send is acknowledged.
func (c *chatClient) drainOutbox(timeout time.Duration) bool {
	return c.await(timeout, func() bool { return len(c.outbox) == 0 })
}

// finalSync syncs once more from the last contiguous seq and waits until
// a sync asked for from now on (this one, a retry of it, or the sync of a
// new connection) answered synced.
func (c *chatClient) finalSync(timeout time.Duration) error {
	start := time.Now()
	c.mu.Lock()
	c.finalPhase = true
	c.mu.Unlock()
	if !c.await(timeout, func() bool { return c.cl != nil }) {
		return fmt.Errorf("%s: not connected for the final sync", c.user)
	}
	c.sendMu.Lock()
	c.mu.Lock()
	cl := c.cl
	c.mu.Unlock()
	if cl != nil {
		_ = c.writeSync(cl, true, false) // if it fails, the reconnect syncs
	}
	c.sendMu.Unlock()
	ok := c.await(timeout-time.Since(start), func() bool {
		for _, r := range c.syncs {
			if r.final && !r.sentAt.Before(start) && !r.doneAt.IsZero() && !r.failed {
				return true
			}
		}
		return false
	})
	if !ok {
		return fmt.Errorf("%s: no synced within %v of the final sync", c.user, timeout)
	}
	return nil
}
