package gateway

import (
	"context"
	"log/slog"
	"time"

	"golang.org/x/time/rate"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/kafkabus"
	"github.com/switchboard-chat/switchboard/internal/protocol"
	"github.com/switchboard-chat/switchboard/internal/relay"
	"github.com/switchboard-chat/switchboard/internal/route"
)

// Typing limits.
const (
	// typingThrottle is the least time between two typing starts of one
	// connection in one conversation that are relayed.
	typingThrottle = 2 * time.Second
	// typingTTL ends a typing start that no stop followed.
	typingTTL = 5 * time.Second
	// typingRate and typingBurst bound the typing frames relayed for one
	// connection, starts and stops together: alternating start and stop
	// cannot get past the per-conversation throttle.
	typingRate  = rate.Limit(1)
	typingBurst = 5
	// maxTyping bounds the conversations one connection can be shown
	// typing in at once; a start in one more is dropped.
	maxTyping = 16
)

// eventStage relays receipts and typing.
type eventStage struct {
	logTopic       string        // ChatLogTopic
	redisTimeout   time.Duration // RedisTimeout
	produceTimeout time.Duration // ProduceTimeout
	log            *slog.Logger
	m              *metrics
	table          *route.Table
	relay          *relay.Relay
	members        members
}

// eventState is what one connection's receipts and typing remember. Its
// request worker owns it (one at a time).
type eventState struct {
	// receipts are the highest marks sent; typing the relayed starts; both
	// nil until used.
	receipts map[receiptMark]int64
	typing   map[chat.ConvID]*typingState
	// typingLimit bounds the typing frames relayed for the connection,
	// starts and stops alike (nil until the first typing frame).
	typingLimit *rate.Limiter
	// later queues a request made by the gateway itself for the
	// connection's request worker (an automatic typing stop).
	later func(*protocol.Inbound)
}

// receipt logs a receipt to chat-log and relays it to the other member
// and the sender's other sessions, in one acknowledged write. Receipts in
// the public room are logged but not relayed.
func (e *eventStage) receipt(ctx context.Context, r requester, st *eventState, in *protocol.Inbound) {
	user, session := r.who()
	if err := e.members.access(ctx, user, in.Conv); err != nil {
		r.reply(protocol.EncodeError(err))
		return
	}
	// Marks only go up: one that does not raise what this connection sent
	// before changes nothing, so it is neither logged nor relayed.
	mark := receiptMark{in.Conv, in.Status}
	if in.Seq <= st.receipts[mark] {
		return
	}
	if err := e.storeReceipt(ctx, user, session, in.Conv, in.Seq, in.Status); err != nil {
		r.reply(protocol.EncodeError(err))
		return
	}
	if st.receipts == nil {
		st.receipts = make(map[receiptMark]int64)
	}
	st.receipts[mark] = in.Seq
}

// storeReceipt logs user's receipt (made in session; "" for none) and
// relays it to the other members and the user's other sessions, in one
// acknowledged write. The caller checked membership.
func (e *eventStage) storeReceipt(ctx context.Context, user chat.UserID, session string, conv chat.ConvID, seq int64, status string) *protocol.Error {
	// A mark beyond the last seq handed out would be stored (marks never
	// go down) and replayed in every sync.
	rctx, rcancel := context.WithTimeout(ctx, e.redisTimeout)
	latest, err := e.table.Seqs(rctx, []chat.ConvID{conv})
	rcancel()
	if err != nil {
		return &protocol.Error{Code: protocol.CodeUnavailable, Message: "receipt not stored, retry", RetryAfterMS: 1000}
	}
	if seq > latest[conv] {
		return protocol.Errorf(protocol.CodeBadRequest, "seq %d is beyond the latest seq %d of %s", seq, latest[conv], conv)
	}
	r := &chat.Receipt{Conv: conv, User: user, Seq: seq, Status: status, TS: time.Now().UnixMilli()}
	ev := relay.Event{
		Delivery: chat.Delivery{Type: chat.TypeReceipt, SkipSession: session, Receipt: r},
		Log: &kafkabus.Record{Topic: e.logTopic, Key: []byte(conv),
			Value: (&chat.LogRecord{Type: chat.TypeReceipt, Receipt: r}).Encode()},
	}
	if peer, ok := conv.Peer(user); ok {
		ev.Users = recipients(user, peer)
	} else if conv.Kind() == chat.KindGroup {
		ev.Group = conv
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.produceTimeout)
	defer cancel()
	if _, err := e.relay.Send(ctx, ev); err != nil {
		e.log.Warn("receipt failed", "user", user, "err", err)
		return &protocol.Error{Code: protocol.CodeUnavailable, Message: "receipt not stored, retry", RetryAfterMS: 1000}
	}
	return nil
}

