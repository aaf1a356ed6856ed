package gateway

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/kafkabus"
	"github.com/switchboard-chat/switchboard/internal/protocol"
	"github.com/switchboard-chat/switchboard/internal/route"
)

// maxSendBatch is the most sends of one connection handled in one Redis
// round trip and one Kafka produce.
const maxSendBatch = 64

// pendingSend is one send on its way through the send path.
type pendingSend struct {
	in      *protocol.Inbound
	user    chat.UserID
	session string
	req     route.SendRequest
	plan    route.SendPlan
	err     *protocol.Error
	// first is the earlier send of the same batch with the same cid.
	first *pendingSend
}

// sendPath is the gateway's send path: it validates sends, hands them to
// the group commit (one Redis round trip and one Kafka produce for the
// sends of every connection arriving together) and answers each. It knows
// nothing of connections: the WebSocket request worker and the REST API
// both call send.
type sendPath struct {
	logTopic, stateTopic string
	produceTimeout       time.Duration
	redisTimeout         time.Duration
	log                  *slog.Logger
	m                    *metrics
	table                *route.Table
	producer             *kafkabus.Producer
	commits              *committer
}

// sendResult is the answer to one send: sent, or err.
type sendResult struct {
	sent protocol.Sent
	err  *protocol.Error
}

// send runs the send path for sends of user made in session ("" for
// none, as from REST: then every session of the user gets the echo):
// validate, then hand the sends to the gateway's committer, which runs
// them together with the other connections' in one Redis round trip and
// one Kafka produce, and wait for a result for each send, in order.
func (s *sendPath) send(ctx context.Context, user chat.UserID, session string, batch []*protocol.Inbound) []sendResult {
	now := time.Now()
	job := &sendJob{sends: make([]*pendingSend, len(batch)), done: make(chan struct{})}
	byCID := make(map[string]*pendingSend, len(batch))
	for i, in := range batch {
		p := &pendingSend{in: in, user: user, session: session}
		job.sends[i] = p
		if prev := byCID[in.CID]; prev != nil {
			p.first = prev
			continue
		}
		byCID[in.CID] = p
		if p.req, p.err = s.resolve(user, in); p.err != nil {
			continue
		}
		p.req.ID, p.req.TS, p.req.Session = chat.NewMessageID(now), now.UnixMilli(), session
	}
	s.commits.run(ctx, job)
	return s.answer(job.sends)
}

// answer turns the sends of one batch, through the send path, into their
// results, and counts them.
func (s *sendPath) answer(sends []*pendingSend) []sendResult {
	results := make([]sendResult, len(sends))
	for i, p := range sends {
		src := p
		if p.first != nil {
			src = p.first
		}
		if src.err != nil {
			e := *src.err
			e.CID = p.in.CID
			s.m.sends.WithLabelValues(string(e.Code)).Inc()
			results[i].err = &e
			continue
		}
		result := "ok"
		if src.plan.Dup || p.first != nil {
			result = "duplicate"
		}
		s.m.sends.WithLabelValues(result).Inc()
		results[i].sent = protocol.Sent{CID: p.in.CID, ID: src.plan.ID, Conv: src.plan.Conv, Seq: src.plan.Seq, TS: src.plan.TS}
	}
	return results
}

// resolve checks a send's target and membership and names its recipients.
func (s *sendPath) resolve(from chat.UserID, in *protocol.Inbound) (route.SendRequest, *protocol.Error) {
	req := route.SendRequest{From: from, CID: in.CID}
	switch {
	case in.To != "":
		req.Conv = chat.DirectConv(from, in.To)
		req.Recipients = recipients(from, in.To)
	case in.Conv == chat.Public:
		req.Conv = chat.Public
	case in.Conv.Kind() == chat.KindDirect:
		peer, ok := in.Conv.Peer(from)
		if !ok {
			return req, protocol.Errorf(protocol.CodeForbidden, "you are not a member of %s", in.Conv)
		}
		req.Conv = in.Conv
		req.Recipients = recipients(from, peer)
	default:
		// A group: membership is checked in the send's Redis round trip.
		req.Conv = in.Conv
	}
	return req, nil
}

func recipients(from, to chat.UserID) []chat.UserID {
	if from == to {
		return []chat.UserID{from}
	}
	return []chat.UserID{to, from}
}

