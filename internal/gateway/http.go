package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"github.com/switchboard-chat/switchboard/internal/auth"
	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/health"
	"github.com/switchboard-chat/switchboard/internal/protocol"
)

func (s *Server) routes(connCtx context.Context) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) { s.serveWS(connCtx, w, r) })
	mux.HandleFunc("GET /healthz", s.serveHealth)
	mux.HandleFunc("GET /readyz", s.serveReady)
	s.apiRoutes(mux)
	s.accountRoutes(mux)
	// /metrics is on the admin listener only (see admin.go).
	mux.Handle("GET /metrics", http.NotFoundHandler())
	if s.cfg.Static != nil {
		mux.Handle("GET /", http.FileServerFS(s.cfg.Static))
	}
	return mux
}

func (s *Server) serveHealth(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "server": s.cfg.ServerID})
}

// serveReady answers 200 when the gateway would accept a send now: it is
// not draining, Kafka and Redis answer, and Redis holds the restored
// marker (without it every send is refused, see route.ErrNotRestored).
func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	checks, ok := health.Run(r.Context(), map[string]health.Check{
		"kafka": s.admin.Ping, "redis": s.table.Ping, "sends": s.sendsAccepted,
	})
	checks["draining"] = "no"
	if s.draining.Load() {
		checks["draining"], ok = "yes", false
	}
	health.Write(w, string(s.cfg.ServerID), checks, ok)
}

// errRestoring is the sends check's answer while the restored marker is
// missing.
var errRestoring = errors.New("refused: the message store is being restored from the log")

// sendsAccepted fails while sends are refused because Redis lost its data
// and no rebuild has restored the seq counters yet.
func (s *Server) sendsAccepted(ctx context.Context) error {
	ok, err := s.table.Restored(ctx)
	switch {
	case err != nil:
		return err
	case !ok:
		return errRestoring
	}
	return nil
}

// serveWS authenticates, checks Origin and admission before the upgrade,
// then runs the connection until it ends.
func (s *Server) serveWS(connCtx context.Context, w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		s.m.connects.WithLabelValues("draining").Inc()
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, protocol.CodeUnavailable, "gateway is draining; connect to another gateway")
		return
	}
	// Only a real upgrade attempt may go on to spend an admission token.
	if !s.upgradeRequest(w, r) {
		s.m.connects.WithLabelValues("bad_handshake").Inc()
		return
	}
	if !s.originAllowed(r) {
		s.m.connects.WithLabelValues("forbidden").Inc()
		s.auditRefusal(r, "", "origin", "origin not allowed")
		writeError(w, http.StatusForbidden, protocol.CodeForbidden, "origin not allowed")
		return
	}
	user, expires, err := s.authenticate(r)
	if err != nil {
		s.m.connects.WithLabelValues("unauthorized").Inc()
		msg := chat.Clip(err.Error(), 160)
		if !errors.Is(err, auth.ErrUnauthenticated) {
			msg = "authentication failed"
		}
		s.auditRefusal(r, "", "unauthorized", msg)
		writeError(w, http.StatusUnauthorized, protocol.CodeUnauthorized, msg)
		return
	}
	// Counted before the upgrade: http.Server.Shutdown waits for handlers
	// that have not hijacked yet, so the drain's Wait cannot miss this one.
	s.conns.Add(1)
	defer s.conns.Done()
	if wait, ok := s.admit.take(time.Now()); !ok {
		s.m.connects.WithLabelValues("rate_limited").Inc()
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(wait.Seconds()+0.999))))
		writeError(w, http.StatusServiceUnavailable, protocol.CodeRateLimited, "too many new connections; retry later")
		return
	}
	if !s.sessionAllowed(w, r, user) {
		return
	}
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true}) // Origin checked above
	if err != nil {
		s.m.connects.WithLabelValues("bad_handshake").Inc()
		return
	}
	ws.SetReadLimit(protocol.MaxFrameBytes)
	c := &conn{
		s:        s,
		ws:       ws,
		user:     user,
		session:  newSessionID(),
		out:      make(chan []byte, s.cfg.SendQueue),
		replies:  make(chan []byte, replyQueue),
		inbox:    make(chan *protocol.Inbound, s.cfg.Inbox),
		closing:  make(chan struct{}),
		typing:   make(map[chat.ConvID]*typingState),
		receipts: make(map[receiptMark]int64),
		expires:  expires,

		sendLimit:   s.sendLimits.acquire(user),
		typingLimit: rate.NewLimiter(typingRate, typingBurst),
	}
	defer s.sendLimits.release(user)
	c.writeCtx, c.abortWrite = context.WithCancel(connCtx)
	c.log = s.log.With("user", user, "session", c.session)
	s.serveConn(connCtx, c)
}

