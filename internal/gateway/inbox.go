package gateway

import "github.com/switchboard-chat/switchboard/internal/protocol"

// push hands a request to the request worker, starting one if none runs.
// With Inbox requests already waiting it blocks until there is room: a
// client that sends faster than Kafka acknowledges stops being read (flow
// control). False means the connection is closing. Reader only.
func (c *conn) push(in *protocol.Inbound) bool {
	c.mu.Lock()
	for len(c.requests) >= c.s.cfg.Inbox {
		room := make(chan struct{})
		c.room = room
		c.mu.Unlock()
		c.blocked.Store(true)
		select {
		case <-room:
		case <-c.closing:
			c.blocked.Store(false)
			return false
		}
		c.blocked.Store(false)
		c.mu.Lock()
	}
	c.appendRequest(in)
	c.mu.Unlock()
	return true
}

// pushAuto queues a request made by the gateway itself (an automatic
// typing stop) without blocking: at most maxTyping of them wait past the
// Inbox bound. Nothing is queued once the connection is closing.
func (c *conn) pushAuto(in *protocol.Inbound) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.isClosing() {
		c.appendRequest(in)
	}
}

// appendRequest queues in and starts the worker if none runs. c.mu is held.
func (c *conn) appendRequest(in *protocol.Inbound) {
	c.requests = append(c.requests, in)
	if !c.working {
		c.working = c.goLocked(c.requestLoop)
	}
}

// requestLoop processes the connection's sends and other requests in
// order, and exits when none is waiting (or the connection is closing).
// Sends that queued up while the previous request was in flight are
// handled as one batch: one Redis round trip and one Kafka produce.
func (c *conn) requestLoop() {
	var batch []*protocol.Inbound
	for {
		c.mu.Lock()
		if len(c.requests) == 0 || c.isClosing() {
			c.working = false
			c.mu.Unlock()
			return
		}
		n := 1
		if c.requests[0].Type == protocol.TypeSend {
			for n < len(c.requests) && n < maxSendBatch && c.requests[n].Type == protocol.TypeSend {
				n++
			}
		}
		batch = append(batch[:0], c.requests[:n]...)
		clear(c.requests[:n])
		if c.requests = c.requests[n:]; len(c.requests) == 0 {
			c.requests = nil
		}
		if c.room != nil {
			close(c.room)
			c.room = nil
		}
		c.mu.Unlock()
		c.serve(batch)
		clear(batch)
	}
}

// serve hands a batch of the connection's requests (sends, or one other
// request) to its stage. The connection answers its sends itself; the
// other stages answer through the connection as their requester.
func (c *conn) serve(batch []*protocol.Inbound) {
	in := batch[0]
	switch in.Type {
	case protocol.TypeSend:
		for _, r := range c.stages.send.send(c.ctx, c.user, c.session, batch) {
			if r.err != nil {
				c.reply(protocol.EncodeError(r.err))
			} else {
				c.reply(protocol.EncodeSent(r.sent))
			}
		}
	case protocol.TypeSync:
		c.stages.sync.run(c.ctx, c, in)
	case protocol.TypeReceipt:
		c.stages.events.receipt(c.ctx, c, &c.events, in)
	case protocol.TypeTyping:
		c.stages.events.typing(c.ctx, c, &c.events, in)
	case protocol.TypeHistory:
		c.stages.history.page(c.ctx, c, in)
	}
}
