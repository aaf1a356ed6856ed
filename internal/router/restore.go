package router

import (
	"context"
	"fmt"
	"time"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/kafkabus"
	"github.com/switchboard-chat/switchboard/internal/store"
)

// RestoreStats says what a restore of the seq counters did.
type RestoreStats struct {
	// Conversations is how many seq counters were raised (at most).
	Conversations int
	// Tail is how many chat-log records were read after the checkpoint
	// (and in the dedupe look-back).
	Tail int
	// Dedupes is how many messages had their dedupe record restored.
	Dedupes int
	// Work is the time spent reading and writing, without the wait for
	// RestoreGrace.
	Work time.Duration
	// Took is from the detection of the loss until the restored marker.
	Took time.Duration
}

// tail is what a restore collects from chat-log.
type tail struct {
	seqs    map[chat.ConvID]int64
	recent  []*chat.Message // in the dedupe look-back
	records int
}

// scanTail reads chat-log [from, to) per partition, noting the highest seq
// of each conversation and the messages at or after recent[p].
func (r *Router) scanTail(ctx context.Context, t *tail, from, to, recent map[int]int64) error {
	for p, end := range to {
		err := kafkabus.Scan(ctx, r.kafka, r.cfg.ChatLogTopic, p, from[p], end, func(rec kafkabus.Record) error {
			t.records++
			if rec.Offset >= recent[p] {
				lr, err := decodeLogRecord(rec.Value)
				if err == nil && lr.Type == chat.TypeMessage {
					t.recent = append(t.recent, lr.Message)
					t.seqs[lr.Message.Conv] = max(t.seqs[lr.Message.Conv], lr.Message.Seq)
				}
				return nil
			}
			if conv, seq, ok := seqOf(rec.Value); ok {
				t.seqs[conv] = max(t.seqs[conv], seq)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// restoreSeqs brings the seq counters back after Redis lost its data (the
// loss was detected at detected), while lock is held: from the checkpoint
// topic plus the chat-log tail after it, raise-only. It also restores the
// dedupe records of the messages logged in the last DedupeLookback. A
// send that took its seq from the old Redis reaches the log within
// RestoreGrace of its arrival (the gateways' produce timeout), so the
// marker is set only once detected+RestoreGrace has passed and the tail
// has been read again up to the log's end after that.
func (r *Router) restoreSeqs(ctx context.Context, lock *store.RebuildLock, detected time.Time) (RestoreStats, error) {
	var st RestoreStats
	if err := r.table.BeginRestore(ctx, lock.Owner()); err != nil {
		return st, err
	}
	cp := newCheckpoint()
	if err := r.readCheckpoint(ctx, cp); err != nil {
		return st, err
	}
	first, end, err := r.span(ctx, r.cfg.ChatLogTopic)
	if err != nil {
		return st, err
	}
	recent, err := r.admin.OffsetsAt(ctx, r.cfg.ChatLogTopic, detected.Add(-r.cfg.DedupeLookback))
	if err != nil {
		return st, err
	}
	from := make(map[int]int64, len(end))
	for p := range end {
		c, ok := cp.covered[p]
		if !ok {
			r.log.Warn("restore: no checkpoint of a partition; reading it whole", "partition", p)
		}
		from[p] = max(first[p], min(c, recent[p]))
	}
	t := &tail{seqs: cp.seqs}
	pass := func() error {
		if err := r.scanTail(ctx, t, from, end, recent); err != nil {
			return err
		}
		if err := r.table.RaiseSeqs(ctx, t.seqs); err != nil {
			return err
		}
		if err := r.table.RestoreDedupes(ctx, t.recent); err != nil {
			return err
		}
		st.Conversations += len(t.seqs)
		st.Dedupes += len(t.recent)
		t.seqs, t.recent = map[chat.ConvID]int64{}, t.recent[:0]
		return nil
	}
	if err := pass(); err != nil {
		return st, err
	}
	st.Work = time.Since(detected)
	// Sends that took a seq before the loss may still reach the log: read
	// the tail again once they cannot any more.
	// Also one gateway heartbeat (a third of the lease) and a retry: a
	// gateway registers its sessions again at its first heartbeat after
	// the loss, and sends to users whose sessions were lost wait for it.
	grace := max(r.cfg.RestoreGrace, r.table.Lease()/3+r.table.Lease()/15)
	wait := time.NewTimer(time.Until(detected.Add(grace)))
	select {
	case <-ctx.Done():
		wait.Stop()
		return st, ctx.Err()
	case <-wait.C:
	}
	again := time.Now()
	from = end
	if end, err = r.admin.EndOffsets(ctx, r.cfg.ChatLogTopic); err != nil {
		return st, err
	}
	if err := pass(); err != nil {
		return st, err
	}
	ok, err := r.table.MarkRestoredHolding(ctx, lock.Key(), lock.Owner())
	if err != nil {
		return st, err
	}
	if !ok {
		return st, fmt.Errorf("restore: %w", store.ErrLockLost)
	}
	st.Tail, st.Took, st.Work = t.records, time.Since(detected), st.Work+time.Since(again)
	r.restoreSeconds.Set(st.Took.Seconds())
	r.log.Info("restore: seq counters back, sends accepted", "took", st.Took.Round(time.Millisecond), "work", st.Work.Round(time.Millisecond),
		"conversations", st.Conversations, "tail_records", st.Tail, "dedupe_records", st.Dedupes)
	return st, nil
}
