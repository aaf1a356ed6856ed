package gateway

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/protocol"
)

// frameKind tells the queue what it may shed.
type frameKind int

const (
	// essential frames (messages, acks) close a full queue's connection.
	essential frameKind = iota
	// ephemeral frames (typing, presence) are dropped when the queue is
	// half full.
	ephemeral
)

// closeReason is why a connection ended, with its WebSocket close code.
type closeReason struct {
	code   websocket.StatusCode
	label  string // metric label, bounded
	text   string // close frame reason
	linger bool   // write what is queued before closing
}

var (
	reasonClientGone   = closeReason{code: websocket.StatusNormalClosure, label: "client_closed"}
	reasonSlowConsumer = closeReason{code: 4000, label: "slow_consumer", text: "slow consumer"}
	reasonDrain        = closeReason{code: websocket.StatusGoingAway, label: "drain", text: "server draining", linger: true}
	reasonPingTimeout  = closeReason{code: websocket.StatusPolicyViolation, label: "ping_timeout", text: "ping timeout"}
	reasonWriteFailed  = closeReason{code: websocket.StatusInternalError, label: "write_failed"}
	reasonReadFailed   = closeReason{code: websocket.StatusInternalError, label: "read_failed"}
	reasonExpired      = closeReason{code: 4001, label: "session_expired", text: "session expired", linger: true}
)

// conn is one WebSocket session. Its run method owns it and returns only
// after everything it started has exited.
//
// An idle connection costs one goroutine, the reader (run itself), and
// no buffer: the writer and the request worker are started when there is
// something to write or to process and exit when their queue is empty,
// and pings come from a timer. Frames to the socket stay in order (one
// writer at a time, taking frames in queue order), and so do the
// connection's requests (one worker at a time).
type conn struct {
	s       *Server
	ws      *websocket.Conn
	sock    *socket         // under ws: lazy reads, corked writes, abort
	ctx     context.Context // the gateway's connection context
	user    chat.UserID
	session string
	expires time.Time // the credential's expiry; zero: never

	// stages serve the connection's requests; events is what its receipts
	// and typing remember (request worker only).
	stages *stages
	events eventState

	// sendLimit is the user's message rate on this gateway, taken at the
	// first send (nil: none yet, or unlimited).
	sendLimit  *rate.Limiter
	holdsLimit bool // sendLimit was acquired (reader), released by serveWS

	// blocked is set while the reader waits for room in the inbox: the
	// client is alive (it sent those frames) but its pongs are not read.
	blocked atomic.Bool
	// lastRead is when the reader last read a frame (Unix nanoseconds).
	lastRead atomic.Int64

	mu       sync.Mutex
	queue    [][]byte            // frames waiting for the writer
	queued   int                 // bytes queued or being written
	writing  bool                // a writer runs (for good once closing)
	holding  bool                // registering: frames wait (see release)
	shut     bool                // the writer has closed the socket
	requests []*protocol.Inbound // waiting for the request worker
	working  bool                // a request worker runs
	room     chan struct{}       // closed when the waiting reader may go on
	drained  chan struct{}       // closed when written bytes leave the queue (reply waits on it)
	done     bool                // run is ending: nothing new starts
	pinger   *time.Timer
	tasks    sync.WaitGroup // writer, request worker, ping in flight

	closeOnce sync.Once
	closing   chan struct{}
	reason    closeReason
}

// who is the connection's user and session id (requester).
func (c *conn) who() (chat.UserID, string) { return c.user, c.session }

// gone is closed once the connection is closing (requester).
func (c *conn) gone() <-chan struct{} { return c.closing }

// logger is the connection's logger, made only when something is logged.
func (c *conn) logger() *slog.Logger {
	return c.s.log.With("user", c.user, "session", c.session)
}

// goLocked starts f as one of c's tasks unless run is ending, and reports
// whether it did. c.mu is held.
func (c *conn) goLocked(f func()) bool {
	if c.done {
		return false
	}
	c.tasks.Add(1)
	go func() {
		defer c.tasks.Done()
		f()
	}()
	return true
}

// enqueue queues frame for writing without blocking, starting the writer
// if none runs. An essential frame that would take the queued bytes past
// SendQueueBytes closes the connection as a slow consumer (a frame always
// fits an empty queue); an ephemeral one is dropped once half the budget
// is used.
func (c *conn) enqueue(frame []byte, kind frameKind) {
	budget := c.s.cfg.SendQueueBytes
	c.mu.Lock()
	switch {
	case c.shut:
		c.mu.Unlock()
		return
	case kind == ephemeral && c.queued >= budget/2:
		c.mu.Unlock()
		c.s.m.drops.WithLabelValues("shed_ephemeral").Inc()
		return
	case c.queued > 0 && c.queued+len(frame) > budget:
		c.mu.Unlock()
		c.s.m.drops.WithLabelValues("queue_full").Inc()
		c.close(reasonSlowConsumer)
		return
	}
	c.queue = append(c.queue, frame)
	c.queued += len(frame)
	if !c.writing && !c.holding {
		c.writing = c.goLocked(c.writeLoop)
	}
	c.mu.Unlock()
}

