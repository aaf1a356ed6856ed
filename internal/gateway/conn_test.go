package gateway

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// testServer is a Server with only what a connection needs.
func testServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	cfg.ServerID = "gw-test"
	if err := cfg.setDefaults(); err != nil {
		t.Fatal(err)
	}
	return &Server{cfg: cfg, log: slog.New(slog.DiscardHandler), m: newMetrics(prometheus.NewRegistry(), func() float64 { return 0 })}
}

// pipeResponse is the server side of a handshake over an in-memory pipe:
// Hijack writes the status line and headers, as net/http does.
type pipeResponse struct {
	conn   net.Conn
	br     *bufio.Reader
	header http.Header
	status int
}

func (p *pipeResponse) Header() http.Header         { return p.header }
func (p *pipeResponse) Write(b []byte) (int, error) { return 0, http.ErrHijacked }
func (p *pipeResponse) WriteHeader(status int)      { p.status = status }

func (p *pipeResponse) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", p.status, http.StatusText(p.status))
	_ = p.header.Write(&b)
	b.WriteString("\r\n")
	if _, err := io.WriteString(p.conn, b.String()); err != nil {
		return nil, nil, err
	}
	return p.conn, bufio.NewReadWriter(p.br, bufio.NewWriter(p.conn)), nil
}

// pipeConn upgrades the server end of an in-memory pipe to a gateway
// connection (not yet running). The client end is either a WebSocket
// client (live: it answers pings while it reads) or raw, returned with
// the reader positioned after the handshake.
func pipeConn(t *testing.T, s *Server, live bool) (*conn, *websocket.Conn, *bufio.Reader, net.Conn) {
	t.Helper()
	srv, cli := net.Pipe()
	t.Cleanup(func() { srv.Close(); cli.Close() })
	type dialed struct {
		ws  *websocket.Conn
		br  *bufio.Reader
		err error
	}
	done := make(chan dialed, 1)
	if live {
		go func() {
			hc := &http.Client{Transport: &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return cli, nil }}}
			ws, _, err := websocket.Dial(context.Background(), "ws://gateway/ws", &websocket.DialOptions{HTTPClient: hc})
			done <- dialed{ws: ws, err: err}
		}()
	} else {
		go func() {
			const req = "GET /ws HTTP/1.1\r\nHost: gateway\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
				"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
			if _, err := io.WriteString(cli, req); err != nil {
				done <- dialed{err: err}
				return
			}
			br := bufio.NewReader(cli)
			resp, err := http.ReadResponse(br, nil)
			if err == nil && resp.StatusCode != http.StatusSwitchingProtocols {
				err = fmt.Errorf("handshake answered %s", resp.Status)
			}
			done <- dialed{br: br, err: err}
		}()
	}
	br := bufio.NewReader(srv)
	r, err := http.ReadRequest(br)
	if err != nil {
		t.Fatal(err)
	}
	hj := &hijacker{ResponseWriter: &pipeResponse{conn: srv, br: br, header: http.Header{}}}
	ws, err := websocket.Accept(hj, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	d := <-done
	if d.err != nil {
		t.Fatal(d.err)
	}
	c := &conn{s: s, ws: ws, sock: hj.sock, ctx: context.Background(), user: "alice", session: "s1", closing: make(chan struct{})}
	return c, d.ws, d.br, cli
}

// counterValue reads a counter.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

// readFrame reads one unmasked server frame: its opcode and payload.
func readFrame(r *bufio.Reader) (byte, []byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	p := make([]byte, n)
	_, err := io.ReadFull(r, p)
	return h[0] & 0x0f, p, err
}

// start runs c and returns a channel closed when run has returned.
func start(c *conn) <-chan struct{} {
	ended := make(chan struct{})
	go func() { defer close(ended); c.run() }()
	return ended
}

func frameOf(i, size int) []byte {
	f := fmt.Appendf(nil, `{"type":"message","n":%d,"body":"`, i)
	f = append(f, strings.Repeat("x", max(0, size-len(f)-2))...)
	return append(f, `"}`...)
}

