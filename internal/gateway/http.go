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
	ok, err := s.table.RestoredSample(ctx)
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
	// Once upgraded, the connection's goroutine owns the count.
	s.conns.Add(1)
	handedOff := false
	defer func() {
		if !handedOff {
			s.conns.Done()
		}
	}()
	if wait, ok := s.admit.take(time.Now()); !ok {
		s.m.connects.WithLabelValues("rate_limited").Inc()
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(wait.Seconds()+0.999))))
		writeError(w, http.StatusServiceUnavailable, protocol.CodeRateLimited, "too many new connections; retry later")
		return
	}
	if !s.sessionAllowed(w, r, user) {
		return
	}
	// The hijacker gives the WebSocket a socket that holds buffers only
	// while in use, instead of net/http's two 4 KiB buffers.
	hj := &hijacker{ResponseWriter: w}
	ws, err := websocket.Accept(hj, r, &websocket.AcceptOptions{
		InsecureSkipVerify: true, // Origin checked above
		CompressionMode:    websocket.CompressionDisabled,
	})
	if err != nil {
		s.m.connects.WithLabelValues("bad_handshake").Inc()
		return
	}
	ws.SetReadLimit(protocol.MaxFrameBytes)
	c := &conn{
		s:       s,
		ws:      ws,
		sock:    hj.sock,
		ctx:     connCtx,
		user:    user,
		session: newSessionID(),
		closing: make(chan struct{}),
		expires: expires,
		holding: true,
		stages:  s.stages,
	}
	c.events.later = c.pushAuto
	if !s.register(connCtx, c) {
		return
	}
	// The handler returns now, and net/http lets go of the request and its
	// buffers; the connection lives on in a goroutine of its own, whose
	// stack holds only the read loop.
	handedOff = true
	go func() {
		defer s.conns.Done()
		c.run()
		if c.holdsLimit {
			s.sendLimits.release(user)
		}
		s.unregister(connCtx, c)
	}()
}

// register queues hello, adds c to the hub and the routing table, and
// announces its user, then lets the writer start; false means c was closed
// (Redis did not answer). A client that got hello is routable.
func (s *Server) register(ctx context.Context, c *conn) bool {
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
		c.logger().Warn("register session failed", "err", err)
		c.abandon(closeReason{code: websocket.StatusTryAgainLater, label: "unavailable", text: "routing table unavailable"})
		return false
	}
	s.m.connects.WithLabelValues("ok").Inc()
	s.m.connections.Inc()
	if s.draining.Load() {
		// Upgraded while the drain took its snapshot of the hub.
		c.enqueue(encodeReconnect(0), essential)
		c.close(reasonDrain)
	}
	s.log.Debug("connected", "user", c.user, "session", c.session)
	if sessions == 1 {
		s.announcePresence(ctx, c.user, true)
		s.recordUser(ctx, c.user)
	}
	if err := s.joinGroups(ctx, c.user); err != nil {
		c.logger().Warn("group index: join failed", "err", err)
	}
	// hello goes out now: the session is routable, and its groups known.
	c.release()
	return true
}

// unregister removes a connection that ended.
func (s *Server) unregister(ctx context.Context, c *conn) {
	s.hub.remove(c)
	s.m.connections.Dec()
	if err := s.leaveGroups(ctx, c.user); err != nil {
		c.logger().Warn("group index: leave failed", "err", err)
	}
	s.m.disconnects.WithLabelValues(c.reason.label).Inc()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.RedisTimeout)
	defer cancel()
	left, err := s.table.RemoveSession(rctx, c.user, c.session, s.cfg.ServerID)
	if err != nil {
		// The lease and the janitor clean up what this leaves behind.
		c.logger().Warn("remove session failed", "err", err)
	} else if left == 0 {
		s.announcePresence(ctx, c.user, false)
		if err := s.table.MarkSeen(rctx, c.user, time.Now()); err != nil {
			c.logger().Warn("record last seen failed", "err", err)
		}
	}
	s.log.Debug("disconnected", "user", c.user, "session", c.session, "reason", c.reason.label)
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
