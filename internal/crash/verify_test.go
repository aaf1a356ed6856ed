//go:build integration

package crash

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"
)

// loggedAck is an acknowledged send and who made it.
type loggedAck struct {
	ack
	from string
}

// clientReport is what one client ended with.
type clientReport struct {
	user                     string
	acked, received, held    int
	missing, extra           int
	dupLive, dupSync         int
	errFrames, resent        int
	peerLive, peerSync       int // the peer's messages, by how they first arrived
	peerGap, peerFinal       int
	gapSyncs                 int
	notLiveWhileConnected    int // the peer's messages sent and acked during one session that never came live
	sessions                 []*session
	syncs                    []*syncRec
	contig, maxSeq, sessionN int
}

// verify checks both clients after the final sync and returns the report
// line and the ids some client misses; every violated invariant is a test
// error.
func verify(t *testing.T, clients ...*chatClient) (string, map[string]bool) {
	t.Helper()
	for _, c := range clients {
		c.mu.Lock()
		defer c.mu.Unlock()
	}
	// Every acknowledged message, by id; a cid has one id, an id one seq,
	// a seq one id.
	all := map[string]loggedAck{}
	bySeq := map[int64]string{}
	for _, c := range clients {
		for _, a := range c.acked {
			if prev, ok := all[a.id]; ok {
				t.Errorf("id %s acknowledged for %s/%s and %s/%s", a.id, prev.from, prev.cid, c.user, a.cid)
				continue
			}
			all[a.id] = loggedAck{ack: a, from: c.user}
			if other, ok := bySeq[a.seq]; ok {
				t.Errorf("seq %d acknowledged for %s and %s", a.seq, other, a.id)
			}
			bySeq[a.seq] = a.id
		}
		for _, p := range c.problems {
			t.Errorf("protocol: %s", p)
		}
		if len(c.outbox) > 0 {
			t.Errorf("%s: %d sends never acknowledged", c.user, len(c.outbox))
		}
		// One sender's sends take seqs in the order it made them.
		acks := make([]ack, 0, len(c.acked))
		for _, a := range c.acked {
			acks = append(acks, a)
		}
		sort.Slice(acks, func(i, j int) bool { return c.order[acks[i].cid] < c.order[acks[j].cid] })
		for i := 1; i < len(acks); i++ {
			if acks[i].seq <= acks[i-1].seq {
				t.Errorf("%s: %s got seq %d after %s got %d", c.user, acks[i].cid, acks[i].seq, acks[i-1].cid, acks[i-1].seq)
				break
			}
		}
	}

	var reports []clientReport
	missingIDs := map[string]bool{}
	for _, c := range clients {
		r := clientReport{
			user: c.user, acked: len(c.acked), received: c.received, held: len(c.held),
			dupLive: c.dupLive, dupSync: c.dupSync, errFrames: c.errFrame, resent: c.resent,
			sessions: c.sessions, syncs: c.syncs, contig: int(c.contig), sessionN: len(c.sessions), gapSyncs: c.gapSyncs,
		}
		var missing []string
		for id, a := range all {
			m, ok := c.held[id]
			if !ok {
				r.missing++
				missingIDs[id] = true
				if len(missing) < 10 {
					missing = append(missing, fmt.Sprintf("%s/%s seq %d", a.from, a.cid, a.seq))
				}
				continue
			}
			if m.seq != a.seq || m.body != "body of "+a.cid || (m.cid != "" && m.cid != a.cid) {
				t.Errorf("%s holds %s as seq %d cid %q %q, acknowledged as seq %d cid %s", c.user, id, m.seq, m.cid, m.body, a.seq, a.cid)
			}
		}
		if r.missing > 0 {
			t.Errorf("%s misses %d acknowledged messages, e.g. %s", c.user, r.missing, strings.Join(missing, ", "))
		}
		for id, m := range c.held {
			if _, ok := all[id]; !ok {
				r.extra++
				t.Errorf("%s holds %s (seq %d, cid %s from %s) that no send acknowledged", c.user, id, m.seq, m.cid, m.from)
			}
		}
		// Held messages, in seq order, have strictly increasing seqs.
		seqs := make([]int64, 0, len(c.held))
		for _, m := range c.held {
			seqs = append(seqs, m.seq)
		}
		sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
		for i := 1; i < len(seqs); i++ {
			if seqs[i] <= seqs[i-1] {
				t.Errorf("%s holds seq %d twice", c.user, seqs[i])
			}
		}
		if len(seqs) > 0 {
			r.maxSeq = int(seqs[len(seqs)-1])
		}
		checkSyncs(t, c, all, &r)
		reports = append(reports, r)
	}

	var received, missing, dups, gapFilled int
	var parts []string
	for _, r := range reports {
		received += r.received
		missing += r.missing
		dups += r.dupLive + r.dupSync
		gapFilled += r.peerGap
		parts = append(parts, fmt.Sprintf("%s: acked=%d received=%d held=%d missing=%d extra=%d duplicates=%d (live %d, sync %d) "+
			"peer-messages live/sync/gap/final=%d/%d/%d/%d not-live-while-connected=%d gap-syncs=%d send-errors=%d resent=%d sessions=%d",
			r.user, r.acked, r.received, r.held, r.missing, r.extra, r.dupLive+r.dupSync, r.dupLive, r.dupSync,
			r.peerLive, r.peerSync, r.peerGap, r.peerFinal, r.notLiveWhileConnected, r.gapSyncs, r.errFrames, r.resent, r.sessionN))
	}
	for _, r := range reports {
		for _, s := range r.sessions {
			t.Logf("%s session %d on %s: connecting took %v (%d dials), up %s, ended %q, reconnect after_ms=%d",
				r.user, s.epoch, s.gw, s.helloAt.Sub(s.dialStart).Round(time.Millisecond), s.dials,
				s.helloAt.Format("15:04:05.000"), s.end, s.afterMS)
		}
		for _, s := range r.syncs {
			kind := "reconnect"
			switch {
			case s.final:
				kind = "final"
			case s.gap:
				kind = "gap"
			}
			t.Logf("%s %s sync (session %d) since %d: %d returned, synced %d after %v, failed %v",
				r.user, kind, s.epoch, s.since, len(s.returned), s.latest, s.doneAt.Sub(s.sentAt).Round(time.Millisecond), s.failed)
		}
	}
	line := fmt.Sprintf("report: acked=%d received=%d missing=%d duplicates=%d gap-filled=%d", len(all), received, missing, dups, gapFilled)
	for _, p := range parts {
		t.Log("  " + p)
	}
	if missing != 0 {
		t.Errorf("missing=%d, want 0", missing)
	}
	return line, missingIDs
}

