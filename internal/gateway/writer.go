package gateway

import (
	"context"

	"github.com/coder/websocket"
)

// writeLoop is the only writer of the socket while it runs; enqueue and
// close start it when there is something to do, and it exits once the
// queue is empty. Each round takes up to socketChunk bytes of queued
// frames and writes them with one flush of the socket (no timer: what
// queued while the previous flush was in progress is the next batch).
//
// A slow consumer's close aborts a write in progress (its socket buffers
// are full, so no close frame could get through either): the connection
// is dropped at once rather than after WriteTimeout.
func (c *conn) writeLoop() {
	var batch [][]byte
	for {
		c.mu.Lock()
		batch = c.takeBatch(batch[:0])
		closing := c.isClosing()
		if len(batch) == 0 && !closing {
			c.writing = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		if closing {
			c.finish(batch)
			return
		}
		if !c.writeBatch(batch) {
			c.close(reasonWriteFailed)
			c.shutdown()
			_ = c.ws.CloseNow()
			return
		}
	}
}

// takeBatch moves the oldest queued frames, up to socketChunk bytes (at
// least one frame), to dst. c.mu is held.
func (c *conn) takeBatch(dst [][]byte) [][]byte {
	n, size := 0, 0
	for n < len(c.queue) && (n == 0 || size+len(c.queue[n]) <= socketChunk) {
		size += len(c.queue[n])
		n++
	}
	dst = append(dst, c.queue[:n]...)
	clear(c.queue[:n])
	if c.queue = c.queue[n:]; len(c.queue) == 0 {
		c.queue = nil // an idle connection keeps no queue
	}
	return dst
}

// writeBatch writes frames with one flush; their bytes leave the queue's
// count once written (or failed).
func (c *conn) writeBatch(batch [][]byte) bool {
	c.sock.cork()
	var err error
	size := 0
	for _, f := range batch {
		size += len(f)
		if err == nil {
			// Corked: this copies the frame into the batch. The context
			// has no deadline, so no timer is armed per frame; uncork
			// bounds the network write.
			err = c.ws.Write(context.Background(), websocket.MessageText, f)
		}
	}
	if uerr := c.sock.uncork(c.s.cfg.WriteTimeout); err == nil {
		err = uerr
	}
	c.mu.Lock()
	c.queued -= size
	if c.drained != nil {
		close(c.drained)
		c.drained = nil
	}
	c.mu.Unlock()
	if err != nil {
		return false
	}
	c.s.m.framesOut.Add(float64(len(batch)))
	return true
}

// finish ends the connection for c.reason: a lingering reason writes what
// is queued (without waiting for more) first.
func (c *conn) finish(batch [][]byte) {
	if c.reason.linger {
		for len(batch) > 0 && c.writeBatch(batch) {
			c.mu.Lock()
			batch = c.takeBatch(batch[:0])
			c.mu.Unlock()
		}
	}
	c.shutdown()
	switch c.reason {
	case reasonWriteFailed, reasonReadFailed, reasonSlowConsumer:
		_ = c.ws.CloseNow()
	default:
		if c.ctx.Err() != nil {
			_ = c.ws.CloseNow()
		} else {
			_ = c.ws.Close(c.reason.code, c.reason.text)
		}
	}
}

// shutdown drops what is queued; nothing more is queued.
func (c *conn) shutdown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.shut = true
	clear(c.queue)
	c.queue, c.queued = nil, 0
}
