package gateway

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/switchboard-chat/switchboard/internal/audit"
	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/protocol"
)

// upgradeRequest checks the WebSocket handshake headers before anything
// that costs (an admission token, a Redis round trip): a request that is
// not an upgrade gets 426, a malformed upgrade 400, both with a JSON error.
func (s *Server) upgradeRequest(w http.ResponseWriter, r *http.Request) bool {
	if !headerHas(r.Header, "Connection", "upgrade") || !headerHas(r.Header, "Upgrade", "websocket") {
		w.Header().Set("Upgrade", "websocket")
		w.Header().Set("Connection", "Upgrade")
		writeError(w, http.StatusUpgradeRequired, protocol.CodeBadRequest, "this endpoint needs a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket)")
		return false
	}
	switch {
	case r.Method != http.MethodGet:
		writeError(w, http.StatusMethodNotAllowed, protocol.CodeBadRequest, "a WebSocket handshake is a GET")
	case r.Header.Get("Sec-WebSocket-Version") != "13":
		w.Header().Set("Sec-WebSocket-Version", "13")
		writeError(w, http.StatusBadRequest, protocol.CodeBadRequest, "unsupported Sec-WebSocket-Version (want 13)")
	case r.Header.Get("Sec-WebSocket-Key") == "":
		writeError(w, http.StatusBadRequest, protocol.CodeBadRequest, "missing Sec-WebSocket-Key")
	default:
		return true
	}
	return false
}

// headerHas reports whether the comma-separated header name holds token
// (case-insensitive).
func headerHas(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// sessionAllowed enforces MaxSessionsPerUser across gateways, from the
// routing table; a user at the cap gets 429. Two handshakes racing can
// both pass, so the cap may be exceeded by the handshakes in flight. When
// Redis does not answer the handshake goes on: registering the session
// fails the same way a moment later (close 1013).
func (s *Server) sessionAllowed(w http.ResponseWriter, r *http.Request, u chat.UserID) bool {
	if s.cfg.MaxSessionsPerUser < 0 {
		return true
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RedisTimeout)
	defer cancel()
	n, err := s.table.LiveSessions(ctx, u)
	if err != nil || n < s.cfg.MaxSessionsPerUser {
		return true
	}
	s.m.connects.WithLabelValues("too_many_sessions").Inc()
	s.m.limited.WithLabelValues("sessions").Inc()
	s.auditRefusal(r, u, "sessions", "too many sessions")
	w.Header().Set("Retry-After", "5")
	writeError(w, http.StatusTooManyRequests, protocol.CodeRateLimited,
		"too many sessions: "+strconv.Itoa(n)+" open, the limit is "+strconv.Itoa(s.cfg.MaxSessionsPerUser)+"; close one")
	return false
}

// auditRefusal records a refused handshake on chat-audit.
func (s *Server) auditRefusal(r *http.Request, u chat.UserID, reason, msg string) {
	s.audit.Record(audit.Record{Type: audit.ConnectRefused, Actor: u, Reason: reason + ": " + msg, Addr: clientAddr(r)})
}

// clientAddr is the IP address of r's peer (proxies are not trusted).
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// sendLimits is the per-user message rate of one gateway: one token bucket
// per user, shared by the user's connections here and its REST sends
// (POST /api/messages), whether or not it has a connection open. A user
// connected to several gateways gets the rate on each.
//
// A bucket no connection holds is dropped once it has refilled to its
// burst: a full bucket behaves exactly like a new one, so dropping it
// changes no answer. Unreferenced buckets are swept when the map has
// doubled since the last sweep, so it holds about the users that sent in
// the last burst/rate seconds (at most 2 s by default) plus those
// connected. Safe for concurrent use.
type sendLimits struct {
	every rate.Limit // <= 0: unlimited
	burst int
	now   func() time.Time // time.Now; tests set it

	mu        sync.Mutex
	users     map[chat.UserID]*userLimit
	nextSweep int // sweep when users reaches this size
}

type userLimit struct {
	lim  *rate.Limiter
	refs int // connections holding it
}

// minSweep is the map size below which no sweep runs.
const minSweep = 1024

func newSendLimits(perSecond float64, burst int) *sendLimits {
	return &sendLimits{every: rate.Limit(perSecond), burst: burst, now: time.Now,
		users: make(map[chat.UserID]*userLimit), nextSweep: minSweep}
}

// acquire returns u's bucket for one more connection; release gives it
// back. Both are no-ops (nil) when unlimited.
func (l *sendLimits) acquire(u chat.UserID) *rate.Limiter {
	if l.every <= 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	ul := l.get(u)
	ul.refs++
	return ul.lim
}

func (l *sendLimits) release(u chat.UserID) {
	if l.every <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if ul := l.users[u]; ul != nil && ul.refs > 0 {
		ul.refs--
	}
}

// limiter returns u's bucket for one send that holds no connection (a
// REST send); nil when unlimited.
func (l *sendLimits) limiter(u chat.UserID) *rate.Limiter {
	if l.every <= 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.get(u).lim
}

// get returns u's entry, making it (after a sweep when the map is due
// one). l.mu is held.
func (l *sendLimits) get(u chat.UserID) *userLimit {
	if ul := l.users[u]; ul != nil {
		return ul
	}
	if len(l.users) >= l.nextSweep {
		l.sweep()
	}
	ul := &userLimit{lim: rate.NewLimiter(l.every, l.burst)}
	l.users[u] = ul
	return ul
}

// sweep drops the buckets no connection holds that are full again. l.mu
// is held.
func (l *sendLimits) sweep() {
	now := l.now()
	for u, ul := range l.users {
		if ul.refs == 0 && ul.lim.TokensAt(now) >= float64(l.burst) {
			delete(l.users, u)
		}
	}
	l.nextSweep = max(minSweep, 2*len(l.users))
}

// allowSend spends one of c's user's send tokens; when none is left it
// returns the rate_limited error to answer (with the cid and the wait).
func (c *conn) allowSend(in *protocol.Inbound, now time.Time) *protocol.Error {
	if c.sendLimit == nil {
		// A connection takes its user's bucket at its first send: until
		// then the bucket (full) would answer like a new one anyway.
		if c.sendLimit = c.s.sendLimits.acquire(c.user); c.sendLimit == nil {
			return nil // unlimited
		}
		c.holdsLimit = true
	}
	return c.s.sendLimits.spend(c.sendLimit, in.CID, now, c.s.m)
}

// spend takes one send token from lim, a user's bucket of l (nil:
// unlimited); when none is left it returns the rate_limited error to
// answer (with the cid and the wait).
func (l *sendLimits) spend(lim *rate.Limiter, cid string, now time.Time, m *metrics) *protocol.Error {
	if lim == nil {
		return nil
	}
	r := lim.ReserveN(now, 1)
	if !r.OK() {
		return &protocol.Error{Code: protocol.CodeRateLimited, Message: "message rate limit", CID: cid, RetryAfterMS: 1000}
	}
	wait := r.DelayFrom(now)
	if wait == 0 {
		return nil
	}
	r.CancelAt(now)
	m.limited.WithLabelValues("send").Inc()
	return &protocol.Error{
		Code: protocol.CodeRateLimited, CID: cid, RetryAfterMS: max(1, wait.Milliseconds()),
		Message: "sending too fast: at most " + strconv.FormatFloat(float64(l.every), 'g', -1, 64) +
			" messages per second (burst " + strconv.Itoa(l.burst) + "); retry with the same cid",
	}
}
