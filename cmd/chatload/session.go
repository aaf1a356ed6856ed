package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// evKind says what a server frame meant to the load tester.
type evKind int

const (
	evOther     evKind = iota
	evAck              // a send was acknowledged (sent / publish reply)
	evDeliver          // a message reached this session
	evError            // an error frame, maybe for one send
	evSynced           // the end of a sync
	evReconnect        // the server asks the client to reconnect
)

// event is one decoded server frame. idx is the load tester's message
// number (from the cid), -1 when the frame is not about one of ours.
type event struct {
	kind evKind
	idx  int
	code string // evError
	// retryAfter is the wait an error frame asks for (retry_after_ms).
	retryAfter time.Duration
	conv       string // evDeliver
	seq        int64  // evDeliver
	id         string // evAck, evDeliver: the server's message id
	batch      bool   // evDeliver: part of a sync's answer, not live
	synced     map[string]int64
}

// target is a system under test: how to open a session and what its
// frames mean. Implementations are safe for concurrent use.
type target interface {
	// url is the WebSocket URL of user on endpoint gw.
	url(ctx context.Context, gw int, user string) (string, error)
	// handshake runs after the upgrade, before any traffic.
	handshake(ctx context.Context, s *session) error
	// dm and public encode one send of message idx.
	dm(idx int, from, to string) []byte
	public(idx int, from string) []byte
	// decode turns one received WebSocket message into events.
	decode(data []byte, emit func(event))
	// ping is what answers a server ping frame, nil when nothing does.
	pong(data []byte) []byte
	// endpoints is the number of gateways or nodes.
	endpoints() int
}

// session is one WebSocket connection of one user.
type session struct {
	name string
	gw   int
	ws   *websocket.Conn
	tgt  target
	done chan struct{}
	mu   sync.Mutex
	err  error // why the read loop ended
	// closing is set before the load tester closes the session itself.
	closing bool
	// seqs is the last seq seen per conversation; owned by the read loop.
	seqs map[string]int64
	// synced, when set, receives the convs of each synced frame (dropped
	// when full), or nil for an error frame about no send (a sync's
	// refusal), whose retry_after_ms is then in syncRetry (nanoseconds).
	synced    chan map[string]int64
	syncRetry atomic.Int64
	h         atomic.Pointer[func(*session, event)]
}

// setHandler replaces the event handler of a running session.
func (s *session) setHandler(h func(*session, event)) { s.h.Store(&h) }

// write sends one frame; safe for concurrent use.
func (s *session) write(ctx context.Context, b []byte) error {
	return s.ws.Write(ctx, websocket.MessageText, b)
}

// readRaw reads one message, for handshakes (before run).
func (s *session) readRaw(ctx context.Context) ([]byte, error) {
	_, b, err := s.ws.Read(ctx)
	return b, err
}

// run reads until the connection ends, handing each event to handle (or
// to the handler set later); it closes done when it returns.
func (s *session) run(handle func(*session, event)) {
	defer close(s.done)
	s.setHandler(handle)
	ctx := context.Background()
	for {
		_, data, err := s.ws.Read(ctx)
		if err != nil {
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
			return
		}
		if p := s.tgt.pong(data); p != nil {
			_ = s.write(ctx, p)
			continue
		}
		h := *s.h.Load()
		s.tgt.decode(data, func(ev event) { h(s, ev) })
	}
}

// dropped reports whether the connection ended without the load tester
// closing it.
func (s *session) dropped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err != nil && !s.closing
}

// closeNow drops the connection without a close handshake and waits for
// the read loop (when started).
func (s *session) closeNow(started bool) {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	_ = s.ws.CloseNow()
	if started {
		<-s.done
	}
}

// dialer opens sessions, spreading them over loopback source addresses
// when asked (127.0.0.2, .3, …: each gives its own ~28,000 ephemeral
// ports) and retrying admission refusals (503/429 with Retry-After).
type dialer struct {
	tgt     target
	clients []*http.Client
	retryBy time.Duration // give up retrying refusals after this long
	// retries counts dials tried again: refused (503, 429) or failed
	// before an HTTP answer (a gateway closing connections over its
	// per-address cap, a reset), as clients reconnect.
	retries atomic.Int64
}

func newDialer(tgt target, sourceAddrs int, retryFor time.Duration) *dialer {
	d := &dialer{tgt: tgt, retryBy: retryFor}
	if sourceAddrs <= 1 {
		d.clients = []*http.Client{{}}
		return d
	}
	for i := range sourceAddrs {
		ip := net.IPv4(127, 0, byte((i+2)>>8), byte(i+2)) // 127.0.0.2, …, 127.0.1.0, …
		nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 10 * time.Second}
		d.clients = append(d.clients, &http.Client{Transport: &http.Transport{DialContext: nd.DialContext}})
	}
	return d
}

// errRefused is an admission refusal that outlived the retry window.
var errRefused = errors.New("refused")

// dial connects user to endpoint gw as connection number i (which picks
// the source address) and runs the target's handshake.
func (d *dialer) dial(ctx context.Context, i, gw int, user string) (*session, error) {
	u, err := d.tgt.url(ctx, gw, user)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(d.retryBy)
	backoff := 100 * time.Millisecond
	for {
		hc := d.clients[i%len(d.clients)]
		ws, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: hc, CompressionMode: websocket.CompressionDisabled})
		if err == nil {
			ws.SetReadLimit(1 << 20)
			s := &session{name: user, gw: gw, ws: ws, tgt: d.tgt, done: make(chan struct{})}
			hctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			err = d.tgt.handshake(hctx, s)
			cancel()
			if err != nil {
				_ = ws.CloseNow()
				return nil, fmt.Errorf("handshake %s: %w", user, err)
			}
			return s, nil
		}
		if resp != nil && resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusTooManyRequests {
			return nil, fmt.Errorf("dial %s: %w", user, err)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			if resp == nil {
				return nil, fmt.Errorf("dial %s: %w", user, err)
			}
			return nil, fmt.Errorf("dial %s: HTTP %d: %w", user, resp.StatusCode, errRefused)
		}
		d.retries.Add(1)
		wait := backoff
		if resp != nil {
			if secs, _ := strconv.Atoi(resp.Header.Get("Retry-After")); secs > 0 {
				wait = time.Duration(secs) * time.Second
			}
		}
		wait = time.Duration(rand.Int64N(int64(wait)) + 1) // full jitter
		backoff = min(backoff*2, 5*time.Second)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// dialMany opens n sessions with conc dials in flight: session i is user
// name(i) on endpoint gw(i). On an error it closes what it opened.
func (d *dialer) dialMany(ctx context.Context, n, conc int, name func(int) string, gw func(int) int) ([]*session, error) {
	out := make([]*session, n)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan int)
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range max(1, min(conc, n)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				s, err := d.dial(ctx, i, gw(i), name(i))
				mu.Lock()
				if err != nil && first == nil {
					first = fmt.Errorf("connection %d: %w", i, err)
					cancel()
				}
				out[i] = s
				mu.Unlock()
			}
		}()
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	if first != nil {
		for _, s := range out {
			if s != nil {
				s.closeNow(false)
			}
		}
		return nil, first
	}
	return out, nil
}