// serveConn registers c, runs it and unregisters it.
func (s *Server) serveConn(ctx context.Context, c *conn) {
	// hello is queued before the connection joins the hub, so it is always
	// the first frame; a delivery can arrive as soon as it has joined.
	c.enqueue(protocol.EncodeHello(protocol.Hello{
		User: c.user, Server: s.cfg.ServerID, Session: c.session, HeartbeatMS: s.cfg.PingInterval.Milliseconds(),
	}), essential)
	s.hub.add(c)
	rctx, cancel := context.WithTimeout(ctx, s.cfg.RedisTimeout)
	sessions, err := s.table.AddSession(rctx, c.user, c.session, s.cfg.ServerID)
	cancel()
	if err != nil {
		s.hub.remove(c)
		s.m.connects.WithLabelValues("unavailable").Inc()
		c.log.Warn("register session failed", "err", err)
		_ = c.ws.Close(websocket.StatusTryAgainLater, "routing table unavailable")
		return
	}
	s.m.connects.WithLabelValues("ok").Inc()
	s.m.connections.Inc()
	if s.draining.Load() {
		// Upgraded while the drain took its snapshot of the hub.
		c.enqueue(encodeReconnect(0), essential)
		c.close(reasonDrain)
	}
	c.log.Debug("connected")
	if sessions == 1 {
		s.announcePresence(ctx, c.user, true)
		s.recordUser(ctx, c.user)
	}
	if err := s.joinGroups(ctx, c.user); err != nil {
		c.log.Warn("group index: join failed", "err", err)
	}

	c.run(ctx)

	s.hub.remove(c)
	s.m.connections.Dec()
	if err := s.leaveGroups(ctx, c.user); err != nil {
		c.log.Warn("group index: leave failed", "err", err)
	}
	s.m.disconnects.WithLabelValues(c.reason.label).Inc()
	rctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), s.cfg.RedisTimeout)
	defer cancel()
	left, err := s.table.RemoveSession(rctx, c.user, c.session, s.cfg.ServerID)
	if err != nil {
		// The lease and the janitor clean up what this leaves behind.
		c.log.Warn("remove session failed", "err", err)
	} else if left == 0 {
		s.announcePresence(ctx, c.user, false)
		if err := s.table.MarkSeen(rctx, c.user, time.Now()); err != nil {
			c.log.Warn("record last seen failed", "err", err)
		}
	}
	c.log.Debug("disconnected", "reason", c.reason.label)
}

func newSessionID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func encodeReconnect(afterMS int64) []byte {
	return protocol.EncodeReconnect(protocol.Reconnect{AfterMS: afterMS, Reason: "server draining"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code protocol.Code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": string(code), "message": msg}})
}

// bucket is a token bucket for admission control. Safe for concurrent use.
type bucket struct {
	mu     sync.Mutex
	rate   float64 // tokens per second
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(rate float64, burst int) *bucket {
	return &bucket{rate: rate, burst: float64(burst), tokens: float64(burst)}
}

// take spends one token; when none is left it returns how long until one is.
func (b *bucket) take(now time.Time) (time.Duration, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return 0, true
	}
	return time.Duration((1 - b.tokens) / b.rate * float64(time.Second)), false
}
