package router

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/kafkabus"
	"github.com/switchboard-chat/switchboard/internal/store"
)

// lockTTL is how long the rebuilding lock outlives a router that died
// holding it; a running rebuild refreshes it every lockTTL/3.
const lockTTL = 30 * time.Second

// RebuildStats says what a rebuild did.
type RebuildStats struct {
	KeysDeleted int
	// Records is how many chat-log and chat-state records were replayed.
	Records int
	// Restore is set when the seq counters had to be restored first
	// (Redis had lost its data).
	Restore *RestoreStats
	// Replay is how long replaying the records took.
	Replay time.Duration
	// Took is the whole rebuild, restore included.
	Took time.Duration
}

// Rate returns the records replayed per second.
func (s RebuildStats) Rate() float64 {
	if s.Replay <= 0 {
		return 0
	}
	return float64(s.Records) / s.Replay.Seconds()
}

// Rebuild deletes the materialized views and replays chat-log and
// chat-state from their earliest retained offsets up to their end at the
// start of the rebuild, outside the router's consumer group, in bulk.
// Running routers may apply records at the same time; every write is
// idempotent and raise-only, so the result is the same. The seq counters
// are only raised, never deleted; when the restored marker is missing
// they are restored first (as after a Redis loss), and the dedupe records
// of the last 24 h are restored by the replay. The rebuilding lock is held
// throughout.
func (r *Router) Rebuild(ctx context.Context) (RebuildStats, error) {
	return r.rebuild(ctx, time.Now(), true)
}

// rebuild runs a rebuild under the rebuilding lock; detected is when the
// loss of the seq counters was noticed (if they are lost). Without flush
// it is the rebuild behind a restore, which the views' current content
// cannot spoil, and it does nothing if another router finished it.
func (r *Router) rebuild(ctx context.Context, detected time.Time, flush bool) (RebuildStats, error) {
	var st RebuildStats
	lock, err := r.store.AcquireRebuild(ctx, lockTTL)
	if err != nil {
		return st, fmt.Errorf("rebuild: %w", err)
	}
	defer lock.Release()
	ctx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); keepLock(ctx, lock, cancel) }()
	defer wg.Wait()
	defer cancel(nil)

	fail := func(err error) (RebuildStats, error) {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			err = cause
		}
		return st, fmt.Errorf("rebuild: %w", err)
	}
	if err := r.admin.EnsureTopics(ctx, r.topics()...); err != nil {
		return fail(err)
	}
	restored, err := r.table.Restored(ctx)
	if err != nil {
		return fail(err)
	}
	pending, err := r.store.RebuildPending(ctx)
	if err != nil {
		return fail(err)
	}
	if !flush && restored && !pending {
		return st, nil // another router restored and rebuilt while this one waited
	}
	if err := lock.MarkPending(ctx); err != nil {
		return fail(err)
	}
	if !restored {
		rs, err := r.restoreSeqs(ctx, lock, detected)
		if err != nil {
			return fail(err)
		}
		st.Restore = &rs
	}
	if flush {
		if st.KeysDeleted, err = r.store.FlushViews(ctx); err != nil {
			return fail(err)
		}
	}
	start := time.Now()
	if st.Records, err = r.replay(ctx); err != nil {
		return fail(err)
	}
	st.Replay = time.Since(start)
	if err := lock.Done(ctx); err != nil {
		return fail(err)
	}
	st.Took = time.Since(detected)
	r.lastRebuild.Store(&st)
	r.log.Info("rebuild done", "keys_deleted", st.KeysDeleted, "records", st.Records,
		"took", st.Took.Round(time.Millisecond), "records_per_s", int(st.Rate()))
	return st, nil
}

// keepLock refreshes the rebuilding lock until ctx ends, and cancels the
// rebuild when the lock is lost: Redis lost its data again (the rebuild
// must start over), or the lock expired and another router took it.
func keepLock(ctx context.Context, lock *store.RebuildLock, cancel context.CancelCauseFunc) {
	every(ctx, lockTTL/3, false, func() bool {
		if err := lock.Refresh(ctx, lockTTL); errors.Is(err, store.ErrLockLost) {
			cancel(err)
			return false
		}
		return true
	})
}

// span returns the first and end offsets of each partition of topic.
func (r *Router) span(ctx context.Context, topic string) (first, end map[int]int64, err error) {
	if first, err = r.admin.FirstOffsets(ctx, topic); err != nil {
		return nil, nil, err
	}
	end, err = r.admin.EndOffsets(ctx, topic)
	return first, end, err
}

// replay writes chat-state and then chat-log, from their first offsets to
// their current end, into the views in bulk, and returns how many records
// it read.
func (r *Router) replay(ctx context.Context) (int, error) {
	spans := map[string][2]map[int]int64{}
	total := int64(0)
	for _, topic := range []string{r.cfg.ChatStateTopic, r.cfg.ChatLogTopic} {
		first, end, err := r.span(ctx, topic)
		if err != nil {
			return 0, err
		}
		for p, e := range end {
			if topic == r.cfg.ChatLogTopic && first[p] > 0 {
				r.log.Warn("rebuild: the log no longer holds the start of a partition", "partition", p, "first_offset", first[p])
			}
			total += max(e-first[p], 0)
		}
		spans[topic] = [2]map[int]int64{first, end}
	}
	pr := &progress{r: r, total: total, start: time.Now(), logged: time.Now()}
	r.rebuildProgress.Set(0)
	n, err := r.replayState(ctx, spans[r.cfg.ChatStateTopic][0], spans[r.cfg.ChatStateTopic][1], pr)
	if err != nil {
		return n, err
	}
	m, err := r.replayLog(ctx, spans[r.cfg.ChatLogTopic][0], spans[r.cfg.ChatLogTopic][1], pr)
	return n + m, err
}