// produceSends writes the chat-log record and the delivery copies of every
// send not yet known to be in Kafka, in one acknowledged produce, and
// returns the sends it wrote.
func (s *sendPath) produceSends(ctx context.Context, sends []*pendingSend, gateways []chat.ServerID, deadline time.Time) []*pendingSend {
	var recs []kafkabus.Record
	var produced []*pendingSend
	for _, p := range sends {
		if p.plan.Acked || p.err != nil {
			continue
		}
		user, session := p.user, p.session
		produced = append(produced, p)
		m := &chat.Message{
			ID: p.plan.ID, Conv: p.req.Conv, Seq: p.plan.Seq, From: user, Body: p.in.Body, TS: p.plan.TS, CID: p.in.CID,
		}
		if p.req.Conv.Kind() == chat.KindDirect {
			m.To, _ = p.req.Conv.Peer(user)
		}
		recs = append(recs, kafkabus.Record{
			Topic: s.logTopic, Key: []byte(m.Conv),
			Value: (&chat.LogRecord{Type: chat.TypeMessage, Message: m}).Encode(),
		})
		if m.Seq == 1 && m.Conv.Kind() == chat.KindDirect {
			// The first message of a direct conversation creates it.
			a, b, _ := m.Conv.Members()
			rec := &chat.StateRecord{Type: chat.TypeConversation, Conversation: &chat.Conversation{
				ID: m.Conv, Kind: chat.KindDirect, Members: uniqueUsers(a, b), CreatedAt: m.TS,
			}}
			recs = append(recs, kafkabus.Record{Topic: s.stateTopic, Key: rec.Key(), Value: rec.Encode()})
		}
		if p.req.Conv == chat.Public {
			copyValue := (&chat.Delivery{Type: chat.TypeMessage, All: true, SkipSession: session, Message: m}).Encode()
			for _, gw := range gateways {
				recs = append(recs, kafkabus.Record{Topic: gw.Topic(), Key: []byte(m.Conv), Value: copyValue})
			}
			continue
		}
		if p.req.Conv.Kind() == chat.KindGroup {
			// One copy per gateway with members online, whatever the members.
			copyValue := (&chat.Delivery{Type: chat.TypeMessage, Group: m.Conv, SkipSession: session, Message: m}).Encode()
			for gw := range p.plan.Targets {
				recs = append(recs, kafkabus.Record{Topic: gw.Topic(), Key: []byte(m.Conv), Value: copyValue})
			}
			continue
		}
		for gw, users := range p.plan.Targets {
			d := &chat.Delivery{Type: chat.TypeMessage, To: users, SkipSession: session, Message: m}
			recs = append(recs, kafkabus.Record{Topic: gw.Topic(), Key: []byte(users[0]), Value: d.Encode()})
		}
	}
	if len(recs) == 0 {
		return nil
	}
	pctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	start := time.Now()
	err := s.producer.Produce(pctx, recs)
	s.m.produceLatency.Observe(time.Since(start).Seconds())
	if err != nil {
		s.log.Warn("produce failed", "err", err, "records", len(recs))
		failAll(produced, protocol.CodeUnavailable, "message log unavailable, retry with the same cid")
		return nil
	}
	return produced
}

// refusal is the answer to a group send the send path refused.
func refusal(conv chat.ConvID, err error) *protocol.Error {
	switch {
	case errors.Is(err, route.ErrNotMember):
		return protocol.Errorf(protocol.CodeForbidden, "you are not a member of %s", conv)
	case errors.Is(err, route.ErrNoGroup):
		return protocol.Errorf(protocol.CodeNotFound, "conversation %s does not exist", conv)
	}
	if errors.Is(err, route.ErrNotRestored) {
		return &protocol.Error{Code: protocol.CodeUnavailable, Message: errNotRestoredMessage, RetryAfterMS: 1000}
	}
	var inUse *route.CIDInUseError
	if errors.As(err, &inUse) {
		return &protocol.Error{Code: protocol.CodeBadRequest, Message: inUse.Error()}
	}
	return nil
}

func failAll(sends []*pendingSend, code protocol.Code, msg string) {
	for _, p := range sends {
		if p.err == nil && !p.plan.Acked {
			p.err = &protocol.Error{Code: code, Message: msg, RetryAfterMS: 1000}
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func uniqueUsers(a, b chat.UserID) []chat.UserID {
	if a == b {
		return []chat.UserID{a}
	}
	return []chat.UserID{a, b}
}
