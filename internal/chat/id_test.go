package chat

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseUserID(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"alice", true},
		{"a", true},
		{"bob_2.x-y", true},
		{strings.Repeat("a", 32), true},
		{"", false},
		{strings.Repeat("a", 33), false},
		{"Alice", false},
		{"al ice", false},
		{"al:ice", false},
		{"élise", false},
		{".", false},
		{"..", false},
		{"-", false},
		{"_._", false},
		{"public", false},
		{"undefined", false},
		{"a.b", true},
		{"7", true},
	} {
		_, err := ParseUserID(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseUserID(%q) error = %v, want ok=%v", tc.in, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrBadUserID) {
			t.Errorf("ParseUserID(%q) error %v is not ErrBadUserID", tc.in, err)
		}
	}
}

func TestParseServerID(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"gw-1", true},
		{"GW_1.eu", true},
		{"", false},
		{"gw 1", false},
		{"gw/1", false},
		{strings.Repeat("x", 201), false},
	} {
		if _, err := ParseServerID(tc.in); (err == nil) != tc.ok {
			t.Errorf("ParseServerID(%q) error = %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
	if got := ServerID("gw-1").Topic(); got != "messages-gw-1" {
		t.Errorf("Topic() = %q", got)
	}
}

func TestConvIDs(t *testing.T) {
	if got := DirectConv("bob", "alice"); got != "dm:alice:bob" {
		t.Fatalf("DirectConv = %q", got)
	}
	for _, tc := range []struct {
		in   string
		kind Kind
		ok   bool
	}{
		{"public", KindPublic, true},
		{"dm:alice:bob", KindDirect, true},
		{"dm:alice:alice", KindDirect, true},
		{"dm:bob:alice", "", false},
		{"dm:alice", "", false},
		{"dm:Alice:bob", "", false},
		{"g:team", KindGroup, true},
		{"g:", "", false},
		{"room", "", false},
		{"", "", false},
	} {
		c, err := ParseConvID(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseConvID(%q) error = %v, want ok=%v", tc.in, err, tc.ok)
			continue
		}
		if tc.ok && c.Kind() != tc.kind {
			t.Errorf("ParseConvID(%q).Kind() = %q, want %q", tc.in, c.Kind(), tc.kind)
		}
	}
	c := DirectConv("alice", "bob")
	if p, ok := c.Peer("alice"); !ok || p != "bob" {
		t.Errorf("Peer(alice) = %q %v", p, ok)
	}
	if _, ok := c.Peer("carol"); ok {
		t.Errorf("Peer(carol) ok for a non-member")
	}
	if _, ok := Public.Peer("alice"); ok {
		t.Errorf("public has no peer")
	}
}

func TestMessageIDsAreUniqueAndTimeSorted(t *testing.T) {
	base := time.UnixMilli(1_700_000_000_000)
	seen := make(map[string]bool)
	prev := ""
	for i := 0; i < 1000; i++ {
		id := NewMessageID(base.Add(time.Duration(i) * time.Millisecond))
		if len(id) != 26 {
			t.Fatalf("len(%q) = %d", id, len(id))
		}
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id] = true
		if id <= prev {
			t.Fatalf("id %q does not sort after %q", id, prev)
		}
		prev = id
	}
}

func TestRecordRoundTrip(t *testing.T) {
	m := &Message{ID: "x", Conv: "dm:a:b", Seq: 3, From: "a", To: "b", Body: "hi", TS: 5, CID: "c1"}
	r, err := DecodeLogRecord((&LogRecord{Type: TypeMessage, Message: m}).Encode())
	if err != nil || *r.Message != *m {
		t.Fatalf("log record round trip: %v %+v", err, r)
	}
	d, err := DecodeDelivery((&Delivery{Type: TypeMessage, To: []UserID{"b"}, SkipSession: "s", Message: m}).Encode())
	if err != nil || *d.Message != *m || d.To[0] != "b" || d.SkipSession != "s" {
		t.Fatalf("delivery round trip: %v %+v", err, d)
	}
	if _, err := DecodeDelivery([]byte(`{"type":"message"}`)); err == nil {
		t.Fatal("a message copy without a message decoded")
	}
	if _, err := DecodeLogRecord([]byte(`{`)); err == nil {
		t.Fatal("bad JSON decoded")
	}
}

func TestAnInvalidIDIsQuotedOnlyInPart(t *testing.T) {
	long := strings.Repeat("x", 100<<10) + "!"
	for name, err := range map[string]error{
		"user": func() error { _, err := ParseUserID(long); return err }(),
		"conv": func() error { _, err := ParseConvID("dm:" + long); return err }(),
	} {
		if err == nil || len(err.Error()) > 200 {
			t.Errorf("%s: error of %d bytes for a %d-byte id: %.80v", name, len(err.Error()), len(long), err)
		}
	}
}

func TestClipNeverCutsACharacter(t *testing.T) {
	if got := Clip("aéb", 2); got != "a…" {
		t.Fatalf("Clip = %q, want %q", got, "a…")
	}
	if got := Clip("abc", 3); got != "abc" {
		t.Fatalf("Clip = %q", got)
	}
}
