package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/kafkabus"
	"github.com/switchboard-chat/switchboard/internal/protocol"
	"github.com/switchboard-chat/switchboard/internal/relay"
)

// User search limits.
const (
	defaultSearch = 20
	maxSearch     = 100
)

func (s *Server) searchUsers(r *http.Request, u chat.UserID) (int, any, *protocol.Error) {
	q := r.URL.Query().Get("q")
	if q != "" {
		if _, err := chat.ParseUserID(q); err != nil {
			return 0, nil, protocol.Errorf(protocol.CodeBadRequest, "q: %s", chat.Clip(err.Error(), 160))
		}
	}
	limit, perr := queryInt(r, "limit", defaultSearch, 1, maxSearch)
	if perr != nil {
		return 0, nil, perr
	}
	ids, err := s.store.SearchUsers(r.Context(), q, int(limit))
	if err != nil {
		return 0, nil, s.unavailable("search users", err)
	}
	where, err := s.table.Locate(r.Context(), ids)
	if err != nil {
		return 0, nil, s.unavailable("search users", err)
	}
	online := make(map[chat.UserID]bool)
	for _, users := range where {
		for _, id := range users {
			online[id] = true
		}
	}
	type user struct {
		ID     chat.UserID `json:"id"`
		Online bool        `json:"online"`
	}
	out := make([]user, len(ids))
	for i, id := range ids {
		out[i] = user{ID: id, Online: online[id]}
	}
	return http.StatusOK, map[string]any{"users": out}, nil
}

func (s *Server) userStatus(r *http.Request, _ chat.UserID) (int, any, *protocol.Error) {
	id, err := chat.ParseUserID(r.PathValue("id"))
	if err != nil {
		return 0, nil, protocol.Errorf(protocol.CodeBadRequest, "%s", chat.Clip(err.Error(), 160))
	}
	seen, online, err := s.table.LastSeen(r.Context(), id)
	if err != nil {
		return 0, nil, s.unavailable("user status", err)
	}
	known, err := s.store.KnownUser(r.Context(), id)
	if err != nil {
		return 0, nil, s.unavailable("user status", err)
	}
	if !known && !online && seen == 0 {
		return 0, nil, protocol.Errorf(protocol.CodeNotFound, "user %s does not exist", id)
	}
	var last any // null when never recorded
	if seen > 0 {
		last = seen
	}
	return http.StatusOK, map[string]any{"id": id, "online": online, "last_seen": last}, nil
}

// listMessages answers one page of history, newest first, through the
// same reader as sync and the history frame.
func (s *Server) listMessages(r *http.Request, u chat.UserID) (int, any, *protocol.Error) {
	conv, perr := pathConv(r)
	if perr != nil {
		return 0, nil, perr
	}
	before, perr := queryInt(r, "before", 0, 1, math.MaxInt64)
	if perr != nil {
		return 0, nil, perr
	}
	limit, perr := queryInt(r, "limit", protocol.DefaultPage, 1, protocol.MaxPage)
	if perr != nil {
		return 0, nil, perr
	}
	ctx := r.Context()
	if perr := s.members.access(ctx, u, conv); perr != nil {
		return 0, nil, perr
	}
	if busy, err := s.store.Rebuilding(ctx); err != nil || busy {
		return 0, nil, &protocol.Error{Code: protocol.CodeUnavailable, Message: "message history is being rebuilt from the log, retry", RetryAfterMS: 1000}
	}
	p, err := s.stages.history.read(ctx, conv, before, int(limit), nil)
	if err != nil {
		return 0, nil, s.unavailable("history", err)
	}
	if p.Messages == nil {
		p.Messages = []*chat.Message{}
	}
	return http.StatusOK, protocol.History{Conv: conv, Before: before, Messages: p.Messages, NextBefore: p.Next, Truncated: p.Truncated}, nil
}

// decodeRead decodes and checks a PUT /api/conversations/{id}/read body:
// {"seq": n}, n >= 1.
func decodeRead(data []byte) (int64, *protocol.Error) {
	var req struct {
		Seq *int64 `json:"seq"`
	}
	if err := decodeStrict(data, &req); err != nil {
		return 0, protocol.Errorf(protocol.CodeBadRequest, "%s", err.Error())
	}
	if req.Seq == nil || *req.Seq < 1 {
		return 0, protocol.Errorf(protocol.CodeBadRequest, "seq must be a positive integer")
	}
	return *req.Seq, nil
}

// markRead stores a read mark, exactly as a read receipt does.
func (s *Server) markRead(r *http.Request, u chat.UserID) (int, any, *protocol.Error) {
	conv, perr := pathConv(r)
	if perr != nil {
		return 0, nil, perr
	}
	data, perr := s.readBody(r)
	if perr != nil {
		return 0, nil, perr
	}
	seq, perr := decodeRead(data)
	if perr != nil {
		return 0, nil, perr
	}
	if perr := s.members.access(r.Context(), u, conv); perr != nil {
		return 0, nil, perr
	}
	if perr := s.stages.events.storeReceipt(r.Context(), u, "", conv, seq, "read"); perr != nil {
		return 0, nil, perr
	}
	return http.StatusNoContent, nil, nil
}

