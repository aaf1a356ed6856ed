package gateway

import (
	"context"
	"time"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/kafkabus"
	"github.com/switchboard-chat/switchboard/internal/protocol"
)

// deliver fans one consumed copy out to the local sessions of its
// recipients. It never blocks on a connection: every enqueue is
// non-blocking, so one slow client cannot delay the others.
// It never fails: a copy that cannot be delivered is counted and skipped.
func (s *Server) deliver(_ context.Context, rec kafkabus.Record) error {
	s.m.consumed.Inc()
	d, err := chat.DecodeDelivery(rec.Value)
	if err != nil {
		s.m.drops.WithLabelValues("undecodable").Inc()
		s.log.Warn("undecodable record", "offset", rec.Offset, "err", err)
		return nil
	}
	if d.Type != chat.TypeMessage {
		s.m.drops.WithLabelValues("unknown_type").Inc()
		return nil
	}
	frame := protocol.EncodeMessage(d.Message)
	if d.All {
		s.hub.broadcast(frame, d.SkipSession, essential)
	} else {
		for _, u := range d.To {
			if s.hub.sendTo(u, frame, d.SkipSession, essential) == 0 {
				// The user left this gateway after the sender looked it up;
				// its next sync returns the message.
				s.m.drops.WithLabelValues("not_connected").Inc()
			}
		}
	}
	s.m.deliverLatency.Observe(time.Since(time.UnixMilli(d.Message.TS)).Seconds())
	return nil
}
