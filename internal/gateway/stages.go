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
	store *store.Store
	table *route.Table
	wait  time.Duration // SyncWait
	log   *slog.Logger
	m     *metrics
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

func caughtUp(applied, end map[int]int64) bool {
	for p, e := range end {
		if e > 0 && applied[p] < e {
			return false
		}
	}
	return true
}
