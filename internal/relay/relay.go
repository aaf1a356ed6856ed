// Package relay delivers events to users wherever they are connected: it
// looks up the live gateways of the recipients and produces one copy per
// gateway, optionally together with a chat-log record in the same
// acknowledged write. Used for receipts, typing, presence and re-routed
// messages.
package relay

import (
	"context"
	"time"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/kafkabus"
	"github.com/switchboard-chat/switchboard/internal/route"
)

// Relay is safe for concurrent use.
type Relay struct {
	table    *route.Table
	producer *kafkabus.Producer
}

// New returns a Relay that looks recipients up in table and writes with
// producer.
func New(table *route.Table, producer *kafkabus.Producer) *Relay {
	return &Relay{table: table, producer: producer}
}

// Event is what to deliver and to whom.
type Event struct {
	// Delivery is the copy to send; its To is filled in per gateway.
	Delivery chat.Delivery
	// Users are the recipients.
	Users []chat.UserID
	// Group, instead of Users, sends one copy to each gateway with a
	// member of this group connected; the gateway fans it out to its local
	// members.
	Group chat.ConvID
	// All, instead of Users, sends one copy to every live gateway, for
	// every local session (the public room).
	All bool
	// Except leaves out one gateway (the one re-routing a copy it could
	// not deliver).
	Except chat.ServerID
	// Log, when set, is written in the same produce call, so the copies
	// and the log record succeed or fail together.
	Log *kafkabus.Record
}

// Send delivers ev and reports how many gateways got a copy. It returns once
// Kafka acknowledged every record, or with the first error.
func (r *Relay) Send(ctx context.Context, ev Event) (int, error) {
	var recs []kafkabus.Record
	if ev.Log != nil {
		recs = append(recs, *ev.Log)
	}
	gateways := 0
	if ev.Group != "" || ev.All {
		var where []chat.ServerID
		var err error
		d := ev.Delivery
		if ev.All {
			d.All = true
			where, err = r.table.LiveGateways(ctx)
		} else {
			d.Group = ev.Group
			where, err = r.table.GroupGateways(ctx, ev.Group)
		}
		if err != nil {
			return 0, err
		}
		value := d.Encode()
		for _, gw := range where {
			if gw != ev.Except {
				recs = append(recs, kafkabus.Record{Topic: gw.Topic(), Key: []byte(ev.Group), Value: value})
				gateways++
			}
		}
	}
	if len(ev.Users) > 0 {
		where, err := r.table.Locate(ctx, ev.Users)
		if err != nil {
			return 0, err
		}
		for gw, users := range where {
			if gw == ev.Except {
				continue
			}
			d := ev.Delivery
			d.To = users
			recs = append(recs, kafkabus.Record{Topic: gw.Topic(), Key: []byte(users[0]), Value: d.Encode()})
			gateways++
		}
	}
	if len(recs) == 0 {
		return 0, nil
	}
	return gateways, r.producer.Produce(ctx, recs)
}

// Peers names the users who should hear of a user's presence.
type Peers interface {
	Peers(ctx context.Context, u chat.UserID) ([]chat.UserID, error)
}

// Presence tells u's peers that u came online or went offline.
func (r *Relay) Presence(ctx context.Context, peers Peers, u chat.UserID, online bool) error {
	users, err := peers.Peers(ctx, u)
	if err != nil || len(users) == 0 {
		return err
	}
	p := &chat.Presence{User: u, Online: online, TS: time.Now().UnixMilli()}
	_, err = r.Send(ctx, Event{Delivery: chat.Delivery{Type: chat.TypePresence, Presence: p}, Users: users})
	return err
}
