package gateway

import (
	"sync"

	"github.com/switchboard-chat/switchboard/internal/chat"
)

// hub indexes this gateway's live connections by user. It is safe for
// concurrent use; its methods never block on a connection.
type hub struct {
	mu     sync.RWMutex
	byUser map[chat.UserID]map[*conn]struct{}
	all    map[*conn]struct{}
}

func newHub() *hub {
	return &hub{byUser: make(map[chat.UserID]map[*conn]struct{}), all: make(map[*conn]struct{})}
}

func (h *hub) add(c *conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.byUser[c.user]
	if set == nil {
		set = make(map[*conn]struct{})
		h.byUser[c.user] = set
	}
	set[c] = struct{}{}
	h.all[c] = struct{}{}
}

// remove drops c and reports how many connections its user still has here.
func (h *hub) remove(c *conn) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.all, c)
	set := h.byUser[c.user]
	delete(set, c)
	if len(set) == 0 {
		delete(h.byUser, c.user)
	}
	return len(set)
}

// sendTo enqueues frame to every connection of u but the one with session
// skip, and returns how many connections u has here (skipped included).
func (h *hub) sendTo(u chat.UserID, frame []byte, skip string, kind frameKind) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	set := h.byUser[u]
	for c := range set {
		if c.session != skip {
			c.enqueue(frame, kind)
		}
	}
	return len(set)
}

// broadcast enqueues frame to every connection but the one with session skip.
func (h *hub) broadcast(frame []byte, skip string, kind frameKind) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for c := range h.all {
		if c.session != skip {
			c.enqueue(frame, kind)
		}
	}
}

// snapshot returns every connection.
func (h *hub) snapshot() []*conn {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]*conn, 0, len(h.all))
	for c := range h.all {
		out = append(out, c)
	}
	return out
}
