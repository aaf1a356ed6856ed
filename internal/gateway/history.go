package gateway

import (
	"context"
	"time"

	"github.com/switchboard-chat/switchboard/internal/protocol"
)

// processHistory answers a history request with one page, newest first:
// from the window while it reaches, then from the log through the seq
// index, down to seq 1 for as long as Kafka retains the messages.
func (s *Server) processHistory(ctx context.Context, c *conn, in *protocol.Inbound) {
	if err := s.access(ctx, c.user, in.Conv); err != nil {
		c.reply(protocol.EncodeError(err))
		return
	}
	if !s.waitRebuilt(ctx, c) {
		return
	}
	start := time.Now()
	p, err := s.history.Before(ctx, in.Conv, in.Before, in.Limit)
	if err != nil {
		s.log.Warn("history failed", "user", c.user, "conv", in.Conv, "err", err)
		c.reply(protocol.EncodeError(&protocol.Error{
			Code: protocol.CodeUnavailable, Message: "history failed, retry: message store unavailable", RetryAfterMS: 1000,
		}))
		return
	}
	s.m.historyPages.Observe(time.Since(start).Seconds())
	c.reply(protocol.EncodeHistory(protocol.History{
		Conv: in.Conv, Before: in.Before, Messages: p.Messages, NextBefore: p.Next, Truncated: p.Truncated,
	}))
}

// waitRebuilt waits (at most SyncWait) while the views are incomplete: a
// rebuild runs, or Redis lost its data and no router has begun restoring
// it yet (the restored marker is missing). Until then a sync or history
// page would answer short. It answers unavailable and reports false when
// the views are still incomplete (or Redis did not answer).
func (s *Server) waitRebuilt(ctx context.Context, c *conn) bool {
	wctx, cancel := context.WithTimeout(ctx, s.cfg.SyncWait)
	defer cancel()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		busy, err := s.store.Rebuilding(wctx)
		if err == nil && !busy {
			var restored bool
			if restored, err = s.table.RestoredSample(wctx); err == nil && restored {
				return true
			}
		}
		select {
		case <-wctx.Done():
			s.m.syncs.WithLabelValues("rebuilding").Inc()
			c.reply(protocol.EncodeError(&protocol.Error{
				Code: protocol.CodeUnavailable, Message: "message history is being rebuilt from the log, retry", RetryAfterMS: 1000,
			}))
			return false
		case <-c.closing:
			return false
		case <-t.C:
		}
	}
}
