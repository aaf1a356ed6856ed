//go:build integration

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/store"
	"github.com/switchboard-chat/switchboard/internal/wsclient"
)

// The tests in this file reproduce, from outside, what a probe of the
// gateway found (issue 7, item 7), and the abuse limits.

// rawConn opens a TCP connection to g that the test drives by hand.
func rawConn(t *testing.T, g *gw) net.Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", g.srv.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

// closedByServer reports whether the server closes nc within d.
func closedByServer(nc net.Conn, d time.Duration) bool {
	_ = nc.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, nc)
	return err == nil // EOF: the server closed it; a timeout is an error
}

func TestIdleKeepAlivesAreClosedButWebSocketsStayOpen(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway("gw-1", func(cfg *gatewayConfig) {
		cfg.HTTPIdleTimeout, cfg.HTTPReadTimeout, cfg.HTTPWriteTimeout = 300*time.Millisecond, 300*time.Millisecond, 300*time.Millisecond
	})
	ws := c.dial(g, "alice")
	nc := rawConn(t, g)
	if _, err := io.WriteString(nc, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz over a raw connection: %v %v", resp, err)
	}
	start := time.Now()
	if !closedByServer(nc, 10*time.Second) {
		t.Fatal("an idle keep-alive connection was still open after 10s (idle timeout 300ms)")
	}
	t.Logf("idle keep-alive closed after %v", time.Since(start).Round(time.Millisecond))
	// A stalled request (headers never finished) is closed too.
	stalled := rawConn(t, g)
	_, _ = io.WriteString(stalled, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
	if !closedByServer(stalled, 15*time.Second) {
		t.Fatal("a request whose headers never end was still open after 15s")
	}
	// The WebSocket, idle for longer than every HTTP timeout, still works.
	assertAlive(t, ws)
}

func TestConnectionsPerAddressAreCappedAndWebSocketsDoNotCount(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway("gw-1", func(cfg *gatewayConfig) { cfg.MaxConnsPerIP = 3 })
	var wss []*wsclient.Client
	for i := range 4 {
		wss = append(wss, c.dial(g, fmt.Sprintf("u%d", i))) // more WebSockets than the cap
	}
	held := []net.Conn{rawConn(t, g), rawConn(t, g), rawConn(t, g)}
	over := rawConn(t, g)
	if !closedByServer(over, 5*time.Second) {
		t.Fatal("a fourth idle connection from one address was not closed at once (cap 3)")
	}
	if !closedByServer(held[0], 200*time.Millisecond) == false {
		t.Fatal("a connection within the cap was closed")
	}
	held[0].Close()
	testkit_eventually(t, "a request once a slot is free", func() bool {
		resp, err := http.Get(g.httpURL() + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	for _, ws := range wss {
		assertAlive(t, ws)
	}
	held[1].Close()
	held[2].Close()
	if n := metric(t, g, "switchboard_gateway_accept_refused_total"); n < 1 {
		t.Fatalf("accept_refused_total = %v, want >= 1", n)
	}
}

func testkit_eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAPlainGetOfWSSpendsNoAdmissionToken(t *testing.T) {
	c := newCluster(t)
	// waitReady dials two probes; two tokens are left, refilled once an hour.
	g := c.startGateway("gw-1", func(cfg *gatewayConfig) { cfg.ConnectRate, cfg.ConnectBurst = 1.0/3600, 4 })
	for range 200 {
		resp, err := http.Get(g.httpURL() + "/ws?user=alice")
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ Error struct{ Code string } }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUpgradeRequired || body.Error.Code != "bad_request" {
			t.Fatalf("plain GET /ws: %d %+v, want 426 bad_request", resp.StatusCode, body)
		}
	}
	c.dial(g, "alice")
	c.dial(g, "bob")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, resp, err := wsclient.Dial(ctx, g.wsURL("carol"), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a connection past the burst: %v %v, want 503", resp, err)
	}
}

// handshake sends a WebSocket handshake with the given headers and returns
// the status and the JSON error code.
func handshake(t *testing.T, g *gw, query string, hdr map[string]string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("GET", g.httpURL()+"/ws"+query, nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Error struct{ Code, Message string }
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.Error.Code, resp.Header
}

func TestOriginsAreConfiguredNotTakenFromTheRequest(t *testing.T) {
	c := newCluster(t)
	def := c.startGateway("gw-1")
	// DNS rebinding: the page's origin and the Host header agree.
	if st, code, _ := handshake(t, def, "?user=alice", map[string]string{"Origin": "http://evil.example", "Host": "evil.example"}); st != 403 || code != "forbidden" {
		t.Fatalf("rebinding handshake: %d %s, want 403 forbidden", st, code)
	}
	if st, _, _ := handshake(t, def, "?user=alice", map[string]string{"Origin": def.httpURL()}); st != http.StatusSwitchingProtocols {
		t.Fatalf("loopback origin with the default list: %d, want 101", st)
	}
	conf := c.startGateway("gw-2", func(cfg *gatewayConfig) { cfg.AllowedOrigins = []string{"https://chat.example.com"} })
	for origin, want := range map[string]int{
		"https://chat.example.com": 101, "http://chat.example.com": 403, "https://chat.example.com.evil": 403, conf.httpURL(): 403,
	} {
		if st, _, _ := handshake(t, conf, "?user=alice", map[string]string{"Origin": origin}); st != want {
			t.Errorf("origin %s: %d, want %d", origin, st, want)
		}
	}
}

func TestBadTextNamesHeadersAndPingsAreRefused(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway("gw-1")
	alice := c.dial(g, "alice")
	ctx := context.Background()
	for _, frame := range []string{
		"{\"type\":\"send\",\"cid\":\"u1\",\"body\":\"a\xff\",\"to\":\"bob\"}",
		`{"type":"send","cid":"u2","body":"x\ud800y","to":"bob"}`,
		`{"type":"ping","t":1e999999}`,
	} {
		if err := alice.SendRaw(ctx, []byte(frame)); err != nil {
			t.Fatal(err)
		}
		f := expect(t, alice, "an error", func(f wsclient.Frame) bool { return f.Type != "pong" })
		if f.Type != "error" || f.Code != "bad_request" {
			t.Fatalf("%q: got %s, want bad_request", frame, f.Raw)
		}
	}
	if err := alice.SendRaw(ctx, []byte(`{"type":"ping","t":1E3}`)); err != nil {
		t.Fatal(err)
	}
	if f := expect(t, alice, "pong", func(f wsclient.Frame) bool { return f.Type == "pong" }); string(f.T) != "1000" {
		t.Fatalf("pong t = %s, want the number re-encoded as 1000", f.T)
	}
	for _, name := range []string{".", "..", "-", "public", "_._"} {
		if st, code, _ := handshake(t, g, "?user="+name, nil); st != 401 || code != "unauthorized" {
			t.Errorf("user %q: %d %s, want 401", name, st, code)
		}
	}
	// A long user name is not echoed whole (100 KB is past the header
	// limit and gets 431 before anything reads it).
	req, _ := http.NewRequest("GET", g.httpURL()+"/ws?user="+strings.Repeat("x", 12<<10)+"!", nil)
	for k, v := range map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="} {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || len(body) > 1024 {
		t.Fatalf("12 KB user name: %d with a %d-byte body, want 401 under 1 KiB", resp.StatusCode, len(body))
	}
	// 500 KB of headers.
	req, _ = http.NewRequest("GET", g.httpURL()+"/healthz", nil)
	for i := range 50 {
		req.Header.Set(fmt.Sprintf("X-Pad-%d", i), strings.Repeat("p", 10<<10))
	}
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("500 KB of headers: %d, want 431", resp.StatusCode)
	}
	// Just over the configured 16 KiB (net/http itself reads 4 KiB more).
	req, _ = http.NewRequest("GET", g.httpURL()+"/healthz", nil)
	req.Header.Set("X-Pad", strings.Repeat("p", 17<<10))
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("17 KiB of headers: %d, want 431", resp.StatusCode)
	}
	assertAlive(t, alice)
}

func TestAReceiptBeyondTheLatestSeqIsRefusedAndNeverStored(t *testing.T) {
	c := newCluster(t)
	c.startRouter()
	g := c.startGateway("gw-1")
	alice, bob := c.dial(g, "alice"), c.dial(g, "bob")
	ctx := context.Background()
	for i := range 3 {
		cid := fmt.Sprintf("m%d", i)
		if err := alice.SendTo(ctx, cid, "bob", "hi"); err != nil {
			t.Fatal(err)
		}
		expect(t, alice, "sent", isSent(cid))
	}
	conv := string(chat.DirectConv("alice", "bob"))
	if err := bob.SendJSON(ctx, map[string]any{"type": "receipt", "conv": conv, "seq": int64(9e18), "status": "read"}); err != nil {
		t.Fatal(err)
	}
	f := expect(t, bob, "an answer", func(f wsclient.Frame) bool { return f.Type == "error" })
	if f.Code != "bad_request" {
		t.Fatalf("receipt 9e18: %s, want bad_request", f.Raw)
	}
	if err := bob.SendJSON(ctx, map[string]any{"type": "receipt", "conv": conv, "seq": 3, "status": "read"}); err != nil {
		t.Fatal(err)
	}
	// alice gets the valid receipt and never the bogus one.
	if r := expect(t, alice, "receipt", func(f wsclient.Frame) bool { return f.Type == "receipt" }); r.Seq != 3 {
		t.Fatalf("alice's first receipt is %s, want seq 3", r.Raw)
	}
	// A bogus record already in the log (written before this check
	// existed) is clamped when applied, so no replay resurrects it.
	st := store.New(c.rdb, store.Config{Prefix: c.prefix})
	bogus := &chat.Receipt{Conv: chat.ConvID(conv), User: "mallory", Seq: 9e18, Status: "read", TS: 1}
	if err := st.Apply(ctx, &chat.LogRecord{Type: chat.TypeReceipt, Receipt: bogus}, store.Position{Topic: "replayed", Partition: 0, Offset: 1}); err != nil {
		t.Fatal(err)
	}
	rs, err := st.Receipts(ctx, chat.ConvID(conv))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Seq > 3 {
			t.Fatalf("stored receipt %+v beyond the latest seq 3", r)
		}
	}
}

