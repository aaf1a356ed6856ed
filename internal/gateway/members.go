package gateway

import (
	"context"
	"log/slog"
	"time"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/protocol"
	"github.com/switchboard-chat/switchboard/internal/store"
)

// members answers who may read and write a conversation, for the request
// stages and the REST API alike.
type members struct {
	store   *store.Store
	timeout time.Duration // one Redis round trip
	log     *slog.Logger
}

// access decides whether u may read and write conv: the public room, its
// own direct conversations, and the groups it is a member of. It answers
// forbidden, not_found (a group that does not exist) or unavailable.
func (m members) access(ctx context.Context, u chat.UserID, conv chat.ConvID) *protocol.Error {
	_, err := m.role(ctx, u, conv)
	return err
}

// role returns u's role in conv (member for the public room and direct
// conversations), or the refusal access answers.
func (m members) role(ctx context.Context, u chat.UserID, conv chat.ConvID) (chat.Role, *protocol.Error) {
	switch conv.Kind() {
	case chat.KindPublic:
		return chat.RoleMember, nil
	case chat.KindDirect:
		if _, ok := conv.Peer(u); ok {
			return chat.RoleMember, nil
		}
		return "", protocol.Errorf(protocol.CodeForbidden, "you are not a member of %s", conv)
	}
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	role, exists, err := m.store.Membership(ctx, conv, u)
	switch {
	case err != nil:
		m.log.Warn("membership lookup failed", "conv", conv, "err", err)
		return "", &protocol.Error{Code: protocol.CodeUnavailable, Message: "membership unavailable, retry", RetryAfterMS: 1000}
	case !exists:
		return "", protocol.Errorf(protocol.CodeNotFound, "conversation %s does not exist", conv)
	case role == "":
		return "", protocol.Errorf(protocol.CodeForbidden, "you are not a member of %s", conv)
	}
	return role, nil
}
