package gateway

import (
	"context"
	"log/slog"
	"time"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/protocol"
	"github.com/switchboard-chat/switchboard/internal/route"
	"github.com/switchboard-chat/switchboard/internal/store"
)

// A connection's requests go through small stages: the send path (send.go,
// commit.go), sync (sync.go), history (history.go), and receipts and typing
// (events.go). A connection owns its requests: its request worker hands
// each one to its stage and answers sends itself. A stage never sees the
// connection, only what it needs of it, a requester.

// requester is what a stage knows of the session whose request it serves.
type requester interface {
	// who is the session's user and session id.
	who() (chat.UserID, string)
	// reply queues an answer to the session's own frame, waiting while its
	// queue is full; false means the session is closing.
	reply(frame []byte) bool
	// waitRoom waits until n more bytes fit the session's queue while half
	// of it stays free for live traffic; false means it is closing.
	waitRoom(n int) bool
	// enqueue queues a frame without waiting (see conn.enqueue).
	enqueue(frame []byte, kind frameKind)
	// gone is closed once the session is closing.
	gone() <-chan struct{}
}

// stages are the gateway's request stages, shared by every connection.
type stages struct {
	send    *sendPath
	sync    *syncStage
	history *historyStage
	events  *eventStage
}

// views tells whether Redis's views of the log are complete and current,
// which a sync or a history page waits for.
type views struct {
	store   *store.Store
	table   *route.Table
	wait    time.Duration // SyncWait
	seqWait time.Duration // SyncSeqWait
	log     *slog.Logger
	m       *metrics
	// end and applied are chat-log's end offsets and how far the views
	// applied it, read once for all the syncs waiting.
	end, applied *coalesced[map[int]int64]
}

// complete waits (at most SyncWait) while the views are incomplete: a
// rebuild runs, or Redis lost its data and no router has begun restoring
// it yet (a restored marker is missing). Until then a sync or history
// page would answer short. It answers r unavailable and reports false when
// the views are still incomplete (or Redis did not answer).
func (v *views) complete(ctx context.Context, r requester) bool {
	wctx, cancel := context.WithTimeout(ctx, v.wait)
	defer cancel()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		busy, err := v.store.Rebuilding(wctx)
		if err == nil && !busy {
			var restored bool
			if restored, err = v.table.RestoredSample(wctx); err == nil && restored {
				return true
			}
		}
		select {
		case <-wctx.Done():
			v.m.syncs.WithLabelValues("rebuilding").Inc()
			r.reply(protocol.EncodeError(&protocol.Error{
				Code: protocol.CodeUnavailable, Message: "message history is being rebuilt from the log, retry", RetryAfterMS: 1000,
			}))
			return false
		case <-r.gone():
			return false
		case <-t.C:
		}
	}
}

// caughtUp waits until the router has applied chat-log up to where it
// ended when this was called, for at most SyncWait or until done closes;
// it reports whether the views caught up.
func (v *views) caughtUp(ctx context.Context, done <-chan struct{}) bool {
	ctx, cancel := context.WithTimeout(ctx, v.wait)
	defer cancel()
	end, err := v.end.get(ctx)
	if err != nil {
		v.log.Warn("views: end offsets", "err", err)
		return false
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		applied, err := v.applied.get(ctx)
		if err == nil && caughtUp(applied, end) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-done:
			return false
		case <-t.C:
		}
	}
}

// handedOut waits (at most SyncSeqWait) until the views hold the highest seq
// each conversation has handed out, and returns the highest seq the views
// hold of each, or until done closes. A send acknowledged a moment ago, or
// one that looked its recipients up before a syncing session was
// registered, may still be on its way to the views; waiting for its seq
// makes a sync or a page asked for now include it. A seq whose send failed
// never arrives, hence the short bound. Every poll is one round trip for
// all the conversations still short.
func (v *views) handedOut(ctx context.Context, convs []chat.ConvID, done <-chan struct{}) (map[chat.ConvID]int64, error) {
	tops, err := v.store.LatestMany(ctx, convs)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, v.seqWait)
	defer cancel()
	want, err := v.table.Seqs(wctx, convs)
	if err != nil {
		return tops, nil
	}
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		var short []chat.ConvID
		for _, conv := range convs {
			if tops[conv] < want[conv] {
				short = append(short, conv)
			}
		}
		if len(short) == 0 {
			return tops, nil
		}
		select {
		case <-wctx.Done():
			return tops, nil
		case <-done:
			return tops, nil
		case <-t.C:
		}
		now, err := v.store.LatestMany(wctx, short)
		if err != nil {
			return tops, nil
		}
		for conv, top := range now {
			tops[conv] = max(tops[conv], top)
		}
	}
}

func caughtUp(applied, end map[int]int64) bool {
	for p, e := range end {
		if e > 0 && applied[p] < e {
			return false
		}
	}
	return true
}
