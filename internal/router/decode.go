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
	ok := d.object(func(key string) bool {
		switch key {
		case "type":
			return strInto(&d, &lr.Type)
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
	return d.object(func(key string) bool {
		switch key {
		case "id":
			return strInto(d, &m.ID)
		case "conv":
			return strInto(d, &m.Conv)
		case "seq":
			return d.intInto(&m.Seq)
		case "from":
			return strInto(d, &m.From)
		case "to":
			return strInto(d, &m.To)
		case "body":
			return strInto(d, &m.Body)
		case "ts":
			return d.intInto(&m.TS)
		case "cid":
			return strInto(d, &m.CID)
		case "deleted":
			var ok bool
			m.Deleted, ok = d.bool()
			return ok
		}
		return false
	})
}

func (d *scanner) receipt(r *chat.Receipt) bool {
	return d.object(func(key string) bool {
		switch key {
		case "conv":
			return strInto(d, &r.Conv)
		case "user":
			return strInto(d, &r.User)
		case "seq":
			return d.intInto(&r.Seq)
		case "status":
			return strInto(d, &r.Status)
		case "ts":
			return d.intInto(&r.TS)
		}
		return false
	})
}

func (d *scanner) delete(x *chat.Delete) bool {
	return d.object(func(key string) bool {
		switch key {
		case "id":
			return strInto(d, &x.ID)
		case "conv":
			return strInto(d, &x.Conv)
		case "by":
			return strInto(d, &x.By)
		case "ts":
			return d.intInto(&x.TS)
		}
		return false
	})
}

// strInto parses a string into dst.
func strInto[T ~string](d *scanner, dst *T) bool {
	s, ok := d.str()
	*dst = T(s)
	return ok
}

// intInto parses an integer into dst.
func (d *scanner) intInto(dst *int64) bool {
	n, ok := d.int()
	*dst = n
	return ok
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
