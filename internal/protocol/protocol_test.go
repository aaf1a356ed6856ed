package protocol

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/switchboard-chat/switchboard/internal/chat"
)

func TestDecodeRejectsBadFramesWithTheRightCode(t *testing.T) {
	big := strings.Repeat("x", MaxBodyBytes+1)
	for _, tc := range []struct {
		name, frame string
		code        Code
		cid         string
	}{
		{"malformed JSON", `{"type":"send"`, CodeBadRequest, ""},
		{"not an object", `[1,2]`, CodeBadRequest, ""},
		{"two values", `{"type":"ping"}{"type":"ping"}`, CodeBadRequest, ""},
		{"missing type", `{"cid":"1"}`, CodeBadRequest, ""},
		{"unknown type", `{"type":"dance"}`, CodeBadRequest, ""},
		{"send without cid", `{"type":"send","body":"hi","to":"bob"}`, CodeBadRequest, ""},
		{"send without body", `{"type":"send","cid":"c1","to":"bob"}`, CodeBadRequest, "c1"},
		{"send with empty body", `{"type":"send","cid":"c1","body":"","to":"bob"}`, CodeBadRequest, "c1"},
		{"send with neither to nor conv", `{"type":"send","cid":"c1","body":"hi"}`, CodeBadRequest, "c1"},
		{"send with both to and conv", `{"type":"send","cid":"c1","body":"hi","to":"bob","conv":"public"}`, CodeBadRequest, "c1"},
		{"send with a body over 4096 bytes", `{"type":"send","cid":"c1","body":"` + big + `","conv":"public"}`, CodeTooLarge, "c1"},
		{"send to an invalid user", `{"type":"send","cid":"c1","body":"hi","to":"Bob!"}`, CodeBadRequest, "c1"},
		{"send to an invalid conversation", `{"type":"send","cid":"c1","body":"hi","conv":"room"}`, CodeBadRequest, "c1"},
		{"send with a cid over 64 characters", `{"type":"send","cid":"` + strings.Repeat("c", 65) + `","body":"hi","to":"bob"}`, CodeBadRequest, ""},
		{"send with a number as body", `{"type":"send","cid":"c1","body":5,"to":"bob"}`, CodeBadRequest, ""},
		{"receipt with a bad status", `{"type":"receipt","conv":"public","seq":1,"status":"seen"}`, CodeBadRequest, ""},
		{"receipt without seq", `{"type":"receipt","conv":"public","status":"read"}`, CodeBadRequest, ""},
		{"typing with a bad state", `{"type":"typing","to":"bob","state":"maybe"}`, CodeBadRequest, ""},
		{"sync with a bad conversation", `{"type":"sync","since":{"nope":1}}`, CodeBadRequest, ""},
		{"sync with a negative seq", `{"type":"sync","since":{"public":-1}}`, CodeBadRequest, ""},
		{"ping with a string", `{"type":"ping","t":"x"}`, CodeBadRequest, ""},
		{"ping with an infinite t", `{"type":"ping","t":1e999999}`, CodeBadRequest, ""},
		{"ping with an integer beyond int64", `{"type":"ping","t":99999999999999999999}`, CodeBadRequest, ""},
		{"send with a body of invalid UTF-8", "{\"type\":\"send\",\"cid\":\"c1\",\"body\":\"a\xff\",\"to\":\"bob\"}", CodeBadRequest, "c1"},
		{"send with a lone high surrogate", `{"type":"send","cid":"c1","body":"a\ud800b","to":"bob"}`, CodeBadRequest, "c1"},
		{"send with a lone low surrogate", `{"type":"send","cid":"c1","body":"\udc00","to":"bob"}`, CodeBadRequest, "c1"},
		{"send with two high surrogates", `{"type":"send","cid":"c1","body":"\ud800\ud800","to":"bob"}`, CodeBadRequest, "c1"},
		{"a lone surrogate in a key", `{"type":"ping","\ud83d":1}`, CodeBadRequest, ""},
		{"history without conv", `{"type":"history"}`, CodeBadRequest, ""},
		{"history of an invalid conversation", `{"type":"history","conv":"room"}`, CodeBadRequest, ""},
		{"history before 0", `{"type":"history","conv":"public","before":0}`, CodeBadRequest, ""},
		{"history with limit 0", `{"type":"history","conv":"public","limit":0}`, CodeBadRequest, ""},
		{"history with limit 101", `{"type":"history","conv":"public","limit":101}`, CodeBadRequest, ""},
		{"history with a string limit", `{"type":"history","conv":"public","limit":"5"}`, CodeBadRequest, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.frame))
			perr, ok := err.(*Error)
			if !ok {
				t.Fatalf("Decode(%s) = %v, want *Error", tc.frame, err)
			}
			if perr.Code != tc.code || perr.CID != tc.cid {
				t.Fatalf("Decode(%.80s) = code %s cid %q (%s), want code %s cid %q", tc.frame, perr.Code, perr.CID, perr.Message, tc.code, tc.cid)
			}
		})
	}
}

