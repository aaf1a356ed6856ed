package gateway

import (
	"context"
	"time"
)

// ping checks liveness with a WebSocket ping; a peer that neither answers
// within PingTimeout nor sends any frame meanwhile is closed (a busy
// sender's pong waits behind its own frames, which prove it alive). It
// runs from the connection's ping timer (no goroutine waits between
// pings) and arms the timer again.
func (c *conn) ping() {
	c.mu.Lock()
	if c.done {
		c.mu.Unlock()
		return
	}
	c.tasks.Add(1)
	c.mu.Unlock()
	defer c.tasks.Done()
	if c.isClosing() {
		return
	}
	// A reader blocked on its own sends cannot read the pong, but the
	// client is alive: it sent those frames.
	if !c.blocked.Load() {
		sent := time.Now().UnixNano()
		ctx, cancel := context.WithTimeout(c.ctx, c.s.cfg.PingTimeout)
		err := c.ws.Ping(ctx)
		cancel()
		if err != nil && c.lastRead.Load() < sent {
			c.close(reasonPingTimeout)
			return
		}
	}
	c.mu.Lock()
	if !c.done {
		c.pinger.Reset(c.s.cfg.PingInterval)
	}
	c.mu.Unlock()
}