// connGoroutines counts the goroutines running a conn method.
func connGoroutines() int {
	buf := make([]byte, 1<<20)
	n := 0
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "gateway.(*conn).") {
			n++
		}
	}
	return n
}

func TestAnIdleConnectionCostsOneGoroutine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := testServer(t, Config{})
		c, _, br, _ := pipeConn(t, s, false)
		go func() { _, _ = io.Copy(io.Discard, br) }()
		ended := start(c)
		synctest.Wait()
		if n := connGoroutines(); n != 1 {
			t.Fatalf("an idle connection runs %d goroutines, want 1 (the reader)", n)
		}
		// A frame starts the writer, which exits once the queue is empty.
		c.enqueue(frameOf(0, 100), essential)
		synctest.Wait()
		if n := connGoroutines(); n != 1 {
			t.Fatalf("after a write, the connection runs %d goroutines, want 1", n)
		}
		c.close(reasonDrain)
		<-ended
	})
}

func TestQueuedFramesAreWrittenInOrderSeveralPerFlush(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := testServer(t, Config{})
		c, _, _, cli := pipeConn(t, s, false)
		ended := start(c)
		// The first frame's write blocks (the client does not read yet);
		// the next 99 queue up behind it.
		const n = 100
		for i := range n {
			c.enqueue(frameOf(i, 100), essential)
		}
		synctest.Wait()
		// Each Read of a pipe returns bytes of one Write: count the writes.
		var stream []byte
		writes := 0
		buf := make([]byte, 64<<10)
		for !strings.Contains(string(stream), fmt.Sprintf(`"n":%d,`, n-1)) {
			k, err := cli.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			writes++
			stream = append(stream, buf[:k]...)
		}
		r := bufio.NewReader(strings.NewReader(string(stream)))
		for i := range n {
			op, p, err := readFrame(r)
			if err != nil || op != 1 || !strings.Contains(string(p), fmt.Sprintf(`"n":%d,`, i)) {
				t.Fatalf("frame %d: opcode %d %.40s %v", i, op, p, err)
			}
		}
		if writes > 3 {
			t.Errorf("%d frames took %d socket writes, want them batched (at most 3)", n, writes)
		}
		synctest.Wait() // the writer counts a batch after its write returns
		if got := counterValue(s.m.framesOut); got != n {
			t.Errorf("frames_out_total %v, want %d", got, n)
		}
		go func() { _, _ = io.Copy(io.Discard, cli) }()
		c.close(reasonDrain)
		<-ended
	})
}

func TestAQueueOverItsByteBudgetClosesTheConnectionAsASlowConsumer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const budget = 8 << 10
		s := testServer(t, Config{SendQueueBytes: budget})
		c, _, _, _ := pipeConn(t, s, false) // the client never reads
		ended := start(c)
		for i := range 8 { // 8 KiB: the budget, the first frame in the blocked write
			c.enqueue(frameOf(i, 1024), essential)
		}
		synctest.Wait()
		if c.isClosing() {
			t.Fatal("closed within the budget")
		}
		// Half the budget is used: typing and presence are shed, the
		// connection stays.
		c.enqueue(frameOf(100, 50), ephemeral)
		if c.isClosing() || counterValue(s.m.drops.WithLabelValues("shed_ephemeral")) != 1 {
			t.Fatal("an ephemeral frame past half the budget was not shed")
		}
		c.enqueue(frameOf(8, 1024), essential)
		if !c.isClosing() || c.reason != reasonSlowConsumer {
			t.Fatalf("past the budget: closing %v, reason %q; want slow_consumer", c.isClosing(), c.reason.label)
		}
		if got := counterValue(s.m.drops.WithLabelValues("queue_full")); got != 1 {
			t.Fatalf("queue_full drops %v, want 1", got)
		}
		// The blocked write is aborted at once, not after WriteTimeout.
		t0 := time.Now()
		<-ended
		if waited := time.Since(t0); waited != 0 {
			t.Fatalf("the slow consumer's connection ended after %v, want at once", waited)
		}
	})
}

