package gateway

import (
	"slices"
	"sync"

	"github.com/switchboard-chat/switchboard/internal/chat"
)

// hub indexes this gateway's live connections by user: a slice per user,
// usually of one, so a connection costs one map entry at most. It is safe
// for concurrent use; its methods never block on a connection.
type hub struct {
	mu     sync.RWMutex
	byUser map[chat.UserID][]*conn
	n      int // connections
}

func newHub() *hub {
	return &hub{byUser: make(map[chat.UserID][]*conn)}
}

func (h *hub) add(c *conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.byUser[c.user] = append(h.byUser[c.user], c)
	h.n++
}

// remove drops c and reports how many connections its user still has here.
func (h *hub) remove(c *conn) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.byUser[c.user]
	i := slices.Index(set, c)
	if i < 0 {
		return len(set)
	}
	h.n--
	if len(set) == 1 {
		delete(h.byUser, c.user)
		return 0
	}
	set[i] = set[len(set)-1]
	set[len(set)-1] = nil
	h.byUser[c.user] = set[:len(set)-1]
	return len(set) - 1
}

// sendTo enqueues frame to every connection of u but the one with session
// skip, and returns how many connections u has here (skipped included).
func (h *hub) sendTo(u chat.UserID, frame []byte, skip string, kind frameKind) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	set := h.byUser[u]
	for _, c := range set {
		if c.session != skip {
			c.enqueue(frame, kind)
		}
	}
	return len(set)
}

// broadcast enqueues frame to every connection but the one with session
// skip. The frame is shared, not copied.
func (h *hub) broadcast(frame []byte, skip string, kind frameKind) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, set := range h.byUser {
		for _, c := range set {
			if c.session != skip {
				c.enqueue(frame, kind)
			}
		}
	}
}

// snapshot returns every connection.
func (h *hub) snapshot() []*conn {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]*conn, 0, h.n)
	for _, set := range h.byUser {
		out = append(out, set...)
	}
	return out
}
