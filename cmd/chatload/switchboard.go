package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// switchboard speaks the Switchboard protocol (docs/PROTOCOL.md). Sends
// carry cid "<run>.<idx>", which comes back on sent, error and message.
type switchboard struct {
	o   *options
	run string // this run's cid prefix
}

func (t *switchboard) endpoints() int { return len(t.o.gateways) }

func (t *switchboard) url(ctx context.Context, gw int, user string) (string, error) {
	path, err := wsPath(ctx, *t.o, gw, user)
	if err != nil {
		return "", err
	}
	return t.o.gateways[gw] + path, nil
}

func (t *switchboard) handshake(ctx context.Context, s *session) error {
	b, err := s.readRaw(ctx)
	if err != nil {
		return err
	}
	if typ := stringField(b, "type"); typ != "hello" {
		return fmt.Errorf("first frame %s, want hello", b)
	}
	return nil
}

func (t *switchboard) cid(idx int) string { return t.run + "." + strconv.Itoa(idx) }

// idx parses a cid of this run, -1 for any other.
func (t *switchboard) idx(cid string) int {
	if len(cid) <= len(t.run)+1 || cid[:len(t.run)] != t.run || cid[len(t.run)] != '.' {
		return -1
	}
	i, err := strconv.Atoi(cid[len(t.run)+1:])
	if err != nil {
		return -1
	}
	return i
}

func (t *switchboard) dm(idx int, _, to string) []byte {
	return fmt.Appendf(nil, `{"type":"send","cid":%q,"to":%q,"body":"load %d"}`, t.cid(idx), to, idx)
}

func (t *switchboard) public(idx int, _ string) []byte {
	return fmt.Appendf(nil, `{"type":"send","cid":%q,"conv":"public","body":"load %d"}`, t.cid(idx), idx)
}

func (t *switchboard) pong([]byte) []byte { return nil }

// decode reads the fields it needs straight from the bytes for the
// frequent frames (message, sent) and decodes the rest fully.
func (t *switchboard) decode(b []byte, emit func(event)) {
	switch stringField(b, "type") {
	case "message":
		emit(event{kind: evDeliver, idx: t.idx(stringField(b, "cid")), conv: stringField(b, "conv"),
			seq: intField(b, "seq"), id: stringField(b, "id"), batch: intField(b, "batch") > 0})
	case "sent":
		emit(event{kind: evAck, idx: t.idx(stringField(b, "cid")), id: stringField(b, "id"), conv: stringField(b, "conv"), seq: intField(b, "seq")})
	case "error":
		var f struct {
			Code, CID    string
			RetryAfterMS int64 `json:"retry_after_ms"`
		}
		_ = json.Unmarshal(b, &f)
		emit(event{kind: evError, idx: t.idx(f.CID), code: f.Code, retryAfter: time.Duration(f.RetryAfterMS) * time.Millisecond})
	case "synced":
		var f struct{ Convs map[string]int64 }
		_ = json.Unmarshal(b, &f)
		emit(event{kind: evSynced, idx: -1, synced: f.Convs})
	case "reconnect":
		emit(event{kind: evReconnect, idx: -1})
	default:
		emit(event{kind: evOther, idx: -1})
	}
}

// stringField returns the value of the first "name":"…" in a JSON object
// written by the server (whose strings escape every quote, so the pattern
// cannot occur inside a value), unescaped only when it needs to be.
func stringField(b []byte, name string) string {
	key := make([]byte, 0, len(name)+4)
	key = append(append(append(key, '"'), name...), `":"`...)
	i := bytes.Index(b, key)
	if i < 0 {
		return ""
	}
	rest := b[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	if bytes.IndexByte(rest[:j], '\\') >= 0 { // escaped: decode the whole frame
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		s, _ := m[name].(string)
		return s
	}
	return string(rest[:j])
}

// intField returns the integer value of the first "name":123.
func intField(b []byte, name string) int64 {
	key := make([]byte, 0, len(name)+3)
	key = append(append(append(key, '"'), name...), `":`...)
	i := bytes.Index(b, key)
	if i < 0 {
		return 0
	}
	var n int64
	for _, c := range b[i+len(key):] {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int64(c-'0')
	}
	return n
}
