package protocol

import (
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// ErrBadText means a JSON document holds text that is not Unicode: bytes
// that are not UTF-8, or a \u escape of a lone UTF-16 surrogate. Go's
// encoding/json would silently turn either into U+FFFD.
var ErrBadText = errors.New("text is not valid UTF-8 (or has a lone surrogate escape)")

// CheckText reports ErrBadText when data, a syntactically valid JSON
// document, holds invalid UTF-8 or an escaped lone surrogate ("\ud800").
// Backslashes occur only inside strings in valid JSON, so every escape
// is found without tracking strings. The REST API applies it to every
// body, the frame decoder to every frame.
func CheckText(data []byte) error {
	if !utf8.Valid(data) {
		return ErrBadText
	}
	for i := 0; i < len(data); i++ {
		if data[i] != '\\' {
			continue
		}
		i++
		if i >= len(data) || data[i] != 'u' {
			continue // a one-character escape, or truncated (json reports it)
		}
		r, ok := hex4(data, i+1)
		i += 4
		switch {
		case !ok:
		case utf16.IsSurrogate(r) && r < 0xdc00: // high: a low one must follow
			if i+2 < len(data) && data[i+1] == '\\' && data[i+2] == 'u' {
				if lo, ok := hex4(data, i+3); ok && lo >= 0xdc00 && lo <= 0xdfff {
					i += 6
					continue
				}
			}
			return ErrBadText
		case utf16.IsSurrogate(r): // a low surrogate on its own
			return ErrBadText
		}
	}
	return nil
}

// hex4 parses the four hex digits at data[i:].
func hex4(data []byte, i int) (rune, bool) {
	if i+4 > len(data) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(data[i:i+4]), 16, 16)
	return rune(n), err == nil
}

// number re-encodes a JSON number if it is an integer within int64 or a
// finite float64, so that an echo never carries what the client wrote
// (1e999999, 300 digits) back to it.
func number(raw json.RawMessage) (json.RawMessage, bool) {
	var n json.Number
	if json.Unmarshal(raw, &n) != nil {
		return nil, false
	}
	s := n.String()
	if !strings.ContainsAny(s, ".eE") {
		i, err := strconv.ParseInt(s, 10, 64)
		return json.RawMessage(strconv.AppendInt(nil, i, 10)), err == nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return nil, false
	}
	return json.RawMessage(strconv.AppendFloat(nil, f, 'g', -1, 64)), true
}
