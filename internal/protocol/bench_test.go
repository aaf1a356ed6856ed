package protocol

import (
	"testing"

	"github.com/switchboard-chat/switchboard/internal/chat"
)

func BenchmarkDecodeSend(b *testing.B) {
	frame := []byte(`{"type":"send","cid":"c-123456","body":"hello there, how are you doing today?","to":"bob"}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if _, err := Decode(frame); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeMessage(b *testing.B) {
	m := &chat.Message{ID: chat.NewMessageID(testTime), Conv: "dm:alice:bob", Seq: 12345, From: "alice", To: "bob",
		Body: "hello there, how are you doing today?", TS: 1_700_000_000_000, CID: "c-123456"}
	b.ReportAllocs()
	for b.Loop() {
		_ = EncodeMessage(m)
	}
}