// decodePost decodes and checks a POST /api/messages body as the send
// frame it stands for: the frame's fields without "type", and no others
// (a REST body has no unknown fields).
func decodePost(data []byte) (*protocol.Inbound, *protocol.Error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil || fields == nil {
		return nil, protocol.Errorf(protocol.CodeBadRequest, "the body must be a JSON object")
	}
	for k := range fields {
		switch k {
		case "cid", "body", "to", "conv":
		default:
			return nil, protocol.Errorf(protocol.CodeBadRequest, "unknown field %q", chat.Clip(k, 32))
		}
	}
	fields["type"] = json.RawMessage(`"send"`)
	frame, err := json.Marshal(fields)
	if err != nil {
		return nil, protocol.Errorf(protocol.CodeBadRequest, "the body must be a JSON object")
	}
	in, err := protocol.Decode(frame)
	if err != nil {
		var perr *protocol.Error
		if errors.As(err, &perr) {
			return nil, perr
		}
		return nil, protocol.Errorf(protocol.CodeBadRequest, "%s", clipError(err))
	}
	return in, nil
}

// postMessage sends a message through the send path of the send frame:
// the body is validated as a send frame, the user's message rate is the
// bucket its connections here spend (kept without a connection too), and
// the answer is the sent (201) or
// error. The same cid answers with the original message.
func (s *Server) postMessage(r *http.Request, u chat.UserID) (int, any, *protocol.Error) {
	data, perr := s.readBody(r)
	if perr != nil {
		return 0, nil, perr
	}
	in, perr := decodePost(data)
	if perr != nil {
		return 0, nil, perr
	}
	in.Received = time.Now()
	// The user's message rate on this gateway, shared with its connections
	// here and kept between requests.
	if perr := s.sendLimits.spend(s.sendLimits.limiter(u), in.CID, in.Received, s.m); perr != nil {
		return 0, nil, perr
	}
	res := s.stages.send.send(r.Context(), u, "", []*protocol.Inbound{in})[0]
	if res.err != nil {
		return 0, nil, res.err
	}
	return http.StatusCreated, res.sent, nil
}

// deleteMessage replaces a message's body with a tombstone: a delete
// record in chat-log and, in the same write, a tombstone message copy to
// every gateway with members online. Allowed to the sender, and in a
// group to its admins. Deleting a deleted message changes nothing.
func (s *Server) deleteMessage(r *http.Request, u chat.UserID) (int, any, *protocol.Error) {
	id := r.PathValue("id")
	if len(id) != 26 || strings.ToUpper(id) != id {
		return 0, nil, protocol.Errorf(protocol.CodeBadRequest, "invalid message id")
	}
	ctx := r.Context()
	conv, seq, ok, err := s.store.FindMessage(ctx, id)
	if err == nil && !ok {
		// The router indexes message ids as it applies the log: one sent
		// a moment ago may not be indexed yet.
		if !s.views.caughtUp(ctx, nil) {
			return 0, nil, &protocol.Error{Code: protocol.CodeUnavailable, Message: "the message index lags the log, retry", RetryAfterMS: 1000}
		}
		conv, seq, ok, err = s.store.FindMessage(ctx, id)
	}
	if err != nil {
		return 0, nil, s.unavailable("find message", err)
	}
	if !ok {
		return 0, nil, protocol.Errorf(protocol.CodeNotFound, "message %s does not exist", id)
	}
	role, perr := s.members.role(ctx, u, conv)
	if perr != nil {
		return 0, nil, perr
	}
	p, err := s.history.Before(ctx, conv, seq+1, 1)
	if err != nil {
		return 0, nil, s.unavailable("read message", err)
	}
	if len(p.Messages) == 0 || p.Messages[0].ID != id {
		return 0, nil, protocol.Errorf(protocol.CodeNotFound, "message %s is no longer retained", id)
	}
	m := *p.Messages[0]
	admin := conv.Kind() == chat.KindGroup && (role == chat.RoleOwner || role == chat.RoleAdmin)
	switch {
	case m.Deleted:
		return http.StatusNoContent, nil, nil
	case m.From != u && !admin:
		return 0, nil, protocol.Errorf(protocol.CodeForbidden, "only the sender or a group admin can delete a message")
	}
	m.Body, m.Deleted, m.CID = "", true, ""
	del := &chat.Delete{ID: id, Conv: conv, By: u, TS: time.Now().UnixMilli()}
	ev := relay.Event{
		Delivery: chat.Delivery{Type: chat.TypeMessage, Message: &m},
		Log: &kafkabus.Record{Topic: s.cfg.ChatLogTopic, Key: []byte(conv),
			Value: (&chat.LogRecord{Type: chat.TypeDelete, Delete: del}).Encode()},
	}
	switch conv.Kind() {
	case chat.KindPublic:
		ev.All = true
	case chat.KindGroup:
		ev.Group = conv
	default:
		a, b, _ := conv.Members()
		ev.Users = uniqueUsers(a, b)
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ProduceTimeout)
	defer cancel()
	if _, err := s.relay.Send(pctx, ev); err != nil {
		return 0, nil, s.unavailable("delete", err)
	}
	s.audit.Deleted(u, conv, id)
	return http.StatusNoContent, nil, nil
}