// reply queues an answer to one of the client's own frames (pong, sent,
// an error, a history page). Unlike enqueue it never closes the
// connection: while the queue has no room it waits, so a client that
// sends faster than it takes its answers is read more slowly (TCP
// back-pressure), like one that sends faster than Kafka acknowledges, and
// one that reads nothing is closed by the write timeout. Called by the
// reader and the request worker; false means the connection is closing.
func (c *conn) reply(frame []byte) bool {
	budget := c.s.cfg.SendQueueBytes
	for {
		c.mu.Lock()
		if c.shut {
			c.mu.Unlock()
			return false
		}
		if c.queued == 0 || c.queued+len(frame) <= budget {
			c.queue = append(c.queue, frame)
			c.queued += len(frame)
			if !c.writing && !c.holding {
				c.writing = c.goLocked(c.writeLoop)
			}
			c.mu.Unlock()
			return true
		}
		if c.drained == nil {
			c.drained = make(chan struct{})
		}
		wait := c.drained
		c.mu.Unlock()
		c.blocked.Store(true) // alive: its pong may wait behind this
		select {
		case <-wait:
			c.blocked.Store(false)
		case <-c.closing:
			c.blocked.Store(false)
			return false
		}
	}
}

// close asks the connection to end with reason; the first reason wins.
// A slow consumer's pending write is aborted. The writer (started if
// none runs) writes the close frame.
func (c *conn) close(r closeReason) {
	c.closeOnce.Do(func() {
		c.reason = r
		close(c.closing)
		if r == reasonSlowConsumer {
			c.sock.abort()
		}
		c.mu.Lock()
		if !c.writing {
			c.writing = c.goLocked(c.writeLoop)
		}
		c.mu.Unlock()
	})
}

// release lets the writer start once the connection is registered: a
// client that got hello can be sent to at once.
func (c *conn) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.holding = false
	if len(c.queue) > 0 && !c.writing {
		c.writing = c.goLocked(c.writeLoop)
	}
}

// queuedBytes is how many bytes wait for the socket.
func (c *conn) queuedBytes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.queued
}

func (c *conn) isClosing() bool {
	select {
	case <-c.closing:
		return true
	default:
		return false
	}
}

// run reads the connection until it ends, then waits for its tasks.
func (c *conn) run() {
	if !c.expires.IsZero() {
		expiry := time.AfterFunc(time.Until(c.expires), func() { c.close(reasonExpired) })
		defer expiry.Stop()
	}
	c.mu.Lock()
	c.pinger = time.AfterFunc(c.s.cfg.PingInterval, c.ping)
	c.mu.Unlock()

	c.readLoop(c.ctx)

	c.mu.Lock()
	c.done = true
	c.pinger.Stop()
	c.mu.Unlock()
	c.tasks.Wait()
	c.events.stopAllTyping()
}

// abandon closes a connection that never ran with r, and waits for its
// writer to have closed the socket.
func (c *conn) abandon(r closeReason) {
	c.close(r)
	c.mu.Lock()
	c.done = true
	c.mu.Unlock()
	c.tasks.Wait()
}

// readLoop reads frames until the connection fails or closes. It keeps one
// long-lived Read context: in coder/websocket an expired Read context
// closes the connection.
func (c *conn) readLoop(ctx context.Context) {
	defer c.close(reasonReadFailed) // no-op when a reason is already set
	for {
		typ, data, err := c.ws.Read(ctx)
		c.lastRead.Store(time.Now().UnixNano())
		if err != nil {
			switch status := websocket.CloseStatus(err); {
			case status == websocket.StatusNormalClosure || status == websocket.StatusGoingAway:
				c.close(reasonClientGone)
			case status == websocket.StatusMessageTooBig:
				c.close(closeReason{code: websocket.StatusMessageTooBig, label: "too_large"})
			case errors.Is(err, context.Canceled):
				c.close(reasonDrain)
			default:
				c.s.log.Debug("read ended", "user", c.user, "session", c.session, "err", err)
			}
			return
		}
		if typ != websocket.MessageText {
			c.s.m.framesIn.WithLabelValues("invalid").Inc()
			if !c.reply(protocol.EncodeError(protocol.Errorf(protocol.CodeBadRequest, "binary frames are not supported; send JSON text frames"))) {
				return
			}
			continue
		}
		in, err := protocol.Decode(data)
		if err != nil {
			c.s.m.framesIn.WithLabelValues("invalid").Inc()
			if !c.reply(protocol.EncodeError(err.(*protocol.Error))) {
				return
			}
			continue
		}
		c.s.m.framesIn.WithLabelValues(in.Type).Inc()
		in.Received = time.Now()
		if !c.handle(in) {
			return
		}
	}
}

// handle acts on one valid frame; false means the connection is closing.
func (c *conn) handle(in *protocol.Inbound) bool {
	switch in.Type {
	case protocol.TypePing:
		return c.reply(protocol.EncodePong(in.T))
	case protocol.TypeSend, protocol.TypeSync, protocol.TypeReceipt, protocol.TypeTyping, protocol.TypeHistory:
		if in.Type == protocol.TypeSend {
			if err := c.allowSend(in, in.Received); err != nil {
				return c.reply(protocol.EncodeError(err))
			}
		}
		return c.push(in)
	}
	return true
}

// waitRoom waits until the write queue has room for n more bytes while
// keeping half of its budget free for live traffic; false means the
// connection is closing.
func (c *conn) waitRoom(n int) bool {
	limit := max(c.s.cfg.SendQueueBytes/2, n)
	if c.queuedBytes()+n <= limit {
		return true
	}
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for c.queuedBytes()+n > limit {
		select {
		case <-c.closing:
			return false
		case <-t.C:
		}
	}
	return true
}
