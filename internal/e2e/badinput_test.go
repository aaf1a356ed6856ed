//go:build integration

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard-chat/switchboard/internal/wsclient"
)

func TestBadFramesGetAnErrorAndTheConnectionKeepsWorking(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway("gw-1")
	alice, bob := c.dial(g, "alice"), c.dial(g, "bob")
	ctx := context.Background()
	for _, tc := range []struct {
		name, frame string
		code, cid   string
	}{
		{"malformed JSON", `{"type":"send",`, "bad_request", ""},
		{"a JSON array", `[1,2,3]`, "bad_request", ""},
		{"an unknown type", `{"type":"teleport"}`, "bad_request", ""},
		{"a missing type", `{"cid":"x"}`, "bad_request", ""},
		{"a send without cid", `{"type":"send","body":"hi","to":"bob"}`, "bad_request", ""},
		{"a send without body", `{"type":"send","cid":"c1","to":"bob"}`, "bad_request", "c1"},
		{"a send with neither to nor conv", `{"type":"send","cid":"c2","body":"hi"}`, "bad_request", "c2"},
		{"a send with both to and conv", `{"type":"send","cid":"c3","body":"hi","to":"bob","conv":"public"}`, "bad_request", "c3"},
		{"a body over 4096 bytes", `{"type":"send","cid":"c4","body":"` + strings.Repeat("é", 2049) + `","to":"bob"}`, "too_large", "c4"},
		{"an invalid user id", `{"type":"send","cid":"c5","body":"hi","to":"BOB!"}`, "bad_request", "c5"},
		{"an invalid conversation", `{"type":"send","cid":"c6","body":"hi","conv":"lobby"}`, "bad_request", "c6"},
		{"someone else's direct conversation", `{"type":"send","cid":"c7","body":"hi","conv":"dm:bob:carol"}`, "forbidden", "c7"},
		{"a group that does not exist", `{"type":"send","cid":"c8","body":"hi","conv":"g:nope"}`, "not_found", "c8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := alice.SendRaw(ctx, []byte(tc.frame)); err != nil {
				t.Fatal(err)
			}
			f := expect(t, alice, "error frame", func(f wsclient.Frame) bool { return f.Type != "pong" })
			if f.Type != "error" || f.Code != tc.code || f.CID != tc.cid || f.Message == "" {
				t.Fatalf("got %s, want an error with code %s and cid %q", f.Raw, tc.code, tc.cid)
			}
			assertAlive(t, alice)
		})
	}
	// Nothing was half-sent: bob got no message, and a valid send works.
	if err := alice.SendTo(ctx, "ok", "bob", "valid"); err != nil {
		t.Fatal(err)
	}
	expect(t, alice, "sent", isSent("ok"))
	if f := expect(t, bob, "bob's first frame", func(wsclient.Frame) bool { return true }); f.CID != "ok" {
		t.Fatalf("bob's first frame after the bad input is %s", f.Raw)
	}
}

func TestABinaryFrameIsABadRequest(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway("gw-1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, g.wsURL("alice"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	if _, _, err := ws.Read(ctx); err != nil { // hello
		t.Fatal(err)
	}
	if err := ws.Write(ctx, websocket.MessageBinary, []byte(`{"type":"ping"}`)); err != nil {
		t.Fatal(err)
	}
	_, data, err := ws.Read(ctx)
	if err != nil || !strings.Contains(string(data), `"code":"bad_request"`) {
		t.Fatalf("after a binary frame: %s %v", data, err)
	}
}

func TestAFrameOver64KiBClosesWith1009(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway("gw-1")
	alice := c.dial(g, "alice")
	ctx := context.Background()
	_ = alice.SendRaw(ctx, []byte(`{"type":"ping","t":"`+strings.Repeat("x", 64<<10)+`"}`))
	select {
	case <-alice.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("connection still open 10s after an oversized frame")
	}
	if got := websocket.CloseStatus(alice.Err()); got != websocket.StatusMessageTooBig {
		t.Fatalf("close status %v (%v), want 1009", got, alice.Err())
	}
	// The gateway is fine: a new connection works.
	assertAlive(t, c.dial(g, "alice"))
}

func TestTheHandshakeRejectsBadRequestsBeforeUpgrading(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway("gw-1")
	for _, tc := range []struct {
		name   string
		query  string
		origin string
		status int
		code   string
	}{
		{"no user in open mode", "", "", http.StatusUnauthorized, "unauthorized"},
		{"an invalid user id", "?user=Not%20Valid", "", http.StatusUnauthorized, "unauthorized"},
		{"a foreign origin", "?user=alice", "https://evil.example", http.StatusForbidden, "forbidden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", g.httpURL()+"/ws"+tc.query, nil)
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "websocket")
			req.Header.Set("Sec-WebSocket-Version", "13")
			req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
			if tc.origin != "" {
				req.Header.Set("Origin", tc.origin)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Error struct{ Code, Message string }
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatalf("status %d, body not JSON: %v", resp.StatusCode, err)
			}
			if resp.StatusCode != tc.status || body.Error.Code != tc.code || body.Error.Message == "" {
				t.Fatalf("got %d %+v, want %d %s", resp.StatusCode, body, tc.status, tc.code)
			}
		})
	}
	// The gateway's own page may connect.
	hdr := http.Header{"Origin": {g.httpURL()}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, _, err := wsclient.Dial(ctx, g.wsURL("alice"), hdr)
	if err != nil {
		t.Fatalf("same-origin connection refused: %v", err)
	}
	cl.Close()
}

// assertAlive checks that cl still answers a ping.
func assertAlive(t *testing.T, cl *wsclient.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.SendJSON(ctx, map[string]any{"type": "ping", "t": 7}); err != nil {
		t.Fatalf("ping: %v", err)
	}
	f, err := cl.WaitFor(ctx, func(f wsclient.Frame) bool { return f.Type == "pong" })
	if err != nil || string(f.T) != "7" {
		if errors.Is(err, wsclient.ErrClosed) {
			t.Fatalf("connection closed: %v", err)
		}
		t.Fatalf("pong: %s %v", f.Raw, err)
	}
}