func TestDecodeAcceptsValidFrames(t *testing.T) {
	in, err := Decode([]byte(`{"type":"send","cid":"c1","body":"héllo","to":"bob"}`))
	if err != nil || in.To != "bob" || in.Body != "héllo" || in.CID != "c1" || in.Conv != "" {
		t.Fatalf("send to: %+v %v", in, err)
	}
	body := strings.Repeat("é", MaxBodyBytes/2) // exactly 4096 bytes
	in, err = Decode([]byte(`{"type":"send","cid":"c2","body":"` + body + `","conv":"public"}`))
	if err != nil || in.Conv != chat.Public {
		t.Fatalf("send with a 4096-byte body: %v", err)
	}
	in, err = Decode([]byte(`{"type":"sync","since":{"public":4,"dm:a:b":0}}`))
	if err != nil || in.Since["public"] != 4 || len(in.Since) != 2 {
		t.Fatalf("sync: %+v %v", in, err)
	}
	in, err = Decode([]byte(`{"type":"ping","t":12.5}`))
	if err != nil || string(in.T) != "12.5" {
		t.Fatalf("ping: %+v %v", in, err)
	}
	in, err = Decode([]byte(`{"type":"history","conv":"dm:a:b"}`))
	if err != nil || in.Conv != "dm:a:b" || in.Before != 0 || in.Limit != DefaultPage {
		t.Fatalf("history with defaults: %+v %v", in, err)
	}
	in, err = Decode([]byte(`{"type":"history","conv":"public","before":77,"limit":100}`))
	if err != nil || in.Before != 77 || in.Limit != 100 {
		t.Fatalf("history: %+v %v", in, err)
	}
	in, err = Decode([]byte(`{"type":"receipt","conv":"dm:a:b","seq":3,"status":"read"}`))
	if err != nil || in.Seq != 3 || in.Status != "read" {
		t.Fatalf("receipt: %+v %v", in, err)
	}
}

func TestEncodedFramesAreObjectsWithTheirType(t *testing.T) {
	for _, tc := range []struct {
		typ   string
		frame []byte
	}{
		{"hello", EncodeHello(Hello{User: "a", Server: "gw-1", Session: "s", HeartbeatMS: 1})},
		{"sent", EncodeSent(Sent{CID: "c", ID: "i", Conv: "public", Seq: 1, TS: 2})},
		{"message", EncodeMessage(&chat.Message{ID: "i", Conv: "public", Seq: 1, From: "a", Body: "<b>", TS: 2})},
		{"reconnect", EncodeReconnect(Reconnect{AfterMS: 10, Reason: "drain"})},
		{"synced", EncodeSynced(Synced{})},
		{"pong", EncodePong(json.RawMessage("7"))},
		{"error", EncodeError(&Error{Code: CodeBadRequest, Message: "m", CID: "c"})},
	} {
		var m map[string]any
		if err := json.Unmarshal(tc.frame, &m); err != nil {
			t.Fatalf("%s: %s: %v", tc.typ, tc.frame, err)
		}
		if m["type"] != tc.typ {
			t.Fatalf("%s: type = %v in %s", tc.typ, m["type"], tc.frame)
		}
	}
	var m map[string]any
	_ = json.Unmarshal(EncodeMessage(&chat.Message{ID: "i", Conv: "public", Seq: 9, From: "a", Body: "hi", TS: 2}), &m)
	if m["seq"] != float64(9) || m["body"] != "hi" || m["from"] != "a" {
		t.Fatalf("message fields: %v", m)
	}
}

func TestPingTIsReencoded(t *testing.T) {
	for in, want := range map[string]string{
		`1`: `1`, `-0`: `0`, `12.5`: `12.5`, `1E3`: `1000`, `1.0e-2`: `0.01`, `9223372036854775807`: `9223372036854775807`,
		`1e308`: `1e+308`,
	} {
		got, err := Decode([]byte(`{"type":"ping","t":` + in + `}`))
		if err != nil || string(got.T) != want {
			t.Errorf("ping t %s: got %s %v, want %s", in, got.T, err, want)
		}
	}
}

func TestCheckTextAcceptsValidEscapes(t *testing.T) {
	for _, s := range []string{
		`{"b":"\ud83d\ude00"}`, `{"b":"\\ud800"}`, `{"b":"\u00e9 é 😀"}`, `{"b":"\"\\"}`,
	} {
		if err := CheckText([]byte(s)); err != nil {
			t.Errorf("CheckText(%s) = %v", s, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"type":"send","cid":"c1","body":"hi","to":"bob"}`,
		`{"type":"send","cid":"c1","body":"hi","conv":"dm:a:b"}`,
		`{"type":"sync","since":{"public":1}}`,
		`{"type":"ping","t":1}`,
		`{"type":"receipt","conv":"public","seq":1,"status":"read"}`,
		`{"type":"typing","to":"bob","state":"start"}`,
		`{`, `null`, `[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in, err := Decode(data)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %T is not *Error", err)
			}
			return
		}
		if in.Type == TypeSend {
			if strings.ContainsRune(in.Body, utf8.RuneError) && !strings.Contains(string(data), "\ufffd") && !strings.Contains(string(data), "\uFFFD") && !strings.ContainsRune(string(data), utf8.RuneError) {
				t.Fatalf("a replacement character appeared in the body: %q", data)
			}
			if in.CID == "" || len(in.CID) > MaxCIDLen || in.Body == "" || len(in.Body) > MaxBodyBytes {
				t.Fatalf("invalid send accepted: %+v", in)
			}
			if (in.To == "") == (in.Conv == "") {
				t.Fatalf("send with neither or both targets accepted: %+v", in)
			}
		}
	})
}

var testTime = time.UnixMilli(1_700_000_000_000)
