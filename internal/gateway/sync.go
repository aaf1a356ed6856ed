package gateway

import (
	"context"
	"time"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/protocol"
)

// syncBatch is the most messages a sync sends before it waits for the
// client to take them.
const syncBatch = 50

// handleRequest runs a request other than send from the request loop.
func (s *Server) handleRequest(ctx context.Context, c *conn, in *protocol.Inbound) {
	switch in.Type {
	case protocol.TypeSync:
		s.processSync(ctx, c, in)
	case protocol.TypeReceipt:
		s.processReceipt(ctx, c, in)
	case protocol.TypeTyping:
		s.processTyping(ctx, c, in)
	case protocol.TypeHistory:
		s.processHistory(ctx, c, in)
	}
}

// processSync streams what the client missed, in batches of at most 50
// messages, then synced with the latest seq of each conversation.
//
// Every message acknowledged before the sync began is in the log below the
// end offsets read first; the sync waits (bounded by SyncWait) until the
// router has applied the log that far, so synced never reports less than
// what was acknowledged.
func (s *Server) processSync(ctx context.Context, c *conn, in *protocol.Inbound) {
	// An empty budget refuses the sync before any Redis work; the full
	// cost is charged once the conversations are known.
	if err := s.allowSync(c.user, -1, time.Now()); err != nil {
		c.reply(protocol.EncodeError(err))
		return
	}
	if !s.waitRebuilt(ctx, c) {
		return
	}
	if !s.waitApplied(ctx, c) {
		s.m.syncs.WithLabelValues("stale").Inc()
	}
	convs := s.syncConvs(ctx, c, in)
	if convs == nil {
		return
	}
	if err := s.allowSync(c.user, len(convs), time.Now()); err != nil {
		c.reply(protocol.EncodeError(err))
		return
	}
	tops, marks, err := s.syncState(ctx, c, convs)
	if err != nil {
		s.syncFailed(c, err)
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
		if !c.waitRoom(size) {
			return false
		}
		for _, f := range frames {
			c.enqueue(f, essential)
		}
		return true
	}
	for _, conv := range convs {
		top := tops[conv]
		since, named := in.Since[conv]
		latest[conv] = max(top, since)
		if !named {
			// New to this client: the recent window.
			msgs, err := s.store.Recent(ctx, conv, s.cfg.SyncRecent)
			if err != nil {
				s.syncFailed(c, err)
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
			p, err := s.history.After(ctx, conv, after, syncBatch)
			if err != nil {
				s.syncFailed(c, err)
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
	if !s.syncMarks(ctx, c, convs, marks) {
		return
	}
	c.enqueue(protocol.EncodeSynced(protocol.Synced{Convs: latest, Truncated: truncated}), essential)
	s.m.syncs.WithLabelValues("ok").Inc()
}

// syncConvs lists the conversations a sync covers: those named in since
// that the user belongs to, and unless only is set, every conversation of
// the user (public first). Group memberships are read in one round trip.
// nil means the sync failed and was answered.
func (s *Server) syncConvs(ctx context.Context, c *conn, in *protocol.Inbound) []chat.ConvID {
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
			if _, ok := conv.Peer(c.user); !ok {
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
		mine, err := s.store.Conversations(ctx, c.user)
		if err != nil {
			s.syncFailed(c, err)
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
		if member, _, err = s.store.Memberships(ctx, groups, c.user); err != nil {
			s.syncFailed(c, err)
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

func (s *Server) syncFailed(c *conn, err error) {
	s.m.syncs.WithLabelValues("failed").Inc()
	s.log.Warn("sync failed", "user", c.user, "err", err)
	c.enqueue(protocol.EncodeError(&protocol.Error{
		Code: protocol.CodeUnavailable, Message: "sync failed, retry: message store unavailable", RetryAfterMS: 1000,
	}), essential)
}

// waitApplied waits until the views hold everything the log held when it
// was called, or SyncWait passes; it reports whether they caught up. The
// syncs waiting at the same time share their reads of the log's end and
// of the views' progress (see coalesced).
func (s *Server) waitApplied(ctx context.Context, c *conn) bool {
	if s.viewsCaughtUp(ctx, c.closing) {
		return true
	}
	s.log.Warn("sync: views lag the log; answering with what they hold", "user", c.user)
	return false
}

// viewsCaughtUp waits until the router has applied chat-log up to where it
// ended when this was called, for at most SyncWait or until done closes;
// it reports whether the views caught up.
func (s *Server) viewsCaughtUp(ctx context.Context, done <-chan struct{}) bool {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.SyncWait)
	defer cancel()
	end, err := s.logEnd.get(ctx)
	if err != nil {
		s.log.Warn("views: end offsets", "err", err)
		return false
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		applied, err := s.logApplied.get(ctx)
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

// waitSeqs waits (at most SyncSeqWait) until the views hold the highest seq
// each conversation has handed out, and returns the highest seq the views
// hold of each. A send that looked its recipients up before this session
// was registered may still be on its way to the log; waiting for its seq
// makes this sync return it. A seq whose send failed never arrives, hence
// the short bound. Every poll is one round trip for all the
// conversations still short.
func (s *Server) waitSeqs(ctx context.Context, c *conn, convs []chat.ConvID) (map[chat.ConvID]int64, error) {
	tops, err := s.store.LatestMany(ctx, convs)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, s.cfg.SyncSeqWait)
	defer cancel()
	want, err := s.table.Seqs(wctx, convs)
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
		case <-c.closing:
			return tops, nil
		case <-t.C:
		}
		now, err := s.store.LatestMany(wctx, short)
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

// waitRoom waits until the write queue has room for n more bytes while
// keeping half of its budget free for live traffic; false means the
// connection is closing.
func (c *conn) waitRoom(n int) bool {
	limit := max(c.s.cfg.SendQueueBytes/2, n)
	if c.queuedBytes()+n <= limit {
		return true
	}
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for c.queuedBytes()+n > limit {
		select {
		case <-c.closing:
			return false
		case <-t.C:
		}
	}
	return true
}

// largeSync is the number of conversations from which a sync's state
// reads take one of the gateway's maxLargeSyncs slots: the Redis work of
// a sync grows with the user's conversations, so a few large syncs run at
// a time (their users wait; everyone else's sends and syncs do not).
const (
	largeSync     = 100
	maxLargeSyncs = 2
)

// syncState reads, in a bounded number of round trips whatever the number
// of conversations, the highest seq the views hold of each (waiting for
// the seqs already handed out, see waitSeqs) and the receipt marks of the
// direct ones.
func (s *Server) syncState(ctx context.Context, c *conn, convs []chat.ConvID) (map[chat.ConvID]int64, map[chat.ConvID][]chat.Receipt, error) {
	if len(convs) >= largeSync {
		select {
		case s.largeSyncs <- struct{}{}:
			defer func() { <-s.largeSyncs }()
		case <-c.closing:
			return nil, nil, context.Canceled
		}
	}
	tops, err := s.waitSeqs(ctx, c, convs)
	if err != nil {
		return nil, nil, err
	}
	var direct []chat.ConvID
	for _, conv := range convs {
		if conv.Kind() == chat.KindDirect {
			direct = append(direct, conv)
		}
	}
	marks, err := s.store.ReceiptsMany(ctx, direct)
	return tops, marks, err
}

// syncMarks sends the other members' receipts in the direct conversations
// among convs (read by syncState), and the presence of those members.
func (s *Server) syncMarks(ctx context.Context, c *conn, convs []chat.ConvID, all map[chat.ConvID][]chat.Receipt) bool {
	var peers []chat.UserID
	for _, conv := range convs {
		peer, ok := conv.Peer(c.user)
		if !ok {
			continue
		}
		peers = append(peers, peer)
		marks := all[conv]
		for i := range marks {
			if !c.waitRoom(1) {
				return false
			}
			c.enqueue(protocol.EncodeReceipt(&marks[i]), essential)
		}
	}
	if len(peers) == 0 {
		return true
	}
	where, err := s.table.Locate(ctx, peers)
	if err != nil {
		s.syncFailed(c, err)
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
		if p != c.user && c.waitRoom(1) {
			c.enqueue(protocol.EncodePresence(&chat.Presence{User: p, Online: online[p], TS: now}), ephemeral)
		}
	}
	return true
}
