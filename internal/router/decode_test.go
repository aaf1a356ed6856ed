package router

import (
	"reflect"
	"testing"

	"github.com/switchboard-chat/switchboard/internal/chat"
)

var decodeSeeds = []string{
	`{"type":"message","message":{"id":"01J","conv":"dm:a:b","seq":7,"from":"a","to":"b","body":"hi","ts":1700000000000,"cid":"c1"}}`,
	`{"type":"message","message":{"id":"01J","conv":"public","seq":1,"from":"a","body":"","ts":1}}`,
	`{"type":"receipt","receipt":{"conv":"dm:a:b","user":"b","seq":3,"status":"read","ts":5}}`,
	`{"type":"delete","delete":{"id":"01J","conv":"dm:a:b","by":"a","ts":9}}`,
	` { "type" : "message" , "message" : { "id" : "x" , "seq" : -3, "deleted": true } } `,
	`{"type":"message","message":{"id":"x","body":"caf\u00e9 \"q\""}}`,
	`{"type":"message","message":{"id":"x","body":"ünïcødé ✓"}}`,
	`{"type":"message","message":{"id":"x","Body":"case"}}`,
	`{"type":"message","message":{"id":"x","seq":1.5}}`,
	`{"type":"message","message":{"id":"x","seq":01}}`,
	`{"type":"message","message":{"id":"x","seq":12345678901234567890}}`,
	`{"type":"message","message":null}`,
	`{"type":"message"}`,
	`{"type":"message","message":{"id":"a"},"message":{"seq":2}}`,
	`{"type":"typing","extra":[1,2]}`,
	`{"type":"message","message":{"id":"x"}} trailing`,
	`not json`,
	``,
}

// The fast decoder agrees with chat.DecodeLogRecord on everything.
func TestDecodeLogRecordAgreesWithTheDomainDecoder(t *testing.T) {
	for _, s := range decodeSeeds {
		checkDecode(t, []byte(s))
	}
}

func FuzzDecodeLogRecord(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(checkDecode)
}

func checkDecode(t *testing.T, b []byte) {
	want, werr := chat.DecodeLogRecord(b)
	got, gerr := decodeLogRecord(b)
	if (werr == nil) != (gerr == nil) || !reflect.DeepEqual(want, got) {
		t.Fatalf("%q: decoded %+v (%v), want %+v (%v)", b, got, gerr, want, werr)
	}
	if _, fast := fastLogRecord(b); fast && werr != nil {
		t.Fatalf("%q: the fast path accepted what encoding/json refuses (%v)", b, werr)
	}
}