// progress reports a replay's progress in the metrics and, every few
// seconds, in the log.
type progress struct {
	r      *Router
	total  int64
	done   atomic.Int64
	start  time.Time
	logged time.Time // owned by the writer
}

func (p *progress) add(n int) {
	done := p.done.Add(int64(n))
	p.r.rebuildRecords.Add(float64(n))
	if p.total > 0 {
		p.r.rebuildProgress.Set(float64(done) / float64(p.total))
	}
	if now := time.Now(); now.Sub(p.logged) >= 5*time.Second {
		p.logged = now
		p.r.log.Info("rebuild progress", "records", done, "of", p.total,
			"records_per_s", int(float64(done)/now.Sub(p.start).Seconds()))
	}
}

// replayState materializes chat-state records in pipelined batches.
func (r *Router) replayState(ctx context.Context, from, to map[int]int64, pr *progress) (int, error) {
	const batch = 5000
	var recs []*chat.StateRecord
	var pos []store.Position
	flush := func() error {
		if err := r.store.BulkEntities(ctx, recs, pos); err != nil {
			return err
		}
		pr.add(len(recs))
		recs, pos = recs[:0], pos[:0]
		return nil
	}
	n := 0
	for p, end := range to {
		err := kafkabus.Scan(ctx, r.kafka, r.cfg.ChatStateTopic, p, from[p], end, func(rec kafkabus.Record) error {
			sr, err := chat.DecodeStateRecord(rec.Value)
			if err != nil {
				r.log.Warn("undecodable chat-state record", "offset", rec.Offset, "err", err)
				sr = nil
			}
			recs, pos = append(recs, sr), append(pos, store.Position{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset})
			n++
			if len(recs) == batch {
				return flush()
			}
			return nil
		})
		if err != nil {
			return n, err
		}
	}
	return n, flush()
}

// chunk is a bounded batch of chat-log records on its way to Redis.
type chunk struct {
	bulk *store.Bulk
	msgs []*chat.Message // their dedupe records are restored
}

// replayLog reads chat-log partitions in large fetches, decodes and
// aggregates RebuildChunk records at a time, and writes each chunk while
// the next one is read.
func (r *Router) replayLog(ctx context.Context, from, to map[int]int64, pr *progress) (int, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// Two chunks in flight are most of the heap, and short-lived: collect
	// less often than for the live router's small garbage.
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	free, full := make(chan *chunk, 2), make(chan *chunk)
	for range 2 {
		free <- &chunk{bulk: r.store.NewBulk(r.cfg.ChatLogTopic)}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for c := range full {
			n := c.bulk.Len()
			err := c.bulk.Write(ctx)
			if err == nil {
				err = r.table.RestoreDedupes(ctx, c.msgs)
			}
			if err != nil {
				cancel(err)
				return
			}
			pr.add(n)
			c.msgs = c.msgs[:0]
			free <- c
		}
	}()
	n := 0
	cur := <-free
	send := func() error {
		select {
		case full <- cur:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		select {
		case cur = <-free:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	err := func() error {
		for p, end := range to {
			err := kafkabus.Scan(ctx, r.kafka, r.cfg.ChatLogTopic, p, from[p], end, func(rec kafkabus.Record) error {
				lr, err := decodeLogRecord(rec.Value)
				if err != nil {
					r.log.Warn("undecodable chat-log record", "partition", rec.Partition, "offset", rec.Offset, "err", err)
					lr = nil
				}
				cur.bulk.Add(lr, rec.Partition, rec.Offset)
				if lr != nil && lr.Type == chat.TypeMessage {
					cur.msgs = append(cur.msgs, lr.Message)
				}
				n++
				if cur.bulk.Len() >= r.cfg.RebuildChunk {
					return send()
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		if cur.bulk.Len() > 0 {
			return send()
		}
		return nil
	}()
	close(full)
	wg.Wait()
	if cause := context.Cause(ctx); err == nil && cause != nil {
		err = cause // the writer failed after the last chunk was handed over
	}
	return n, err
}

// restoreLoop checks every RestoreCheck whether Redis lost its data (the
// restored marker is gone) or a rebuild died unfinished, and then
// restores the seq counters and rebuilds the views behind them.
// The first check reads every restored marker, the later ones a sample
// (route.Table.RestoredSample: a lost shard shows at once, a single lost
// marker within 64 checks).
func (r *Router) restoreLoop(ctx context.Context) {
	full := true
	every(ctx, r.cfg.RestoreCheck, true, func() bool { r.restoreIfLost(ctx, full); full = false; return true })
}

// restoreIfLost restores and rebuilds when the restored marker is missing
// (an empty log needs neither) or a rebuild was left unfinished and
// nobody holds the lock.
func (r *Router) restoreIfLost(ctx context.Context, full bool) {
	detected := time.Now()
	ok, err := r.table.MarkRestoredIfLogEmpty(ctx, full, func(ctx context.Context) (map[int]int64, error) {
		return r.admin.EndOffsets(ctx, r.cfg.ChatLogTopic)
	})
	if err != nil {
		return
	}
	if ok {
		pending, err := r.store.RebuildPending(ctx)
		if err != nil || !pending {
			return
		}
		if busy, err := r.store.Rebuilding(ctx); err != nil || busy {
			return
		}
		r.log.Warn("a rebuild was left unfinished; finishing it")
	} else {
		r.log.Warn("Redis lost its state; restoring the seq counters, then rebuilding the views from the log")
	}
	if _, err := r.rebuild(ctx, detected, false); err != nil && ctx.Err() == nil {
		r.log.Warn("automatic restore failed; retrying", "err", err)
	}
}