// typing relays typing in a direct conversation to the other
// member's sessions. It is never logged; starts are throttled per
// conversation, and a start with no stop is ended after typingTTL.
// Typing in the public room is not relayed.
func (e *eventStage) typing(ctx context.Context, r requester, st *eventState, in *protocol.Inbound) {
	user, session := r.who()
	conv := in.Conv
	if in.To != "" {
		conv = chat.DirectConv(user, in.To)
	}
	peer, ok := conv.Peer(user)
	group := conv.Kind() == chat.KindGroup
	if group {
		if err := e.members.access(ctx, user, conv); err != nil {
			r.reply(protocol.EncodeError(err))
			return
		}
	} else if !ok {
		if conv.Kind() == chat.KindDirect {
			r.reply(protocol.EncodeError(protocol.Errorf(protocol.CodeForbidden, "you are not a member of %s", conv)))
		}
		e.m.drops.WithLabelValues("typing_not_relayed").Inc()
		return
	}
	if peer == user {
		return
	}
	now := time.Now()
	switch {
	case in.State == "start":
		cur := st.typing[conv]
		if cur != nil && now.Sub(cur.last) < typingThrottle {
			e.m.drops.WithLabelValues("typing_throttled").Inc()
			cur.timer.Reset(typingTTL) // still typing: push the automatic stop out
			return
		}
		if cur == nil && len(st.typing) >= maxTyping {
			e.m.drops.WithLabelValues("typing_too_many").Inc()
			return
		}
		if !st.typingLimiter().AllowN(now, 1) {
			e.m.limited.WithLabelValues("typing").Inc()
			if cur != nil {
				cur.timer.Reset(typingTTL)
			}
			return
		}
		st.startTyping(conv, now)
	case st.typing[conv] == nil:
		return // nothing was relayed, so nothing to stop
	case !in.Auto && !st.typingLimiter().AllowN(now, 1):
		// Over the limit: the automatic stop relays it instead, soon.
		e.m.limited.WithLabelValues("typing").Inc()
		st.typing[conv].timer.Reset(typingThrottle)
		return
	default:
		st.stopTyping(conv)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.produceTimeout)
	defer cancel()
	t := &chat.Typing{Conv: conv, User: user, State: in.State}
	ev := relay.Event{Delivery: chat.Delivery{Type: chat.TypeTyping, Typing: t}, Users: []chat.UserID{peer}}
	if group {
		ev = relay.Event{Delivery: chat.Delivery{Type: chat.TypeTyping, SkipSession: session, Typing: t}, Group: conv}
	}
	if _, err := e.relay.Send(ctx, ev); err != nil {
		e.m.drops.WithLabelValues("typing_failed").Inc()
	}
}

// receiptMark names one of a connection's cumulative marks.
type receiptMark struct {
	conv   chat.ConvID
	status string
}

// typingState is one conversation's relayed typing start.
type typingState struct {
	last  time.Time
	timer *time.Timer
}

// typingLimiter returns the connection's typing limiter, made on first use.
func (st *eventState) typingLimiter() *rate.Limiter {
	if st.typingLimit == nil {
		st.typingLimit = rate.NewLimiter(typingRate, typingBurst)
	}
	return st.typingLimit
}

// startTyping records a relayed start and arms its automatic stop, which
// reaches the request worker as a stop frame. The stop is never dropped
// while the connection is open (its map entry would stay): it is queued
// past the inbox bound, and at most maxTyping are armed. Request worker
// only.
func (st *eventState) startTyping(conv chat.ConvID, now time.Time) {
	if t := st.typing[conv]; t != nil {
		t.last = now
		t.timer.Reset(typingTTL)
		return
	}
	if st.typing == nil {
		st.typing = make(map[chat.ConvID]*typingState)
	}
	later := st.later
	st.typing[conv] = &typingState{last: now, timer: time.AfterFunc(typingTTL, func() {
		later(&protocol.Inbound{Type: protocol.TypeTyping, Conv: conv, State: "stop", Auto: true})
	})}
}

// stopTyping forgets conv's typing and reports whether a start had been
// relayed. Request loop only.
func (st *eventState) stopTyping(conv chat.ConvID) bool {
	t := st.typing[conv]
	if t == nil {
		return false
	}
	t.timer.Stop()
	delete(st.typing, conv)
	return true
}

// stopAllTyping disarms every automatic stop; the conn is ending.
func (st *eventState) stopAllTyping() {
	for conv := range st.typing {
		st.stopTyping(conv)
	}
}

// announcePresence tells the users who share a direct conversation with u
// that u came online or went offline. Best effort: a failure is counted.
func (s *Server) announcePresence(ctx context.Context, u chat.UserID, online bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ProduceTimeout)
	defer cancel()
	if err := s.relay.Presence(ctx, s.store, u, online); err != nil {
		s.m.drops.WithLabelValues("presence_failed").Inc()
		s.log.Warn("presence failed", "user", u, "err", err)
	}
}

// recordUser writes a user record to chat-state the first time u is seen.
// Not while Redis is being restored: the rebuild brings the original
// record back, with its original created_at. Best effort: a failure is
// logged, and the next connection tries again.
func (s *Server) recordUser(ctx context.Context, u chat.UserID) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ProduceTimeout)
	defer cancel()
	known, err := s.store.KnownUser(ctx, u)
	if err == nil && !known {
		var restored bool
		if restored, err = s.table.RestoredSample(ctx); err == nil && restored {
			rec := &chat.StateRecord{Type: chat.TypeUser, User: &chat.User{ID: u, CreatedAt: time.Now().UnixMilli()}}
			err = s.producer.Produce(ctx, []kafkabus.Record{{Topic: s.cfg.ChatStateTopic, Key: rec.Key(), Value: rec.Encode()}})
		}
	}
	if err != nil {
		s.log.Warn("record user failed", "user", u, "err", err)
	}
}
