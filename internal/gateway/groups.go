package gateway

import (
	"context"
	"strings"
	"sync"

	"github.com/switchboard-chat/switchboard/internal/chat"
)

// groupIndex is this gateway's side of the membership index: which local
// users belong to which groups. A group copy (one per gateway) is fanned
// out to the local members it names here, so a member removed from a
// group stops receiving as soon as the removal's membership copy was
// consumed — before any message sent after the removal, which comes later
// on the same topic. The index is kept on connect, disconnect and
// membership change, and mirrored to Redis (route's ggw:<conv>) so that a
// group send writes one copy per gateway with members online.
//
// Safe for concurrent use. Fan-out takes a read lock only; Redis writes
// are serialized by sync and never hold the data lock.
type groupIndex struct {
	mu       sync.RWMutex
	members  map[chat.ConvID]map[chat.UserID]struct{} // local members per group
	groupsOf map[chat.UserID]map[chat.ConvID]struct{} // groups per local user
	conns    map[chat.UserID]int                      // local connections per user

	syncMu sync.Mutex // orders the Redis writes of sync
}

func newGroupIndex() *groupIndex {
	return &groupIndex{
		members:  make(map[chat.ConvID]map[chat.UserID]struct{}),
		groupsOf: make(map[chat.UserID]map[chat.ConvID]struct{}),
		conns:    make(map[chat.UserID]int),
	}
}

// add records u as a local member of conv. Caller holds mu.
func (g *groupIndex) add(conv chat.ConvID, u chat.UserID) {
	if g.members[conv] == nil {
		g.members[conv] = make(map[chat.UserID]struct{})
	}
	g.members[conv][u] = struct{}{}
	if g.groupsOf[u] == nil {
		g.groupsOf[u] = make(map[chat.ConvID]struct{})
	}
	g.groupsOf[u][conv] = struct{}{}
}

// remove forgets u as a local member of conv. Caller holds mu.
func (g *groupIndex) remove(conv chat.ConvID, u chat.UserID) {
	delete(g.members[conv], u)
	if len(g.members[conv]) == 0 {
		delete(g.members, conv)
	}
	delete(g.groupsOf[u], conv)
}

// local returns the groups with members connected here.
func (g *groupIndex) local() []chat.ConvID {
	g.mu.RLock()
	defer g.mu.RUnlock()
	out := make([]chat.ConvID, 0, len(g.members))
	for c := range g.members {
		out = append(out, c)
	}
	return out
}

// fanOut enqueues frame to every local session of conv's local members but
// session skip, and returns how many members were found.
func (g *groupIndex) fanOut(h *hub, conv chat.ConvID, frame []byte, skip string, kind frameKind) int {
	g.mu.RLock()
	defer g.mu.RUnlock()
	for u := range g.members[conv] {
		h.sendTo(u, frame, skip, kind)
	}
	return len(g.members[conv])
}

// joinGroups indexes a new connection of c's user: on its first local
// connection, the groups it belongs to.
func (s *Server) joinGroups(ctx context.Context, u chat.UserID) error {
	g := s.groups
	g.mu.Lock()
	g.conns[u]++
	first := g.conns[u] == 1
	g.mu.Unlock()
	if !first {
		return nil
	}
	all, err := s.store.Conversations(ctx, u)
	if err != nil {
		return err
	}
	var convs []chat.ConvID
	for _, c := range all {
		if strings.HasPrefix(string(c), "g:") {
			convs = append(convs, c)
		}
	}
	g.mu.Lock()
	if g.conns[u] > 0 { // not gone meanwhile
		for _, c := range convs {
			g.add(c, u)
		}
	}
	g.mu.Unlock()
	return s.syncGroups(ctx, convs)
}

// leaveGroups unindexes a closed connection of u: on its last local
// connection, u leaves every group's local members.
func (s *Server) leaveGroups(ctx context.Context, u chat.UserID) error {
	g := s.groups
	g.mu.Lock()
	g.conns[u]--
	var convs []chat.ConvID
	if g.conns[u] <= 0 {
		delete(g.conns, u)
		for c := range g.groupsOf[u] {
			convs = append(convs, c)
			g.remove(c, u)
		}
		delete(g.groupsOf, u)
	}
	g.mu.Unlock()
	return s.syncGroups(ctx, convs)
}

// applyMembership updates the index for a membership copy: its users that
// are connected here joined or left the group.
func (s *Server) applyMembership(ctx context.Context, d *chat.Delivery) {
	g := s.groups
	conv := d.Membership.Conv
	g.mu.Lock()
	for _, u := range d.To {
		switch {
		case g.conns[u] == 0:
		case d.Membership.Member:
			g.add(conv, u)
		default:
			g.remove(conv, u)
		}
	}
	g.mu.Unlock()
	if err := s.syncGroups(ctx, []chat.ConvID{conv}); err != nil {
		s.log.Warn("membership index update failed", "conv", conv, "err", err)
	}
}

// syncGroups writes this gateway's presence in the Redis index of convs as
// the local index has it now. Writes are serialized and each reads the
// state at its own time, so the last write always matches the last state.
func (s *Server) syncGroups(ctx context.Context, convs []chat.ConvID) error {
	if len(convs) == 0 {
		return nil
	}
	g := s.groups
	g.syncMu.Lock()
	defer g.syncMu.Unlock()
	var on, off []chat.ConvID
	g.mu.RLock()
	for _, c := range convs {
		if len(g.members[c]) > 0 {
			on = append(on, c)
		} else {
			off = append(off, c)
		}
	}
	g.mu.RUnlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.RedisTimeout)
	defer cancel()
	if err := s.table.SetGroupGateway(ctx, s.cfg.ServerID, on, true); err != nil {
		return err
	}
	return s.table.SetGroupGateway(ctx, s.cfg.ServerID, off, false)
}
