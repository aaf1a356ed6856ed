package gateway

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/history"
	"github.com/switchboard-chat/switchboard/internal/protocol"
	"github.com/switchboard-chat/switchboard/internal/route"
	"github.com/switchboard-chat/switchboard/internal/store"
)

// syncBatch is the most messages a sync sends before it waits for the
// client to take them.
const syncBatch = 50

// syncStage answers syncs.
type syncStage struct {
	recent int // SyncRecent
	log    *slog.Logger
	m      *metrics
	store  *store.Store
	table  *route.Table
	reader *history.Reader
	views  *views
	// budget is the per-user sync budget; large bounds the large syncs
	// reading their state at once.
	budget *sendLimits
	large  chan struct{}
}

// run streams what the client missed, in batches of at most 50
// messages, then synced with the latest seq of each conversation.
//
// Every message acknowledged before the sync began is in the log below the
// end offsets read first; the sync waits (bounded by SyncWait) until the
// router has applied the log that far, so synced never reports less than
// what was acknowledged.
func (st *syncStage) run(ctx context.Context, r requester, in *protocol.Inbound) {
	user, _ := r.who()
	// An empty budget refuses the sync before any Redis work; the full
	// cost is charged once the conversations are known.
	if err := st.allow(user, -1, time.Now()); err != nil {
		r.reply(protocol.EncodeError(err))
		return
	}
	if !st.views.complete(ctx, r) {
		return
	}
	if !st.waitApplied(ctx, r) {
		st.m.syncs.WithLabelValues("stale").Inc()
	}
	convs := st.convs(ctx, r, user, in)
	if convs == nil {
		return
	}
	if err := st.allow(user, len(convs), time.Now()); err != nil {
		r.reply(protocol.EncodeError(err))
		return
	}
	tops, marks, err := st.state(ctx, r, convs)
	if err != nil {
		st.failed(r, err)
		return
	}
	latest := make(map[chat.ConvID]int64, len(convs))
	var truncated map[chat.ConvID]int64
	batch := 0
	send := func(msgs []*chat.Message) bool {
		batch++
		frames := make([][]byte, len(msgs))
		size := 0
		for i, m := range msgs {
			frames[i] = protocol.EncodeSyncMessage(m, batch)
			size += len(frames[i])
		}
		if !r.waitRoom(size) {
			return false
		}
		for _, f := range frames {
			r.enqueue(f, essential)
		}
		return true
	}
	for _, conv := range convs {
		top := tops[conv]
		since, named := in.Since[conv]
		latest[conv] = max(top, since)
		if !named {
			// New to this client: the recent window.
			msgs, err := st.store.Recent(ctx, conv, st.recent)
			if err != nil {
				st.failed(r, err)
				return
			}
			for len(msgs) > 0 {
				n := min(len(msgs), syncBatch)
				if !send(msgs[:n]) {
					return
				}
				msgs = msgs[n:]
			}
			continue
		}
		// Everything after since, page by page: from the log through the
		// seq index below the window, then from the window.
		for after := since; after < top; {
			p, err := st.reader.After(ctx, conv, after, syncBatch)
			if err != nil {
				st.failed(r, err)
				return
			}
			if p.Truncated > 0 {
				if truncated == nil {
					truncated = make(map[chat.ConvID]int64)
				}
				truncated[conv] = max(truncated[conv], p.Truncated)
			}
			if len(p.Messages) > 0 && !send(p.Messages) {
				return
			}
			if p.Next <= after {
				break
			}
			after = p.Next
		}
	}
	if !st.marks(ctx, r, user, convs, marks) {
		return
	}
	r.enqueue(protocol.EncodeSynced(protocol.Synced{Convs: latest, Truncated: truncated}), essential)
	st.m.syncs.WithLabelValues("ok").Inc()
}

// convs lists the conversations a sync covers: those named in since
// that the user belongs to, and unless only is set, every conversation of
// the user (public first). Group memberships are read in one round trip.
// nil means the sync failed and was answered.
func (st *syncStage) convs(ctx context.Context, r requester, user chat.UserID, in *protocol.Inbound) []chat.ConvID {
	var candidates, groups []chat.ConvID
	seen := make(map[chat.ConvID]bool)
	add := func(conv chat.ConvID) {
		if seen[conv] {
			return
		}
		seen[conv] = true
		switch conv.Kind() {
		case chat.KindPublic:
		case chat.KindDirect:
			if _, ok := conv.Peer(user); !ok {
				return
			}
		case chat.KindGroup:
			groups = append(groups, conv)
		default:
			return
		}
		candidates = append(candidates, conv)
	}
	if !in.Only {
		add(chat.Public)
		mine, err := st.store.Conversations(ctx, user)
		if err != nil {
			st.failed(r, err)
			return nil
		}
		for _, conv := range mine {
			add(conv)
		}
	}
	for conv := range in.Since {
		add(conv)
	}
	member := map[chat.ConvID]chat.Role{}
	if len(groups) > 0 {
		var err error
		if member, _, err = st.store.Memberships(ctx, groups, user); err != nil {
			st.failed(r, err)
			return nil
		}
	}
	convs := []chat.ConvID{}
	for _, conv := range candidates {
		if conv.Kind() != chat.KindGroup || member[conv] != "" {
			convs = append(convs, conv)
		}
	}
	return convs
}