func TestABigFrameAlwaysFitsAnEmptyQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := testServer(t, Config{SendQueueBytes: 4 << 10})
		c, _, br, _ := pipeConn(t, s, false)
		ended := start(c)
		c.enqueue(frameOf(0, 10<<10), essential)
		op, p, err := readFrame(br)
		if err != nil || op != 1 || len(p) != 10<<10 || c.isClosing() {
			t.Fatalf("big frame: opcode %d, %d bytes, %v, closing %v", op, len(p), err, c.isClosing())
		}
		go func() { _, _ = io.Copy(io.Discard, br) }()
		c.close(reasonDrain)
		<-ended
	})
}

func TestAPeerThatStopsAnsweringPingsIsClosedWithinIntervalPlusTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := testServer(t, Config{PingInterval: 20 * time.Second, PingTimeout: 10 * time.Second})
		c, _, br, _ := pipeConn(t, s, false)
		// A dead peer: its frames are read off the wire and never answered.
		pings := make(chan struct{}, 8)
		go func() {
			for {
				op, _, err := readFrame(br)
				if err != nil {
					return
				}
				if op == 9 {
					pings <- struct{}{}
				}
			}
		}()
		ended := start(c)
		time.Sleep(29 * time.Second)
		synctest.Wait()
		if c.isClosing() || len(pings) != 1 {
			t.Fatalf("after 29s: closing %v, %d pings; want open, 1 ping", c.isClosing(), len(pings))
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if !c.isClosing() || c.reason != reasonPingTimeout {
			t.Fatalf("after 31s: closing %v, reason %q; want ping_timeout", c.isClosing(), c.reason.label)
		}
		<-ended
	})
}

func TestALivePeerIsPingedAndStaysOpen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := testServer(t, Config{PingInterval: 20 * time.Second, PingTimeout: 10 * time.Second})
		c, client, _, _ := pipeConn(t, s, true)
		readErr := make(chan error, 1)
		go func() { // reading answers pings
			_, _, err := client.Read(context.Background())
			readErr <- err
		}()
		ended := start(c)
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		if c.isClosing() {
			t.Fatalf("a live peer was closed: %q", c.reason.label)
		}
		_ = client.Close(websocket.StatusNormalClosure, "")
		<-ended
		<-readErr
		if c.reason != reasonClientGone {
			t.Fatalf("reason %q, want client_closed", c.reason.label)
		}
	})
}

func TestFramesWaitUntilTheConnectionIsRegistered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := testServer(t, Config{})
		c, _, br, _ := pipeConn(t, s, false)
		c.holding = true // as serveWS makes it
		got := make(chan []byte, 1)
		go func() {
			_, p, _ := readFrame(br)
			got <- p
			_, _ = io.Copy(io.Discard, br)
		}()
		c.enqueue([]byte(`{"type":"hello"}`), essential)
		synctest.Wait()
		if len(got) != 0 {
			t.Fatal("hello was written before the connection was registered")
		}
		c.release()
		if p := <-got; string(p) != `{"type":"hello"}` {
			t.Fatalf("first frame %s, want hello", p)
		}
		ended := start(c)
		c.close(reasonDrain)
		<-ended
	})
}

func TestAPeerThatKeepsSendingIsAliveWithoutItsPongs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := testServer(t, Config{PingInterval: 20 * time.Second, PingTimeout: 10 * time.Second})
		c, _, br, cli := pipeConn(t, s, false)
		go func() { _, _ = io.Copy(io.Discard, br) }() // pings are read, never answered
		ended := start(c)
		// An application ping every second, as a masked frame (key 0).
		frame := append([]byte{0x81, 0x80 | 15, 0, 0, 0, 0}, `{"type":"ping"}`...)
		for range 100 {
			if _, err := cli.Write(frame); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second)
		}
		synctest.Wait()
		if c.isClosing() {
			t.Fatalf("a peer that kept sending was closed: %q", c.reason.label)
		}
		// Silent from now on: closed within interval plus timeout.
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if !c.isClosing() || c.reason != reasonPingTimeout {
			t.Fatalf("30s after its last frame: closing %v, reason %q; want ping_timeout", c.isClosing(), c.reason.label)
		}
		<-ended
	})
}
