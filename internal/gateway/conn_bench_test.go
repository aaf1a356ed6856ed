package gateway

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"

	"github.com/coder/websocket"
)

// BenchmarkIdleConnectionMemory holds b.N idle WebSocket connections on a
// real loopback listener, upgraded as serveWS does (hijacker, run), and
// reports what each costs the server: goroutines, stack and live heap
// after a GC. The clients are raw sockets that completed the handshake
// (no goroutine or buffer of their own), so the figures are the server
// side's. Routing, Redis and Kafka are not involved.
//
//	go test -run '^$' -bench IdleConnectionMemory -benchtime 2000x ./internal/gateway/
func BenchmarkIdleConnectionMemory(b *testing.B) {
	s := testServer(b, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []*conn
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hj := &hijacker{ResponseWriter: w}
		ws, err := websocket.Accept(hj, r, &websocket.AcceptOptions{InsecureSkipVerify: true, CompressionMode: websocket.CompressionDisabled})
		if err != nil {
			return
		}
		ws.SetReadLimit(64 << 10)
		c := &conn{s: s, ws: ws, sock: hj.sock, ctx: ctx, user: "u", session: "s", closing: make(chan struct{})}
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		wg.Add(1)
		go func() { defer wg.Done(); c.run() }()
	}))
	defer srv.Close()
	defer cancel()

	dial := func(i int) net.Conn {
		nc, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		req := "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
		if _, err := io.WriteString(nc, req); err != nil {
			b.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			b.Fatalf("handshake %d: %v %v", i, resp, err)
		}
		return nc
	}
	measure := func() (runtime.MemStats, int) {
		for range 3 {
			runtime.GC() // stacks shrink at GC, a little at a time
		}
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m, runtime.NumGoroutine()
	}
	_ = dial(-1).Close() // warm up the server's own goroutines
	before, g0 := measure()
	b.ResetTimer()
	clients := make([]net.Conn, b.N)
	for i := range clients {
		clients[i] = dial(i)
	}
	b.StopTimer()
	for {
		mu.Lock()
		n := len(conns)
		mu.Unlock()
		if n >= b.N {
			break
		}
		runtime.Gosched()
	}
	after, g1 := measure()
	n := float64(b.N)
	b.ReportMetric(float64(g1-g0)/n, "goroutines/conn")
	b.ReportMetric(float64(after.StackInuse-before.StackInuse)/n, "stack-B/conn")
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heap-B/conn")
	for _, c := range clients {
		_ = c.Close()
	}
	wg.Wait()
}

// BenchmarkFrameWrites writes b.N message frames of 200 bytes to one
// connection over loopback TCP, read by a client that drains its socket:
// "queued" goes through enqueue and the writer (frames queued meanwhile
// share a flush), "one flush each" writes every frame with its own
// flush, as a writer without batching does.
func BenchmarkFrameWrites(b *testing.B) {
	for _, mode := range []string{"queued", "one flush each"} {
		b.Run(mode, func(b *testing.B) {
			s := testServer(b, Config{SendQueueBytes: 1 << 30}) // the producer outruns the socket
			got := make(chan *conn, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hj := &hijacker{ResponseWriter: w}
				ws, err := websocket.Accept(hj, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
				if err != nil {
					return
				}
				got <- &conn{s: s, ws: ws, sock: hj.sock, ctx: context.Background(), user: "u", session: "s", closing: make(chan struct{})}
			}))
			defer srv.Close()
			nc, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			_, _ = io.WriteString(nc, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
				"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
			br := bufio.NewReader(nc)
			if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
				b.Fatalf("handshake: %v %v", resp, err)
			}
			c := <-got
			frame := frameOf(0, 200)
			want := int64(b.N) * int64(len(frame)+2) // 2-byte header
			read := make(chan int64)
			go func() {
				n, _ := io.CopyN(io.Discard, br, want)
				read <- n
			}()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if mode == "queued" {
					c.enqueue(frame, essential)
				} else if err := c.ws.Write(context.Background(), websocket.MessageText, frame); err != nil {
					b.Fatal(err)
				}
			}
			if n := <-read; n != want {
				b.Fatalf("client read %d bytes, want %d", n, want)
			}
			b.StopTimer()
			c.close(reasonWriteFailed)
			c.mu.Lock()
			c.done = true
			c.mu.Unlock()
			c.tasks.Wait()
		})
	}
}
