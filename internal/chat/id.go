// Package chat holds Switchboard's domain types — users, conversations,
// servers, messages and deliveries — and their encoding on Kafka.
package chat

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// UserID is a user name: 1–32 characters of a-z, 0-9, '_', '-', '.'.
type UserID string

// ConvID names a conversation: "public", "dm:<a>:<b>" with a < b, or "g:<id>".
type ConvID string

// ServerID is a gateway's SERVER_ID. It is part of the gateway's Kafka topic
// name, so it is restricted to Kafka's topic alphabet.
type ServerID string

// Public is the conversation every user belongs to.
const Public ConvID = "public"

// MaxUserIDLen is the longest valid user id.
const MaxUserIDLen = 32

// MaxServerIDLen is the longest valid SERVER_ID: Kafka topic names are at
// most 249 characters and the gateway topic adds a prefix.
const MaxServerIDLen = 200

// Errors returned by the parsers.
var (
	ErrBadUserID   = errors.New("invalid user id")
	ErrBadConvID   = errors.New("invalid conversation id")
	ErrBadServerID = errors.New("invalid server id")
)

// ParseUserID validates s as a user id. It does not lower-case: an upper-case
// letter makes the id invalid, so one user never has two spellings. Names
// without a letter or digit (".", "..", "-", "_._") and the reserved words
// in reservedUserIDs are refused: they read as paths, flags or
// conversation names. An invalid s is quoted in the error only up to
// MaxUserIDLen bytes, so an error answer never echoes a huge input.
func ParseUserID(s string) (UserID, error) {
	if err := checkName(s, MaxUserIDLen); err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadUserID, err)
	}
	if reservedUserIDs[s] || strings.IndexFunc(s, isAlnum) < 0 {
		return "", fmt.Errorf("%w: %q is reserved", ErrBadUserID, s)
	}
	return UserID(s), nil
}

// reservedUserIDs are valid-looking names that no user may have.
var reservedUserIDs = map[string]bool{
	"public": true, "system": true, "admin": true, "root": true, "null": true, "undefined": true,
}

func isAlnum(r rune) bool { return r >= 'a' && r <= 'z' || r >= '0' && r <= '9' }

// checkName checks s against the user-id alphabet and 1..maxLen bytes.
func checkName(s string, maxLen int) error {
	if len(s) == 0 || len(s) > maxLen {
		return fmt.Errorf("%q must be 1-%d characters", Clip(s, maxLen), maxLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return fmt.Errorf("%q may contain only a-z, 0-9 and _ - . (lowercase)", Clip(s, maxLen))
		}
	}
	return nil
}

// Clip returns s cut to at most n bytes (never inside a UTF-8 sequence),
// with "…" appended when it was cut: for quoting client input in errors
// and logs.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// ParseServerID validates s as a SERVER_ID: 1–200 characters of a-z, A-Z,
// 0-9, '.', '_', '-', and not "." or "..".
func ParseServerID(s string) (ServerID, error) {
	if len(s) == 0 || len(s) > MaxServerIDLen {
		return "", fmt.Errorf("%w: %q must be 1-%d characters", ErrBadServerID, Clip(s, MaxServerIDLen), MaxServerIDLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return "", fmt.Errorf("%w: %q cannot be part of a Kafka topic name (allowed: a-z A-Z 0-9 . _ -)", ErrBadServerID, s)
		}
	}
	return ServerID(s), nil
}

// DirectConv returns the direct conversation between a and b.
func DirectConv(a, b UserID) ConvID {
	if b < a {
		a, b = b, a
	}
	return ConvID("dm:" + string(a) + ":" + string(b))
}

// Kind is the kind of a conversation.
type Kind string

// Conversation kinds.
const (
	KindPublic Kind = "public"
	KindDirect Kind = "direct"
	KindGroup  Kind = "group"
)

// maxConvQuote is the most of an invalid conversation id an error quotes.
const maxConvQuote = 3 + 2*MaxUserIDLen + 1

// ParseConvID validates s as a conversation id. A direct id must name two
// valid users in order (a <= b); a group id is "g:" and 1–64 characters of
// the user-id alphabet.
func ParseConvID(s string) (ConvID, error) {
	switch {
	case s == string(Public):
		return Public, nil
	case strings.HasPrefix(s, "dm:"):
		a, b, ok := strings.Cut(s[3:], ":")
		if !ok {
			return "", fmt.Errorf("%w: %q: want dm:<a>:<b>", ErrBadConvID, Clip(s, maxConvQuote))
		}
		ua, errA := ParseUserID(a)
		ub, errB := ParseUserID(b)
		if errA != nil || errB != nil || ub < ua {
			return "", fmt.Errorf("%w: %q: want dm:<a>:<b> with valid user ids and a <= b", ErrBadConvID, Clip(s, maxConvQuote))
		}
		return ConvID(s), nil
	case strings.HasPrefix(s, "g:"):
		if err := checkName(s[2:], 64); err != nil {
			return "", fmt.Errorf("%w: %q: want g:<id>, the id 1-64 characters of a-z, 0-9 and _ - . (lowercase)", ErrBadConvID, Clip(s, maxConvQuote))
		}
		return ConvID(s), nil
	}
	return "", fmt.Errorf("%w: %q: want public, dm:<a>:<b> or g:<id>", ErrBadConvID, Clip(s, maxConvQuote))
}

// Kind reports the kind of c, which must be valid.
func (c ConvID) Kind() Kind {
	switch {
	case c == Public:
		return KindPublic
	case strings.HasPrefix(string(c), "dm:"):
		return KindDirect
	default:
		return KindGroup
	}
}

// Members returns the two members of a direct conversation; ok is false for
// other kinds.
func (c ConvID) Members() (a, b UserID, ok bool) {
	if c.Kind() != KindDirect {
		return "", "", false
	}
	x, y, _ := strings.Cut(string(c)[3:], ":")
	return UserID(x), UserID(y), true
}

// Peer returns the other member of direct conversation c as seen by u; ok is
// false when c is not direct or u is not a member.
func (c ConvID) Peer(u UserID) (UserID, bool) {
	a, b, ok := c.Members()
	switch {
	case !ok:
		return "", false
	case a == u:
		return b, true
	case b == u:
		return a, true
	}
	return "", false
}

// Topic returns the Kafka topic that gateway s consumes.
func (s ServerID) Topic() string { return "messages-" + string(s) }
