package gateway

import (
	"context"
	"time"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/kafkabus"
	"github.com/switchboard-chat/switchboard/internal/protocol"
	"github.com/switchboard-chat/switchboard/internal/relay"
)

// forwardQueue bounds the copies waiting to be re-routed; past it they are
// dropped (counted), and their recipients get them from sync.
const forwardQueue = 1024

// forward is a copy for a user no longer connected here.
type forward struct {
	user chat.UserID
	d    *chat.Delivery
}

// deliver fans one consumed copy out to the local sessions of its
// recipients. It never blocks on a connection (every enqueue is
// non-blocking), so one slow client cannot delay the others, and it never
// fails: what cannot be delivered is counted and skipped, or handed to the
// forwarder.
func (s *Server) deliver(ctx context.Context, rec kafkabus.Record) error {
	s.m.consumed.Inc()
	d, err := chat.DecodeDelivery(rec.Value)
	if err != nil {
		s.m.drops.WithLabelValues("undecodable").Inc()
		s.log.Warn("undecodable record", "offset", rec.Offset, "err", err)
		return nil
	}
	var frame []byte
	kind := essential
	switch d.Type {
	case chat.TypeMessage:
		frame = protocol.EncodeMessage(d.Message)
		defer func() { s.m.deliverLatency.Observe(time.Since(time.UnixMilli(d.Message.TS)).Seconds()) }()
	case chat.TypeReceipt:
		frame = protocol.EncodeReceipt(d.Receipt)
	case chat.TypeTyping:
		frame, kind = protocol.EncodeTyping(d.Typing), ephemeral
	case chat.TypePresence:
		frame, kind = protocol.EncodePresence(d.Presence), ephemeral
	case chat.TypeMembership:
		s.applyMembership(ctx, d)
		return nil
	default:
		s.m.drops.WithLabelValues("unknown_type").Inc()
		return nil
	}
	if d.All {
		s.hub.broadcast(frame, d.SkipSession, kind)
		return nil
	}
	if d.Group != "" {
		if s.groups.fanOut(s.hub, d.Group, frame, d.SkipSession, kind) == 0 {
			s.m.drops.WithLabelValues("no_local_members").Inc()
		}
		return nil
	}
	for _, u := range d.To {
		if s.hub.sendTo(u, frame, d.SkipSession, kind) > 0 {
			continue
		}
		// The user left this gateway after the sender looked it up.
		switch {
		case kind == ephemeral:
			s.m.drops.WithLabelValues("not_connected").Inc()
		case d.Hops > 0:
			s.m.drops.WithLabelValues("forwarded_not_connected").Inc() // never a second hop
		default:
			select {
			case s.forwards <- forward{user: u, d: d}:
			default:
				s.m.drops.WithLabelValues("forward_queue_full").Inc()
			}
		}
	}
	return nil
}

// forwardLoop re-routes copies whose recipient moved: it looks the user up
// again and sends the copy, once, to the gateways the user is on now (not
// this one). If the user is offline the copy is dropped: sync returns it.
func (s *Server) forwardLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case f := <-s.forwards:
			d := *f.d
			d.Hops++
			d.All = false
			fctx, cancel := context.WithTimeout(ctx, s.cfg.ProduceTimeout)
			n, err := s.relay.Send(fctx, relay.Event{Delivery: d, Users: []chat.UserID{f.user}, Except: s.cfg.ServerID})
			cancel()
			switch {
			case err != nil:
				s.m.drops.WithLabelValues("forward_failed").Inc()
				s.log.Warn("forward failed", "user", f.user, "err", err)
			case n == 0:
				s.m.drops.WithLabelValues("offline").Inc()
			default:
				s.m.forwarded.Inc()
			}
		}
	}
}