// checkSyncs checks the sync invariants of DESIGN.md against c's record:
// synced never reports a seq below one acknowledged before the sync began,
// and a message acknowledged before a sync began is held once that sync
// answered. It also counts how the peer's messages first arrived.
func checkSyncs(t *testing.T, c *chatClient, all map[string]loggedAck, r *clientReport) {
	t.Helper()
	for _, s := range c.syncs {
		if s.failed || s.doneAt.IsZero() {
			continue
		}
		for _, a := range all {
			if a.at.Before(s.sentAt) && s.latest < a.seq {
				t.Errorf("%s: synced reported seq %d although %s/%s (seq %d) was acknowledged %v before the sync began",
					c.user, s.latest, a.from, a.cid, a.seq, s.sentAt.Sub(a.at).Round(time.Millisecond))
				break
			}
		}
	}
	for id, a := range all {
		if a.from == c.user {
			continue
		}
		m := c.held[id]
		if m == nil {
			c.explainMissing(t, a)
		} else {
			switch m.how {
			case byLive:
				r.peerLive++
			case bySync:
				r.peerSync++
			case byGap:
				r.peerGap++
			case byFinal:
				r.peerFinal++
			}
		}
		// The first sync that began after the ack must have returned it,
		// unless it was held by then (its since covers only held seqs).
		for _, s := range c.syncs {
			if s.failed || s.doneAt.IsZero() || !s.sentAt.After(a.at) {
				continue
			}
			if (m == nil || m.at.After(s.doneAt)) && !s.returned[id] {
				t.Errorf("%s: %s/%s (seq %d) was acknowledged %v before a sync since %d began; that sync (synced %d, %d returned) did not return it",
					c.user, a.from, a.cid, a.seq, s.sentAt.Sub(a.at).Round(time.Millisecond), s.since, s.latest, len(s.returned))
			}
			break
		}
		if m == nil {
			continue
		}
		// Sent while one session of c was up, from before the send to a
		// second after the ack: it should have come live (DESIGN: the send
		// path, step 5).
		sentAt := c.peerSendAt(id, a)
		if !m.live && !sentAt.IsZero() {
			for _, s := range c.sessions {
				if s.helloAt.Before(sentAt) && (s.endAt.IsZero() || s.endAt.After(a.at.Add(time.Second))) {
					r.notLiveWhileConnected++
					break
				}
			}
		}
	}
}

// explainMissing logs when a missing message was sent and acknowledged,
// relative to c's connections and syncs.
func (c *chatClient) explainMissing(t *testing.T, a loggedAck) {
	t.Helper()
	sentAt := c.peerSendAt("", a)
	ts := func(x time.Time) string {
		if x.IsZero() {
			return "-"
		}
		return x.Format("15:04:05.000000")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s misses %s/%s seq %d id %s: written %s, acknowledged %s;", c.user, a.from, a.cid, a.seq, a.id, ts(sentAt), ts(a.at))
	for _, s := range c.sessions {
		fmt.Fprintf(&b, " session %d on %s dialled %s hello %s ended %s;", s.epoch, s.gw, ts(s.dialStart), ts(s.helloAt), ts(s.endAt))
	}
	for _, s := range c.syncs {
		fmt.Fprintf(&b, " sync since %d sent %s synced %d at %s (%d returned);", s.since, ts(s.sentAt), s.latest, ts(s.doneAt), len(s.returned))
	}
	t.Log(b.String())
}

// peerSendAt is when the peer first wrote the send of a (the peer client
// records it); zero when unknown.
func (c *chatClient) peerSendAt(_ string, a loggedAck) time.Time {
	if c.peerClient == nil {
		return time.Time{}
	}
	return c.peerClient.sendAt[a.cid] // peerClient.mu is held by verify
}