func TestTypingIsBoundedPerConnection(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway("gw-1")
	alice, bob := c.dial(g, "alice"), c.dial(g, "bob")
	ctx := context.Background()
	start := time.Now()
	for i := range 400 {
		state := "start"
		if i%2 == 1 {
			state = "stop"
		}
		if err := alice.SendJSON(ctx, map[string]any{"type": "typing", "to": "bob", "state": state}); err != nil {
			t.Fatal(err)
		}
	}
	// Starts to 2,000 distinct users: the typing map stays bounded.
	for i := range 2000 {
		if err := alice.SendJSON(ctx, map[string]any{"type": "typing", "to": fmt.Sprintf("v%d", i), "state": "start"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := alice.SendTo(ctx, "end", "bob", "end"); err != nil {
		t.Fatal(err)
	}
	typing := 0
	expect(t, bob, "the end message", func(f wsclient.Frame) bool {
		if f.Type == "typing" {
			typing++
		}
		return f.Type == "message" && f.CID == "end"
	})
	elapsed := time.Since(start)
	if limit := 5 + int(elapsed.Seconds()) + 1; typing > limit {
		t.Fatalf("bob got %d typing frames of 400 alternating in %v; at most %d may pass", typing, elapsed, limit)
	}
	if n := metric(t, g, `switchboard_gateway_limited_total{what="typing"}`); n < 2000 {
		t.Fatalf("limited typing = %v, want most of the 2,400 frames", n)
	}
	t.Logf("%d typing frames relayed of 400 alternating + 2,000 starts in %v", typing, elapsed)
}

func TestTheMessageRateLimitTripsAndRecovers(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway("gw-1", func(cfg *gatewayConfig) { cfg.MessageRate, cfg.MessageBurst = 5, 5 })
	alice := c.dial(g, "alice")
	ctx := context.Background()
	for i := range 10 {
		if err := alice.SendTo(ctx, fmt.Sprintf("r%d", i), "bob", "hi"); err != nil {
			t.Fatal(err)
		}
	}
	var limited []wsclient.Frame
	answers := map[string]bool{}
	for len(answers) < 10 {
		f := expect(t, alice, "an answer", func(f wsclient.Frame) bool { return isSent(f.CID)(f) && strings.HasPrefix(f.CID, "r") })
		answers[f.CID] = true
		if f.Type == "error" {
			if f.Code != "rate_limited" || f.RetryAfterMS <= 0 {
				t.Fatalf("answer %s, want rate_limited with retry_after_ms", f.Raw)
			}
			limited = append(limited, f)
		}
	}
	if len(limited) < 4 {
		t.Fatalf("%d of 10 sends at once were limited with a burst of 5", len(limited))
	}
	time.Sleep(time.Duration(limited[0].RetryAfterMS) * time.Millisecond) // the wait the server asked for
	if err := alice.SendTo(ctx, limited[0].CID, "bob", "hi"); err != nil {
		t.Fatal(err)
	}
	if f := expect(t, alice, "retry", isSent(limited[0].CID)); f.Type != "sent" {
		t.Fatalf("retry after retry_after_ms: %s", f.Raw)
	}
}

func TestSessionsPerUserAreCappedAcrossGateways(t *testing.T) {
	c := newCluster(t)
	cap2 := func(cfg *gatewayConfig) { cfg.MaxSessionsPerUser = 2 }
	g1, g2 := c.startGateway("gw-1", cap2), c.startGateway("gw-2", cap2)
	c.dial(g1, "carol")
	c.dial(g2, "carol")
	st, code, hdr := handshake(t, g1, "?user=carol", nil)
	if st != http.StatusTooManyRequests || code != "rate_limited" || hdr.Get("Retry-After") == "" {
		t.Fatalf("third session: %d %s, want 429 rate_limited with Retry-After", st, code)
	}
	c.dial(g2, "dave") // others are not affected
}

func TestEveryAnswerCarriesSecurityHeadersAndTheAPIAnswersCORS(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway("gw-1")
	for _, path := range []string{"/", "/healthz", "/nope", "/ws", "/api/nope"} {
		resp, err := http.Get(g.httpURL() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		for _, h := range []string{"Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy", "X-Frame-Options"} {
			if resp.Header.Get(h) == "" {
				t.Errorf("%s (%d) lacks %s", path, resp.StatusCode, h)
			}
		}
	}
	preflight := func(origin string) *http.Response {
		req, _ := http.NewRequest("OPTIONS", g.httpURL()+"/api/messages", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := preflight("http://localhost:5173"); resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "http://localhost:5173" {
		t.Fatalf("allowed preflight: %d %v", resp.StatusCode, resp.Header)
	}
	if resp := preflight("https://evil.example"); resp.StatusCode != 403 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("disallowed preflight: %d %v", resp.StatusCode, resp.Header)
	}
}

// A client that sends far past its rate while reading every answer is
// answered rate_limited for each send and kept: the answers to its own
// frames slow down reading it, they never make it a slow consumer.
func TestAFloodPastTheRateIsAnsweredAndTheConnectionKept(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway("gw-1", func(cfg *gatewayConfig) {
		cfg.MessageRate, cfg.MessageBurst = 1, 1
		cfg.SendQueueBytes = 1024 // a few answers
	})
	alice := c.dial(g, "alice")
	ctx := context.Background()
	const n = 2000
	go func() {
		for i := range n {
			var err error
			switch i % 3 {
			case 0:
				err = alice.SendTo(ctx, fmt.Sprintf("f%d", i), "bob", "hi")
			case 1:
				err = alice.SendJSON(ctx, map[string]any{"type": "ping", "t": i})
			default:
				err = alice.SendRaw(ctx, []byte(`{"type":"nope"}`))
			}
			if err != nil {
				return // the test fails below
			}
		}
		_ = alice.SendJSON(ctx, map[string]any{"type": "ping", "t": -1})
	}()
	answers := 0
	expect(t, alice, "the last pong", func(f wsclient.Frame) bool {
		answers++
		return f.Type == "pong" && string(f.T) == "-1"
	})
	if answers < n {
		t.Fatalf("%d answers to %d frames", answers, n)
	}
	if d := metric(t, g, `switchboard_gateway_disconnects_total{reason="slow_consumer"}`); d != 0 {
		t.Fatalf("%v slow-consumer disconnects", d)
	}
}
