package gateway

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/switchboard-chat/switchboard/internal/audit"
	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/kafkabus"
	"github.com/switchboard-chat/switchboard/internal/protocol"
	"github.com/switchboard-chat/switchboard/internal/relay"
	"github.com/switchboard-chat/switchboard/internal/store"
)

// groupLockTTL bounds how long one change holds a group's lock.
const groupLockTTL = 10 * time.Second

// memberView is a member in a conversation object.
type memberView struct {
	ID   chat.UserID `json:"id"`
	Role chat.Role   `json:"role"`
}

// conversationView is the REST conversation object.
type conversationView struct {
	ID        chat.ConvID  `json:"id"`
	Kind      chat.Kind    `json:"kind"`
	Name      string       `json:"name"`
	Members   []memberView `json:"members,omitempty"`
	CreatedAt int64        `json:"created_at,omitempty"`
	Version   int64        `json:"version,omitempty"`
}

// viewOf describes conversation c as seen by u.
func viewOf(c *chat.Conversation, u chat.UserID) conversationView {
	v := conversationView{ID: c.ID, Kind: c.ID.Kind(), Name: convName(c, u), CreatedAt: c.CreatedAt, Version: c.Version}
	for _, m := range c.Members {
		r, _ := c.RoleOf(m)
		v.Members = append(v.Members, memberView{ID: m, Role: r})
	}
	return v
}

// convName is a group's name, a direct conversation's other member, or
// "public".
func convName(c *chat.Conversation, u chat.UserID) string {
	if peer, ok := c.ID.Peer(u); ok {
		return string(peer)
	}
	if c.Name != "" {
		return c.Name
	}
	return string(c.ID)
}

// describe returns the conversation conv if u may read it.
func (s *Server) describe(ctx context.Context, u chat.UserID, conv chat.ConvID) (*chat.Conversation, *protocol.Error) {
	if err := s.members.access(ctx, u, conv); err != nil {
		return nil, err
	}
	switch conv.Kind() {
	case chat.KindPublic:
		return &chat.Conversation{ID: conv, Kind: chat.KindPublic}, nil
	case chat.KindDirect:
		a, b, _ := conv.Members()
		return &chat.Conversation{ID: conv, Kind: chat.KindDirect, Members: uniqueUsers(a, b)}, nil
	}
	c, ok, err := s.store.Conversation(ctx, conv)
	if err != nil {
		return nil, s.unavailable("read conversation", err)
	}
	if !ok {
		return nil, protocol.Errorf(protocol.CodeNotFound, "conversation %s does not exist", conv)
	}
	return &c, nil
}

func (s *Server) getConversation(r *http.Request, u chat.UserID) (int, any, *protocol.Error) {
	conv, perr := pathConv(r)
	if perr != nil {
		return 0, nil, perr
	}
	c, perr := s.describe(r.Context(), u, conv)
	if perr != nil {
		return 0, nil, perr
	}
	return http.StatusOK, map[string]any{"conversation": viewOf(c, u)}, nil
}

// listConversations answers the user's conversations, public first, then
// by recent activity, each with its newest message and unread count.
func (s *Server) listConversations(r *http.Request, u chat.UserID) (int, any, *protocol.Error) {
	ctx := r.Context()
	mine, err := s.store.Conversations(ctx, u)
	if err != nil {
		return 0, nil, s.unavailable("list conversations", err)
	}
	convs := append([]chat.ConvID{chat.Public}, mine...)
	sums, err := s.store.Summaries(ctx, u, convs)
	if err != nil {
		return 0, nil, s.unavailable("list conversations", err)
	}
	type item struct {
		ID     chat.ConvID   `json:"id"`
		Kind   chat.Kind     `json:"kind"`
		Name   string        `json:"name"`
		Last   *chat.Message `json:"last_message"`
		Unread int64         `json:"unread"`
	}
	out := make([]item, 0, len(convs))
	for i, conv := range convs {
		c := &chat.Conversation{ID: conv}
		if conv.Kind() == chat.KindGroup {
			g, ok, err := s.store.Conversation(ctx, conv)
			if err != nil {
				return 0, nil, s.unavailable("list conversations", err)
			}
			if ok {
				c = &g
			}
		}
		out = append(out, item{ID: conv, Kind: conv.Kind(), Name: convName(c, u), Last: sums[i].Last, Unread: sums[i].Unread})
	}
	return http.StatusOK, map[string]any{"conversations": out}, nil
}

