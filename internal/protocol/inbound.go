// Package protocol translates WebSocket frames to and from chat types and
// enforces the wire contract's validation rules and size limits.
package protocol

import (
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/switchboard-chat/switchboard/internal/chat"
)

// Limits of the wire contract.
const (
	MaxBodyBytes  = 4096     // a message body, UTF-8
	MaxFrameBytes = 64 << 10 // one WebSocket frame; larger closes with 1009
	MaxCIDLen     = 64       // a client's send id
	MaxSyncConvs  = 1000     // conversations named in one sync
	MaxPage       = 100      // messages in one history page
	DefaultPage   = 50       // messages in a history page when limit is absent
)

// Client frame types.
const (
	TypeSend    = "send"
	TypeReceipt = "receipt"
	TypeTyping  = "typing"
	TypeSync    = "sync"
	TypePing    = "ping"
	TypeHistory = "history"
)

// Inbound is a decoded, validated client frame. Only the fields of its Type
// are meaningful.
type Inbound struct {
	Type string
	CID  string
	Body string
	// Exactly one of To and Conv is set for send and typing.
	To     chat.UserID
	Conv   chat.ConvID
	Seq    int64
	Status string // receipt: delivered or read
	State  string // typing: start or stop
	Since  map[chat.ConvID]int64
	Only   bool            // sync: only the conversations named in Since
	Before int64           // history: messages below this seq; 0 = the newest
	Limit  int             // history: page size, 1..MaxPage
	T      json.RawMessage // ping: the number, re-encoded
	// Received is when the server read the frame (set by the server, not
	// decoded); request deadlines count from it.
	Received time.Time
	// Auto marks a typing stop made by the gateway when a start timed out
	// (set by the server, never decoded).
	Auto bool
}

type rawInbound struct {
	Type   string           `json:"type"`
	CID    *string          `json:"cid"`
	Body   *string          `json:"body"`
	To     *string          `json:"to"`
	Conv   *string          `json:"conv"`
	Seq    *int64           `json:"seq"`
	Status string           `json:"status"`
	State  string           `json:"state"`
	Since  map[string]int64 `json:"since"`
	Only   bool             `json:"only"`
	T      json.RawMessage  `json:"t"`
	Before *int64           `json:"before"`
	Limit  *int             `json:"limit"`
}

// Decode parses and validates one client frame. A returned error is always
// an *Error carrying the code to answer with and, when known, the cid.
func Decode(data []byte) (*Inbound, error) {
	var raw rawInbound
	// Unmarshal also rejects anything after the first value.
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, Errorf(CodeBadRequest, "malformed JSON: %v", err)
	}
	if err := CheckText(data); err != nil {
		e := Errorf(CodeBadRequest, "%v", err)
		if raw.Type == TypeSend && raw.CID != nil && utf8.ValidString(*raw.CID) && len(*raw.CID) <= MaxCIDLen {
			e.CID = *raw.CID
		}
		return nil, e
	}
	in := &Inbound{Type: raw.Type}
	if raw.CID != nil {
		in.CID = *raw.CID
	}
	var err *Error
	switch raw.Type {
	case TypeSend:
		err = decodeSend(&raw, in)
	case TypeReceipt:
		err = decodeReceipt(&raw, in)
	case TypeTyping:
		err = decodeTyping(&raw, in)
	case TypeSync:
		err = decodeSync(&raw, in)
	case TypePing:
		err = decodePing(&raw, in)
	case TypeHistory:
		err = decodeHistory(&raw, in)
	case "":
		err = Errorf(CodeBadRequest, "missing field type")
	default:
		err = Errorf(CodeBadRequest, "unknown type %q", truncate(raw.Type, 32))
	}
	if err != nil {
		if in.Type == TypeSend && len(in.CID) <= MaxCIDLen {
			err.CID = in.CID
		}
		return nil, err
	}
	return in, nil
}

func decodeSend(raw *rawInbound, in *Inbound) *Error {
	switch {
	case raw.CID == nil || *raw.CID == "":
		return Errorf(CodeBadRequest, "missing field cid")
	case len(*raw.CID) > MaxCIDLen:
		return Errorf(CodeBadRequest, "cid longer than %d characters", MaxCIDLen)
	case raw.Body == nil:
		return Errorf(CodeBadRequest, "missing field body")
	case *raw.Body == "":
		return Errorf(CodeBadRequest, "body is empty")
	case len(*raw.Body) > MaxBodyBytes:
		return Errorf(CodeTooLarge, "body is %d bytes, the limit is %d", len(*raw.Body), MaxBodyBytes)
	case !utf8.ValidString(*raw.Body):
		return Errorf(CodeBadRequest, "body is not valid UTF-8")
	}
	in.Body = *raw.Body
	return decodeTarget(raw, in)
}