func (st *syncStage) failed(r requester, err error) {
	st.m.syncs.WithLabelValues("failed").Inc()
	user, _ := r.who()
	st.log.Warn("sync failed", "user", user, "err", err)
	r.enqueue(protocol.EncodeError(&protocol.Error{
		Code: protocol.CodeUnavailable, Message: "sync failed, retry: message store unavailable", RetryAfterMS: 1000,
	}), essential)
}

// waitApplied waits until the views hold everything the log held when it
// was called, or SyncWait passes; it reports whether they caught up. The
// syncs waiting at the same time share their reads of the log's end and
// of the views' progress (see coalesced).
func (st *syncStage) waitApplied(ctx context.Context, r requester) bool {
	if st.views.caughtUp(ctx, r.gone()) {
		return true
	}
	user, _ := r.who()
	st.log.Warn("sync: views lag the log; answering with what they hold", "user", user)
	return false
}

// largeSync is the number of conversations from which a sync's state
// reads take one of the gateway's maxLargeSyncs slots: the Redis work of
// a sync grows with the user's conversations, so a few large syncs run at
// a time (their users wait; everyone else's sends and syncs do not).
const (
	largeSync     = 100
	maxLargeSyncs = 2
)

// state reads, in a bounded number of round trips whatever the number
// of conversations, the highest seq the views hold of each (waiting for
// the seqs already handed out, see waitSeqs) and the receipt marks of the
// direct ones.
func (st *syncStage) state(ctx context.Context, r requester, convs []chat.ConvID) (map[chat.ConvID]int64, map[chat.ConvID][]chat.Receipt, error) {
	if len(convs) >= largeSync {
		select {
		case st.large <- struct{}{}:
			defer func() { <-st.large }()
		case <-r.gone():
			return nil, nil, context.Canceled
		}
	}
	tops, err := st.views.handedOut(ctx, convs, r.gone())
	if err != nil {
		return nil, nil, err
	}
	var direct []chat.ConvID
	for _, conv := range convs {
		if conv.Kind() == chat.KindDirect {
			direct = append(direct, conv)
		}
	}
	marks, err := st.store.ReceiptsMany(ctx, direct)
	return tops, marks, err
}

// marks sends the other members' receipts in the direct conversations
// among convs (read by state), and the presence of those members.
func (st *syncStage) marks(ctx context.Context, r requester, user chat.UserID, convs []chat.ConvID, all map[chat.ConvID][]chat.Receipt) bool {
	var peers []chat.UserID
	for _, conv := range convs {
		peer, ok := conv.Peer(user)
		if !ok {
			continue
		}
		peers = append(peers, peer)
		marks := all[conv]
		for i := range marks {
			if !r.waitRoom(1) {
				return false
			}
			r.enqueue(protocol.EncodeReceipt(&marks[i]), essential)
		}
	}
	if len(peers) == 0 {
		return true
	}
	where, err := st.table.Locate(ctx, peers)
	if err != nil {
		st.failed(r, err)
		return false
	}
	online := make(map[chat.UserID]bool)
	for _, users := range where {
		for _, u := range users {
			online[u] = true
		}
	}
	now := time.Now().UnixMilli()
	for _, p := range peers {
		if p != user && r.waitRoom(1) {
			r.enqueue(protocol.EncodePresence(&chat.Presence{User: p, Online: online[p], TS: now}), ephemeral)
		}
	}
	return true
}

// allow spends the tokens of a sync of n conversations from u's sync
// budget: 1 + n/100, at most the burst (so that any sync can pass). When
// they are not there it returns the rate_limited error to answer, with the
// wait. n < 0 only checks that one token is there, spending nothing.
func (st *syncStage) allow(u chat.UserID, n int, now time.Time) *protocol.Error {
	lim := st.budget.limiter(u)
	if lim == nil {
		return nil // unlimited
	}
	cost := min(1+max(n, 0)/largeSync, st.budget.burst)
	r := lim.ReserveN(now, cost)
	if n < 0 && r.OK() && r.DelayFrom(now) == 0 {
		r.CancelAt(now) // a check: the sync pays once its size is known
		return nil
	}
	if !r.OK() {
		return &protocol.Error{Code: protocol.CodeRateLimited, Message: "sync rate limit", RetryAfterMS: 1000}
	}
	wait := r.DelayFrom(now)
	if wait == 0 {
		return nil
	}
	r.CancelAt(now)
	st.m.limited.WithLabelValues("sync").Inc()
	return &protocol.Error{
		Code: protocol.CodeRateLimited, RetryAfterMS: max(1, wait.Milliseconds()),
		Message: "syncing too often: a sync costs 1 token plus 1 per 100 conversations, of " +
			strconv.FormatFloat(float64(st.budget.every), 'g', -1, 64) + " tokens per second (burst " +
			strconv.Itoa(st.budget.burst) + "); retry the sync then",
	}
}