// createRequest is the body of POST /api/conversations.
type createRequest struct {
	Kind    chat.Kind     `json:"kind"`
	With    chat.UserID   `json:"with"`
	Name    string        `json:"name"`
	Members []chat.UserID `json:"members"`
}

// decodeCreate decodes and checks a POST /api/conversations body: the
// kind, and for a direct conversation the peer. A group's name and members
// are checked by chat.NewGroup.
func decodeCreate(data []byte) (createRequest, *protocol.Error) {
	var req createRequest
	if err := decodeStrict(data, &req); err != nil {
		return req, protocol.Errorf(protocol.CodeBadRequest, "%s", err.Error())
	}
	switch req.Kind {
	case chat.KindDirect:
		if _, err := chat.ParseUserID(string(req.With)); err != nil {
			return req, protocol.Errorf(protocol.CodeBadRequest, "with: %s", chat.Clip(err.Error(), 160))
		}
	case chat.KindGroup:
	default:
		return req, protocol.Errorf(protocol.CodeBadRequest, `kind must be "direct" or "group"`)
	}
	return req, nil
}

func (s *Server) createConversation(r *http.Request, u chat.UserID) (int, any, *protocol.Error) {
	data, perr := s.readBody(r)
	if perr != nil {
		return 0, nil, perr
	}
	req, perr := decodeCreate(data)
	if perr != nil {
		return 0, nil, perr
	}
	switch req.Kind {
	case chat.KindDirect:
		// A direct conversation exists implicitly; its first message logs it.
		a, b, _ := chat.DirectConv(u, req.With).Members()
		c := &chat.Conversation{ID: chat.DirectConv(u, req.With), Kind: chat.KindDirect, Members: uniqueUsers(a, b)}
		return http.StatusCreated, map[string]any{"conversation": viewOf(c, u)}, nil
	case chat.KindGroup:
		now := time.Now()
		c, err := chat.NewGroup(chat.NewGroupID(chat.NewMessageID(now)), req.Name, u, req.Members, now.UnixMilli())
		if err != nil {
			return 0, nil, groupRefusal(err)
		}
		if perr := s.writeGroup(r.Context(), u, nil, c); perr != nil {
			return 0, nil, perr
		}
		return http.StatusCreated, map[string]any{"conversation": viewOf(c, u)}, nil
	}
	return 0, nil, protocol.Errorf(protocol.CodeBadRequest, `kind must be "direct" or "group"`) // not reached: decodeCreate checked it
}

// patchRequest is the body of PATCH /api/conversations/{id}.
type patchRequest struct {
	Name   *string                   `json:"name"`
	Add    []chat.UserID             `json:"add"`
	Remove []chat.UserID             `json:"remove"`
	Roles  map[chat.UserID]chat.Role `json:"roles"`
}

// change is the group change req asks for; chat.Conversation.Change
// checks it.
func (req patchRequest) change() chat.GroupChange {
	return chat.GroupChange{Name: req.Name, Add: req.Add, Remove: req.Remove, Roles: req.Roles}
}

// decodePatch decodes a PATCH /api/conversations/{id} body.
func decodePatch(data []byte) (patchRequest, *protocol.Error) {
	var req patchRequest
	if err := decodeStrict(data, &req); err != nil {
		return req, protocol.Errorf(protocol.CodeBadRequest, "%s", err.Error())
	}
	return req, nil
}

func (s *Server) decodePatchBody(r *http.Request) (patchRequest, *protocol.Error) {
	data, perr := s.readBody(r)
	if perr != nil {
		return patchRequest{}, perr
	}
	return decodePatch(data)
}

