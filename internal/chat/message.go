package chat

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"time"
)

// Message is one accepted chat message, as logged to chat-log and delivered
// to recipients.
type Message struct {
	ID      string `json:"id"`
	Conv    ConvID `json:"conv"`
	Seq     int64  `json:"seq"`
	From    UserID `json:"from"`
	To      UserID `json:"to,omitempty"` // direct messages only
	Body    string `json:"body"`
	TS      int64  `json:"ts"` // server time, Unix milliseconds
	CID     string `json:"cid,omitempty"`
	Deleted bool   `json:"deleted,omitempty"`
}

// Record types, carried in the "type" field of every Kafka value.
const (
	TypeMessage  = "message"  // chat-log and deliveries
	TypeReceipt  = "receipt"  // chat-log and deliveries
	TypeDelete   = "delete"   // chat-log
	TypeTyping   = "typing"   // deliveries only, never logged
	TypePresence = "presence" // deliveries only, never logged
	// TypeMembership is a group membership change, deliveries only.
	TypeMembership = "membership"
)

// Receipt is a member's cumulative mark in a conversation: everything up to
// Seq is delivered (or read, which implies delivered).
type Receipt struct {
	Conv   ConvID `json:"conv"`
	User   UserID `json:"user"`
	Seq    int64  `json:"seq"`
	Status string `json:"status"` // delivered or read
	TS     int64  `json:"ts"`
}

// Delete removes a message's body; the message keeps its id and seq.
type Delete struct {
	ID   string `json:"id"`
	Conv ConvID `json:"conv"`
	By   UserID `json:"by"`
	TS   int64  `json:"ts"`
}

// Typing says a user started or stopped typing in a conversation.
type Typing struct {
	Conv  ConvID `json:"conv"`
	User  UserID `json:"user"`
	State string `json:"state"` // start or stop
}

// Presence says a user came online (first session) or went offline (last
// session gone).
type Presence struct {
	User   UserID `json:"user"`
	Online bool   `json:"online"`
	TS     int64  `json:"ts"`
}

// LogRecord is a chat-log value. Its key is the conversation id.
type LogRecord struct {
	Type    string   `json:"type"`
	Message *Message `json:"message,omitempty"`
	Receipt *Receipt `json:"receipt,omitempty"`
	Delete  *Delete  `json:"delete,omitempty"`
}

// Delivery is a value on a gateway topic messages-<SERVER_ID>: one copy of
// an event for the recipients connected to that gateway. Its key is the
// recipient (or the conversation, for public copies).
type Delivery struct {
	Type string `json:"type"`
	// All asks for every local session (public room).
	All bool `json:"all,omitempty"`
	// To lists the recipients on the consuming gateway when All is false.
	To []UserID `json:"to,omitempty"`
	// Group asks for every local session of a member of the group named
	// by the event's conversation (group fan-out: one copy per gateway).
	Group ConvID `json:"group,omitempty"`
	// SkipSession is the sending session, which got "sent" instead.
	SkipSession string `json:"skip,omitempty"`
	// Hops counts how often this copy was re-routed after its recipient
	// moved; a copy is forwarded at most once.
	Hops     int       `json:"hops,omitempty"`
	Message  *Message  `json:"message,omitempty"`
	Receipt  *Receipt  `json:"receipt,omitempty"`
	Typing   *Typing   `json:"typing,omitempty"`
	Presence *Presence `json:"presence,omitempty"`
	// Membership is set on TypeMembership copies.
	Membership *Membership `json:"membership,omitempty"`
}

// Encode returns the JSON encoding of r.
func (r *LogRecord) Encode() []byte { return mustJSON(r) }

// Encode returns the JSON encoding of d.
func (d *Delivery) Encode() []byte { return mustJSON(d) }

// DecodeLogRecord parses a chat-log value.
func DecodeLogRecord(b []byte) (*LogRecord, error) {
	var r LogRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode log record: %w", err)
	}
	if r.Type == TypeMessage && r.Message == nil || r.Type == TypeReceipt && r.Receipt == nil || r.Type == TypeDelete && r.Delete == nil {
		return nil, fmt.Errorf("decode log record: %s record without its body", r.Type)
	}
	return &r, nil
}

// DecodeDelivery parses a gateway-topic value.
func DecodeDelivery(b []byte) (*Delivery, error) {
	var d Delivery
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("decode delivery: %w", err)
	}
	if d.Type == TypeMessage && d.Message == nil || d.Type == TypeReceipt && d.Receipt == nil ||
		d.Type == TypeTyping && d.Typing == nil || d.Type == TypePresence && d.Presence == nil ||
		d.Type == TypeMembership && d.Membership == nil {
		return nil, fmt.Errorf("decode delivery: %s copy without its body", d.Type)
	}
	return &d, nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only plain structs of strings and numbers are encoded here.
		panic(fmt.Sprintf("chat: encode %T: %v", v, err))
	}
	return b
}

// crockford is the Crockford base-32 alphabet: sortable, no I L O U.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// NewMessageID returns a unique, time-sortable message id for time t: 10
// characters of millisecond timestamp and 16 of randomness (80 bits), in
// Crockford base 32. Ids made in the same millisecond sort arbitrarily.
func NewMessageID(t time.Time) string {
	var b [26]byte
	ms := uint64(t.UnixMilli())
	for i := 9; i >= 0; i-- {
		b[i] = crockford[ms&31]
		ms >>= 5
	}
	var r [10]byte
	_, _ = rand.Read(r[:]) // never fails (crypto/rand panics internally instead)
	// 80 bits → 16 characters of 5 bits.
	var acc uint64
	bits, j := 0, 10
	for _, x := range r {
		acc = acc<<8 | uint64(x)
		bits += 8
		for bits >= 5 {
			bits -= 5
			b[j] = crockford[(acc>>uint(bits))&31]
			j++
		}
	}
	return string(b[:])
}

// Membership tells a gateway that its local sessions of the delivery's
// users joined (Member true) or left a group, so it updates its
// membership index before the group's next message.
type Membership struct {
	Conv   ConvID `json:"conv"`
	Member bool   `json:"member"`
}
