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

// conn is one WebSocket session. Its run method owns it: one reader (run
// itself), one writer, one pinger and one send processor, all of which
// have exited when run returns.
type conn struct {
	s       *Server
	ws      *websocket.Conn
	user    chat.UserID
	session string
	log     *slog.Logger

	out     chan []byte            // frames to write, bounded
	replies chan []byte            // answers to the client's own frames, bounded
	inbox   chan *protocol.Inbound // sends and syncs to process, bounded

	typing   map[chat.ConvID]*typingState // owned by the request loop
	receipts map[receiptMark]int64        // highest mark sent; request loop
	expires  time.Time                    // the credential's expiry; zero: never

	// sendLimit is the user's message rate on this gateway (nil:
	// unlimited); typingLimit bounds the typing frames relayed for this
	// connection, starts and stops alike (request loop).
	sendLimit   *rate.Limiter
	typingLimit *rate.Limiter

	// blocked counts the reader and request loop while they wait for
	// room in the inbox or the replies: the client is alive (it sent
	// those frames) but its pongs may not be read.
	blocked atomic.Int32

	writeCtx   context.Context // canceled to abort a write in progress
	abortWrite context.CancelFunc

	closeOnce sync.Once
	closing   chan struct{}
	reason    closeReason
}

// enqueue queues frame for writing without blocking. An essential frame
// that does not fit closes the connection as a slow consumer; an
// ephemeral one is dropped once the queue is half full.
func (c *conn) enqueue(frame []byte, kind frameKind) {
	if kind == ephemeral && len(c.out) >= cap(c.out)/2 {
		c.s.m.drops.WithLabelValues("shed_ephemeral").Inc()
		return
	}
	select {
	case c.out <- frame:
	default:
		c.s.m.drops.WithLabelValues("queue_full").Inc()
		c.close(reasonSlowConsumer)
	}
}

// replyQueue is the capacity of a connection's replies.
const replyQueue = 64

// reply queues an answer to one of the client's own frames (pong, sent,
// an error, a history page). Unlike enqueue it waits for room rather than
// closing the connection: a client that sends faster than it takes its
// answers is read more slowly (TCP back-pressure), like one that sends
// faster than Kafka acknowledges, and one that reads nothing is closed by
// the write timeout. Answers have their own queue, so a flood of them
// never crowds out deliveries. Called by the reader and the request loop;
// false means the connection is closing.
func (c *conn) reply(frame []byte) bool {
	select {
	case c.replies <- frame:
		return true
	default:
	}
	c.blocked.Add(1)
	defer c.blocked.Add(-1)
	select {
	case c.replies <- frame:
		return true
	case <-c.closing:
		return false
	}
}

// close asks the connection to end with reason; the first reason wins.
// A slow consumer's pending write is aborted.
func (c *conn) close(r closeReason) {
	c.closeOnce.Do(func() {
		c.reason = r
		close(c.closing)
		if r == reasonSlowConsumer && c.abortWrite != nil {
			c.abortWrite()
		}
	})
}

func (c *conn) run(ctx context.Context) {
	defer c.abortWrite()
	if !c.expires.IsZero() {
		expiry := time.AfterFunc(time.Until(c.expires), func() { c.close(reasonExpired) })
		defer expiry.Stop()
	}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); c.writeLoop(ctx) }()
	go func() { defer wg.Done(); c.pingLoop(ctx) }()
	go func() { defer wg.Done(); defer c.stopAllTyping(); c.requestLoop(ctx) }()
	c.readLoop(ctx)
	wg.Wait()
}

// readLoop reads frames until the connection fails or closes. It keeps one
// long-lived Read context: in coder/websocket an expired Read context
// closes the connection.
func (c *conn) readLoop(ctx context.Context) {
	defer c.close(reasonReadFailed) // no-op when a reason is already set
	for {
		typ, data, err := c.ws.Read(ctx)
		if err != nil {
			switch status := websocket.CloseStatus(err); {
			case status == websocket.StatusNormalClosure || status == websocket.StatusGoingAway:
				c.close(reasonClientGone)
			case status == websocket.StatusMessageTooBig:
				c.close(closeReason{code: websocket.StatusMessageTooBig, label: "too_large"})
			case errors.Is(err, context.Canceled):
				c.close(reasonDrain)
			default:
				c.log.Debug("read ended", "err", err)
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
		if !c.handle(ctx, in) {
			return
		}
	}
}

// handle acts on one valid frame; false means the connection is closing.
func (c *conn) handle(ctx context.Context, in *protocol.Inbound) bool {
	switch in.Type {
	case protocol.TypePing:
		return c.reply(protocol.EncodePong(in.T))
	case protocol.TypeSend, protocol.TypeSync, protocol.TypeReceipt, protocol.TypeTyping, protocol.TypeHistory:
		if in.Type == protocol.TypeSend {
			if err := c.allowSend(in, in.Received); err != nil {
				return c.reply(protocol.EncodeError(err))
			}
		}
		// Blocking here is flow control: a client that sends faster than
		// Kafka acknowledges stops being read.
		select {
		case c.inbox <- in:
		default:
			c.blocked.Add(1)
			defer c.blocked.Add(-1)
			select {
			case c.inbox <- in:
			case <-c.closing:
				return false
			}
		}
	}
	return true
}

// writeLoop is the only writer of the socket.
//
// A slow consumer's close aborts a write in progress (its socket buffers
// are full, so no close frame could get through either): the connection
// is dropped at once rather than after WriteTimeout. Code 4000 reaches a
// client only when its socket still had room.
func (c *conn) writeLoop(ctx context.Context) {
	abortable := c.writeCtx
	write := func(f []byte) bool {
		wctx, cancel := context.WithTimeout(abortable, c.s.cfg.WriteTimeout)
		defer cancel()
		if err := c.ws.Write(wctx, websocket.MessageText, f); err != nil {
			c.close(reasonWriteFailed)
			return false
		}
		c.s.m.framesOut.Inc()
		return true
	}
	for {
		select {
		case f := <-c.out:
			if !write(f) {
				c.ws.CloseNow()
				return
			}
		case f := <-c.replies:
			if !write(f) {
				c.ws.CloseNow()
				return
			}
		case <-c.closing:
			if c.reason.linger {
				c.flush(write)
			}
			if c.reason == reasonWriteFailed || c.reason == reasonReadFailed || abortable.Err() != nil {
				c.ws.CloseNow()
			} else {
				_ = c.ws.Close(c.reason.code, c.reason.text)
			}
			return
		}
	}
}

// flush writes what is queued, without waiting for more.
func (c *conn) flush(write func([]byte) bool) {
	for {
		select {
		case f := <-c.out:
			if !write(f) {
				return
			}
		case f := <-c.replies:
			if !write(f) {
				return
			}
		default:
			return
		}
	}
}

// pingLoop checks liveness with WebSocket pings; a peer that does not
// answer within PingTimeout is closed.
func (c *conn) pingLoop(ctx context.Context) {
	t := time.NewTicker(c.s.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.closing:
			return
		case <-t.C:
			if c.blocked.Load() > 0 {
				continue // its pong waits behind its own sends; it is alive
			}
			pctx, cancel := context.WithTimeout(ctx, c.s.cfg.PingTimeout)
			err := c.ws.Ping(pctx)
			cancel()
			if err != nil {
				c.close(reasonPingTimeout)
				return
			}
		}
	}
}
