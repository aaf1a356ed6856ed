package gateway

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// socketChunk is the size of the buffers a socket borrows: one read from
// the kernel, and the most a write batch holds before it is flushed.
const socketChunk = 16 << 10

// The WebSocket library gets its own bufio reader and writer over the
// socket; both stay tiny because the socket buffers itself, only while it
// holds bytes. Header and control frames fit in the writer's buffer.
const (
	wsReadBuffer  = 16
	wsWriteBuffer = 64
)

var chunkPool = sync.Pool{New: func() any { b := make([]byte, socketChunk); return &b }}

// socket is an upgraded connection as the WebSocket library sees it. It
// costs almost nothing while idle:
//
//   - Reads wait for data without a buffer (the descriptor's readiness,
//     through syscall.RawConn), then borrow a chunk from a pool and give
//     it back once it is consumed.
//   - Writes can be corked: while corked they are appended to a borrowed
//     buffer, and uncork writes the batch with one system call (several
//     frames per flush, no timer). Uncorked writes (pings, close frames)
//     go straight to the connection.
//   - abort makes a write in progress, and every later one, fail at once.
//
// Read is used by one goroutine at a time (the library's reader); the
// other methods are safe for concurrent use.
type socket struct {
	net.Conn
	raw syscall.RawConn // nil: plain blocking reads

	rbuf       *[]byte // borrowed while it holds unread bytes
	rpos, rend int
	rerr       error // to return once rbuf is consumed

	wmu    sync.Mutex // held for a write to the connection
	corked bool
	wbuf   *[]byte // borrowed while corked

	dmu     sync.Mutex // orders deadline changes with abort
	aborted atomic.Bool
}

// newSocket wraps nc; pending are bytes already read from it (the
// client's first frames may arrive with the handshake).
func newSocket(nc net.Conn, pending []byte) *socket {
	s := &socket{Conn: nc}
	inner := nc
	if u, ok := nc.(interface{ NetConn() net.Conn }); ok {
		inner = u.NetConn()
	}
	if sc, ok := inner.(syscall.Conn); ok && rawReads {
		if raw, err := sc.SyscallConn(); err == nil {
			s.raw = raw
		}
	}
	if len(pending) > 0 {
		s.rbuf = chunkPool.Get().(*[]byte)
		if len(pending) > len(*s.rbuf) {
			b := make([]byte, len(pending))
			s.rbuf = &b
		}
		s.rend = copy(*s.rbuf, pending)
	}
	return s
}

// Read serves buffered bytes first; with none, it waits for the socket to
// be readable before borrowing a buffer.
func (s *socket) Read(p []byte) (int, error) {
	if s.rbuf == nil {
		if s.rerr != nil {
			return 0, s.rerr
		}
		if len(p) >= socketChunk {
			return s.Conn.Read(p) // large reads need no buffer of ours
		}
		if err := s.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, (*s.rbuf)[s.rpos:s.rend])
	s.rpos += n
	if s.rpos == s.rend {
		s.releaseRead()
	}
	return n, nil
}

func (s *socket) releaseRead() {
	if s.rbuf != nil && cap(*s.rbuf) == socketChunk {
		chunkPool.Put(s.rbuf)
	}
	s.rbuf, s.rpos, s.rend = nil, 0, 0
}

// fill reads what the kernel holds into a borrowed chunk.
func (s *socket) fill() error {
	if s.raw == nil {
		b := chunkPool.Get().(*[]byte)
		n, err := s.Conn.Read(*b)
		if n == 0 {
			chunkPool.Put(b)
			return err
		}
		s.rbuf, s.rpos, s.rend, s.rerr = b, 0, n, err
		return nil
	}
	var (
		b    *[]byte
		n    int
		rerr error
	)
	err := s.raw.Read(func(fd uintptr) bool {
		b = chunkPool.Get().(*[]byte)
		n, rerr = readFD(fd, *b)
		if errors.Is(rerr, syscall.EAGAIN) {
			chunkPool.Put(b)
			return false // wait until readable
		}
		return true
	})
	switch {
	case err != nil:
		return err
	case rerr != nil:
		chunkPool.Put(b)
		return rerr
	case n <= 0:
		chunkPool.Put(b)
		s.rerr = io.EOF
		return io.EOF
	}
	s.rbuf, s.rpos, s.rend = b, 0, n
	return nil
}

// Write appends p to the batch while corked, else writes it.
func (s *socket) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.corked {
		*s.wbuf = append(*s.wbuf, p...)
		return len(p), nil
	}
	return s.Conn.Write(p)
}

// cork starts a batch: writes are buffered until uncork.
func (s *socket) cork() {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.corked = true
	if s.wbuf == nil {
		s.wbuf = chunkPool.Get().(*[]byte)
		*s.wbuf = (*s.wbuf)[:0]
	}
}

// uncork writes the batch, bounded by timeout, and gives its buffer back.
func (s *socket) uncork(timeout time.Duration) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.corked = false
	b := s.wbuf
	s.wbuf = nil
	if b == nil {
		return nil
	}
	defer func() {
		if cap(*b) == socketChunk {
			*b = (*b)[:socketChunk]
			chunkPool.Put(b)
		}
	}()
	if len(*b) == 0 {
		return nil
	}
	if err := s.setWriteDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	_, err := s.Conn.Write(*b)
	_ = s.setWriteDeadline(time.Time{})
	return err
}

var errAborted = errors.New("write aborted")

// setWriteDeadline sets the deadline unless the socket was aborted.
func (s *socket) setWriteDeadline(t time.Time) error {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	if s.aborted.Load() {
		return errAborted
	}
	return s.Conn.SetWriteDeadline(t)
}

// abort fails a write in progress, and every later write, at once. It
// never blocks on the connection.
func (s *socket) abort() {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	if !s.aborted.Swap(true) {
		_ = s.Conn.SetWriteDeadline(time.Unix(1, 0))
	}
}

// hijacker hands the WebSocket library a socket instead of net/http's
// connection and its two 4 KiB buffers, which the library would otherwise
// keep for the connection's life.
type hijacker struct {
	http.ResponseWriter
	sock *socket
}

func (h *hijacker) Unwrap() http.ResponseWriter { return h.ResponseWriter }

func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if err := brw.Writer.Flush(); err != nil {
		_ = nc.Close()
		return nil, nil, err
	}
	pending, _ := brw.Reader.Peek(brw.Reader.Buffered())
	h.sock = newSocket(nc, pending)
	return h.sock, bufio.NewReadWriter(bufio.NewReaderSize(h.sock, wsReadBuffer), bufio.NewWriterSize(h.sock, wsWriteBuffer)), nil
}
