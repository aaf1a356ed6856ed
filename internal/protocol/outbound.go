package protocol

import (
	"encoding/json"
	"fmt"

	"github.com/switchboard-chat/switchboard/internal/chat"
)

// Hello is the first server frame of a connection.
type Hello struct {
	User        chat.UserID   `json:"user"`
	Server      chat.ServerID `json:"server"`
	Session     string        `json:"session"`
	HeartbeatMS int64         `json:"heartbeat_ms"`
}

// Sent acknowledges a send once Kafka has it.
type Sent struct {
	CID  string      `json:"cid"`
	ID   string      `json:"id"`
	Conv chat.ConvID `json:"conv"`
	Seq  int64       `json:"seq"`
	TS   int64       `json:"ts"`
}

// Reconnect tells a client to reconnect after a delay.
type Reconnect struct {
	AfterMS int64  `json:"after_ms"`
	Reason  string `json:"reason"`
}

// Synced ends a sync.
type Synced struct {
	Convs map[chat.ConvID]int64 `json:"convs"`
	// Truncated names the conversations whose missed messages reach back
	// beyond the sync window: those up to the given seq were not sent.
	Truncated map[chat.ConvID]int64 `json:"truncated,omitempty"`
}

// History answers a history request: one page, newest first.
type History struct {
	Conv chat.ConvID `json:"conv"`
	// Before echoes the request's before (absent for the newest page).
	Before   int64           `json:"before,omitempty"`
	Messages []*chat.Message `json:"messages"`
	// NextBefore is the before of the next older page; absent at the
	// start of the conversation.
	NextBefore int64 `json:"next_before,omitempty"`
	// Truncated is the highest seq of this page's range that the log no
	// longer retains: nothing older can be read.
	Truncated int64 `json:"truncated,omitempty"`
}

// EncodeHistory encodes a history frame.
func EncodeHistory(h History) []byte {
	if h.Messages == nil {
		h.Messages = []*chat.Message{}
	}
	return encode("history", &h)
}

// EncodeHello encodes a hello frame.
func EncodeHello(h Hello) []byte { return encode("hello", &h) }

// EncodeSent encodes a sent frame.
func EncodeSent(s Sent) []byte { return encode("sent", &s) }

// EncodeMessage encodes a message frame.
func EncodeMessage(m *chat.Message) []byte { return encode("message", m) }

// EncodeSyncMessage encodes a message frame sent by a sync, tagged with the
// number (from 1) of the batch it belongs to.
func EncodeSyncMessage(m *chat.Message, batch int) []byte {
	return encode("message", &struct {
		*chat.Message
		Batch int `json:"batch"`
	}{m, batch})
}

// EncodeReceipt encodes a receipt frame.
func EncodeReceipt(r *chat.Receipt) []byte { return encode("receipt", r) }

// EncodeTyping encodes a typing frame.
func EncodeTyping(t *chat.Typing) []byte { return encode("typing", t) }

// EncodePresence encodes a presence frame.
func EncodePresence(p *chat.Presence) []byte { return encode("presence", p) }

// EncodeReconnect encodes a reconnect frame.
func EncodeReconnect(r Reconnect) []byte { return encode("reconnect", &r) }

// EncodeSynced encodes a synced frame.
func EncodeSynced(s Synced) []byte {
	if s.Convs == nil {
		s.Convs = map[chat.ConvID]int64{}
	}
	return encode("synced", &s)
}

// EncodePong encodes a pong frame echoing t.
func EncodePong(t json.RawMessage) []byte {
	return encode("pong", &struct {
		T json.RawMessage `json:"t"`
	}{t})
}

// EncodeError encodes an error frame.
func EncodeError(e *Error) []byte {
	return encode("error", &struct {
		Code         Code   `json:"code"`
		Message      string `json:"message"`
		CID          string `json:"cid,omitempty"`
		RetryAfterMS int64  `json:"retry_after_ms,omitempty"`
	}{e.Code, e.Message, e.CID, e.RetryAfterMS})
}

// encode writes {"type":typ, ...fields of v}. v must be a pointer to a
// struct that encodes as a JSON object.
func encode(typ string, v any) []byte {
	body, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("protocol: encode %s: %v", typ, err))
	}
	out := make([]byte, 0, len(body)+len(typ)+11)
	out = append(out, `{"type":"`...)
	out = append(out, typ...)
	out = append(out, '"')
	if len(body) > 2 {
		out = append(out, ',')
	}
	return append(out, body[1:]...)
}