// patchConversation changes a group: rename, add, remove, roles. Changes
// of one group are serialized by a lock in Redis across gateways.
func (s *Server) patchConversation(r *http.Request, u chat.UserID) (int, any, *protocol.Error) {
	conv, perr := pathConv(r)
	if perr != nil {
		return 0, nil, perr
	}
	req, perr := s.decodePatchBody(r)
	if perr != nil {
		return 0, nil, perr
	}
	if conv.Kind() != chat.KindGroup {
		if perr := s.members.access(r.Context(), u, conv); perr != nil {
			return 0, nil, perr
		}
		return 0, nil, protocol.Errorf(protocol.CodeBadRequest, "only groups can be changed")
	}
	lctx, cancel := context.WithTimeout(r.Context(), s.cfg.ProduceTimeout)
	defer cancel()
	release, err := s.store.LockConversation(lctx, conv, groupLockTTL)
	if err != nil {
		return 0, nil, s.unavailable("lock group", err)
	}
	defer release()
	before, perr := s.describe(r.Context(), u, conv)
	if perr != nil {
		return 0, nil, perr
	}
	after := *before
	err = after.Change(u, req.change(), time.Now().UnixMilli())
	if err != nil {
		return 0, nil, groupRefusal(err)
	}
	if perr := s.writeGroup(r.Context(), u, before, &after); perr != nil {
		return 0, nil, perr
	}
	return http.StatusOK, map[string]any{"conversation": viewOf(&after, u)}, nil
}

func groupRefusal(err error) *protocol.Error {
	if errors.Is(err, chat.ErrNotAllowed) {
		return protocol.Errorf(protocol.CodeForbidden, "%v", err)
	}
	return protocol.Errorf(protocol.CodeBadRequest, "%v", err)
}

// writeGroup makes a group's new state (after; before is nil for a new
// group) durable and effective: the record goes to chat-state, is applied
// to the views at once (the router's later apply of the same version
// changes nothing), and the gateways of the members who joined or left
// get a membership copy — acknowledged before this returns, so a message
// sent after it reaches them after the change.
func (s *Server) writeGroup(ctx context.Context, actor chat.UserID, before, after *chat.Conversation) *protocol.Error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ProduceTimeout)
	defer cancel()
	rec := &chat.StateRecord{Type: chat.TypeConversation, Conversation: after}
	if err := s.producer.Produce(ctx, []kafkabus.Record{{Topic: s.cfg.ChatStateTopic, Key: rec.Key(), Value: rec.Encode()}}); err != nil {
		return s.unavailable("store group", err)
	}
	if err := s.store.ApplyConversation(ctx, after, store.Position{}); err != nil {
		return s.unavailable("apply group", err)
	}
	var old []chat.UserID
	if before != nil {
		old = before.Members
	}
	added, removed := chat.MembershipDiff(old, after.Members)
	for _, ch := range []struct {
		users  []chat.UserID
		member bool
	}{{added, true}, {removed, false}} {
		if len(ch.users) == 0 {
			continue
		}
		d := chat.Delivery{Type: chat.TypeMembership, Membership: &chat.Membership{Conv: after.ID, Member: ch.member}}
		if _, err := s.relay.Send(ctx, relay.Event{Delivery: d, Users: ch.users}); err != nil {
			return s.unavailable("announce membership", err)
		}
	}
	s.auditGroup(actor, before, after, added, removed)
	return nil
}

// auditGroup records the membership and role changes between before and
// after.
func (s *Server) auditGroup(actor chat.UserID, before, after *chat.Conversation, added, removed []chat.UserID) {
	for _, u := range added {
		r, _ := after.RoleOf(u)
		s.audit.Membership(audit.MemberAdded, actor, after.ID, u, string(r))
	}
	for _, u := range removed {
		s.audit.Membership(audit.MemberRemoved, actor, after.ID, u, "")
	}
	if before == nil {
		return
	}
	for _, u := range after.Members {
		was, ok := before.RoleOf(u)
		if now, _ := after.RoleOf(u); ok && now != was {
			s.audit.Membership(audit.RoleChanged, actor, after.ID, u, string(now))
		}
	}
}