// decodeTarget reads exactly one of to and conv.
func decodeTarget(raw *rawInbound, in *Inbound) *Error {
	switch {
	case raw.To != nil && raw.Conv != nil:
		return Errorf(CodeBadRequest, "give either to or conv, not both")
	case raw.To == nil && raw.Conv == nil:
		return Errorf(CodeBadRequest, "missing field to or conv")
	case raw.To != nil:
		u, err := chat.ParseUserID(*raw.To)
		if err != nil {
			return Errorf(CodeBadRequest, "to: %v", err)
		}
		in.To = u
	default:
		c, err := chat.ParseConvID(*raw.Conv)
		if err != nil {
			return Errorf(CodeBadRequest, "conv: %v", err)
		}
		in.Conv = c
	}
	return nil
}

func decodeReceipt(raw *rawInbound, in *Inbound) *Error {
	if raw.Conv == nil {
		return Errorf(CodeBadRequest, "missing field conv")
	}
	c, err := chat.ParseConvID(*raw.Conv)
	if err != nil {
		return Errorf(CodeBadRequest, "conv: %v", err)
	}
	if raw.Seq == nil || *raw.Seq < 1 {
		return Errorf(CodeBadRequest, "seq must be a positive integer")
	}
	if raw.Status != "delivered" && raw.Status != "read" {
		return Errorf(CodeBadRequest, "status must be delivered or read")
	}
	in.Conv, in.Seq, in.Status = c, *raw.Seq, raw.Status
	return nil
}

func decodeTyping(raw *rawInbound, in *Inbound) *Error {
	if raw.State != "start" && raw.State != "stop" {
		return Errorf(CodeBadRequest, "state must be start or stop")
	}
	in.State = raw.State
	return decodeTarget(raw, in)
}

func decodeSync(raw *rawInbound, in *Inbound) *Error {
	if len(raw.Since) > MaxSyncConvs {
		return Errorf(CodeBadRequest, "since names %d conversations, the limit is %d", len(raw.Since), MaxSyncConvs)
	}
	in.Since = make(map[chat.ConvID]int64, len(raw.Since))
	for k, v := range raw.Since {
		c, err := chat.ParseConvID(k)
		if err != nil {
			return Errorf(CodeBadRequest, "since: %v", err)
		}
		if v < 0 {
			return Errorf(CodeBadRequest, "since: %s: seq must not be negative", k)
		}
		in.Since[c] = v
	}
	in.Only = raw.Only
	if in.Only && len(in.Since) == 0 {
		return Errorf(CodeBadRequest, "only needs at least one conversation in since")
	}
	return nil
}

func decodeHistory(raw *rawInbound, in *Inbound) *Error {
	if raw.Conv == nil {
		return Errorf(CodeBadRequest, "missing field conv")
	}
	c, err := chat.ParseConvID(*raw.Conv)
	if err != nil {
		return Errorf(CodeBadRequest, "conv: %v", err)
	}
	in.Conv, in.Limit = c, DefaultPage
	if raw.Before != nil {
		if *raw.Before < 1 {
			return Errorf(CodeBadRequest, "before must be a positive integer")
		}
		in.Before = *raw.Before
	}
	if raw.Limit != nil {
		if *raw.Limit < 1 || *raw.Limit > MaxPage {
			return Errorf(CodeBadRequest, "limit must be from 1 to %d", MaxPage)
		}
		in.Limit = *raw.Limit
	}
	return nil
}

func decodePing(raw *rawInbound, in *Inbound) *Error {
	if len(raw.T) == 0 {
		in.T = json.RawMessage("0")
		return nil
	}
	t, ok := number(raw.T)
	if !ok {
		return Errorf(CodeBadRequest, "t must be an integer within int64 or a finite number")
	}
	in.T = t
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Code is an error code of the wire contract.
type Code string

// Error codes.
const (
	CodeBadRequest   Code = "bad_request"
	CodeUnauthorized Code = "unauthorized"
	CodeForbidden    Code = "forbidden"
	CodeNotFound     Code = "not_found"
	CodeTooLarge     Code = "too_large"
	CodeRateLimited  Code = "rate_limited"
	CodeUnavailable  Code = "unavailable"
	CodeInternal     Code = "internal"
)

// Error is a protocol-level error, answered with an error frame.
type Error struct {
	Code         Code
	Message      string
	CID          string
	RetryAfterMS int64
}

// Errorf returns an *Error with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }
