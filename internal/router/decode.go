package router

import (
	"unicode/utf8"

	"github.com/switchboard-chat/switchboard/internal/chat"
)

// decodeLogRecord decodes a chat-log value as chat.DecodeLogRecord does.
// A rebuild decodes every record of the log, and encoding/json costs more
// than the rest of the rebuild together, so the flat shape the gateways
// write (objects of strings without escapes, integers and booleans) is
// parsed by hand; anything else falls back to encoding/json.
func decodeLogRecord(b []byte) (*chat.LogRecord, error) {
	if lr, ok := fastLogRecord(b); ok {
		return lr, nil
	}
	return chat.DecodeLogRecord(b)
}

func fastLogRecord(b []byte) (*chat.LogRecord, bool) {
	d := scanner{b: b}
	lr := &chat.LogRecord{}
	ok := d.object(func(key string) (ok bool) {
		switch key {
		case "type":
			lr.Type, ok = d.str()
			return ok
		case "message":
			lr.Message = &chat.Message{}
			return d.message(lr.Message)
		case "receipt":
			lr.Receipt = &chat.Receipt{}
			return d.receipt(lr.Receipt)
		case "delete":
			lr.Delete = &chat.Delete{}
			return d.delete(lr.Delete)
		}
		return false
	})
	if !ok || !d.end() {
		return nil, false
	}
	// The same checks as chat.DecodeLogRecord: let it report them.
	if lr.Type == chat.TypeMessage && lr.Message == nil || lr.Type == chat.TypeReceipt && lr.Receipt == nil || lr.Type == chat.TypeDelete && lr.Delete == nil {
		return nil, false
	}
	return lr, true
}

func (d *scanner) message(m *chat.Message) bool {
	return d.object(func(key string) (ok bool) {
		switch key {
		case "id":
			m.ID, ok = d.str()
		case "conv":
			var s string
			s, ok = d.str()
			m.Conv = chat.ConvID(s)
		case "seq":
			m.Seq, ok = d.int()
		case "from":
			var s string
			s, ok = d.str()
			m.From = chat.UserID(s)
		case "to":
			var s string
			s, ok = d.str()
			m.To = chat.UserID(s)
		case "body":
			m.Body, ok = d.str()
		case "ts":
			m.TS, ok = d.int()
		case "cid":
			m.CID, ok = d.str()
		case "deleted":
			m.Deleted, ok = d.bool()
		}
		return ok
	})
}

func (d *scanner) receipt(r *chat.Receipt) bool {
	return d.object(func(key string) (ok bool) {
		var s string
		switch key {
		case "conv":
			s, ok = d.str()
			r.Conv = chat.ConvID(s)
		case "user":
			s, ok = d.str()
			r.User = chat.UserID(s)
		case "seq":
			r.Seq, ok = d.int()
		case "status":
			r.Status, ok = d.str()
		case "ts":
			r.TS, ok = d.int()
		}
		return ok
	})
}

func (d *scanner) delete(x *chat.Delete) bool {
	return d.object(func(key string) (ok bool) {
		var s string
		switch key {
		case "id":
			x.ID, ok = d.str()
		case "conv":
			s, ok = d.str()
			x.Conv = chat.ConvID(s)
		case "by":
			s, ok = d.str()
			x.By = chat.UserID(s)
		case "ts":
			x.TS, ok = d.int()
		}
		return ok
	})
}

// scanner parses the subset of JSON that fastLogRecord accepts. Every
// method reports false on anything outside it.
type scanner struct {
	b []byte
	i int
}

func (d *scanner) skipSpace() {
	for d.i < len(d.b) && (d.b[d.i] == ' ' || d.b[d.i] == '\n' || d.b[d.i] == '\t' || d.b[d.i] == '\r') {
		d.i++
	}
}

func (d *scanner) next(c byte) bool {
	d.skipSpace()
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

func (d *scanner) end() bool {
	d.skipSpace()
	return d.i == len(d.b)
}

// object parses {"key": value, ...}, calling field for each key to parse
// its value; an unknown key (field returns false) ends the fast path.
// Duplicate keys, and more than 16, are left to encoding/json.
func (d *scanner) object(field func(key string) bool) bool {
	if !d.next('{') {
		return false
	}
	if d.next('}') {
		return true
	}
	var seen [16]string
	for n := 0; ; n++ {
		key, ok := d.str()
		if !ok || n == len(seen) || !d.next(':') {
			return false
		}
		for _, k := range seen[:n] {
			if k == key {
				return false
			}
		}
		seen[n] = key
		if !field(key) {
			return false
		}
		if d.next('}') {
			return true
		}
		if !d.next(',') {
			return false
		}
	}
}

// str parses a string without escapes, of valid UTF-8 and no control
// characters.
func (d *scanner) str() (string, bool) {
	if !d.next('"') {
		return "", false
	}
	start := d.i
	for ; d.i < len(d.b); d.i++ {
		c := d.b[d.i]
		switch {
		case c == '"':
			s := d.b[start:d.i]
			d.i++
			if !utf8.Valid(s) {
				return "", false
			}
			return string(s), true
		case c == '\\' || c < 0x20:
			return "", false
		}
	}
	return "", false
}

// int parses an integer of at most 18 digits (no fraction or exponent).
func (d *scanner) int() (int64, bool) {
	d.skipSpace()
	neg := d.i < len(d.b) && d.b[d.i] == '-'
	if neg {
		d.i++
	}
	start := d.i
	var n int64
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' && d.i-start < 18 {
		n = n*10 + int64(d.b[d.i]-'0')
		d.i++
	}
	digits := d.i - start
	if digits == 0 || digits > 1 && d.b[start] == '0' || d.i < len(d.b) && (d.b[d.i] == '.' || d.b[d.i] == 'e' || d.b[d.i] == 'E' || d.b[d.i] >= '0' && d.b[d.i] <= '9') {
		return 0, false
	}
	if neg {
		n = -n
	}
	return n, true
}

func (d *scanner) bool() (bool, bool) {
	d.skipSpace()
	switch {
	case len(d.b)-d.i >= 4 && string(d.b[d.i:d.i+4]) == "true":
		d.i += 4
		return true, true
	case len(d.b)-d.i >= 5 && string(d.b[d.i:d.i+5]) == "false":
		d.i += 5
		return false, true
	}
	return false, false
}
