package gateway

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// listener wraps the gateway's TCP listener with two defences against
// descriptor exhaustion:
//
//   - at most perIP connections per client address may be open and not yet
//     upgraded to WebSocket (idle keep-alives, requests in progress,
//     handshakes); one more is closed at once and counted. A hijacked
//     (WebSocket) connection stops counting: sockets are limited by
//     admission control and the session cap instead.
//   - an accept that fails for lack of descriptors (EMFILE, ENFILE,
//     ENOBUFS, ENOMEM) is retried after a backoff of 5 ms doubling to
//     1 s, counted, and logged once per episode, instead of ending Serve
//     or spinning.
//
// Safe for concurrent use.
type listener struct {
	net.Listener
	perIP   int // <= 0: unlimited
	log     *slog.Logger
	refused prometheus.Counter // connections over the per-address cap
	errs    prometheus.Counter // failed accepts for lack of resources

	mu   sync.Mutex
	open map[string]int // address → counted connections
	done chan struct{}  // closed by Close
	once sync.Once
}

func newListener(ln net.Listener, perIP int, log *slog.Logger, m *metrics) *listener {
	return &listener{
		Listener: ln, perIP: perIP, log: log,
		refused: m.acceptRefused, errs: m.acceptErrors,
		open: make(map[string]int), done: make(chan struct{}),
	}
}

// Accept returns the next connection within the per-address cap. It waits
// out a shortage of descriptors rather than failing.
func (l *listener) Accept() (net.Conn, error) {
	var backoff time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if !resourceShortage(err) {
				return nil, err
			}
			l.errs.Inc()
			if backoff == 0 {
				l.log.Warn("accept failed for lack of descriptors; backing off", "err", err)
				backoff = 5 * time.Millisecond
			} else {
				backoff = min(2*backoff, time.Second)
			}
			select {
			case <-time.After(backoff):
				continue
			case <-l.done:
				return nil, net.ErrClosed
			}
		}
		if backoff != 0 {
			l.log.Info("accepting again")
			backoff = 0
		}
		if tc, ok := l.admit(c); ok {
			return tc, nil
		}
		l.refused.Inc()
		_ = c.Close()
	}
}

// Close stops Accept, also one waiting out a shortage.
func (l *listener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// admit counts c against its address, or reports that the cap is reached.
func (l *listener) admit(c net.Conn) (net.Conn, bool) {
	if l.perIP <= 0 {
		return c, true
	}
	host := hostOf(c.RemoteAddr())
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[host] >= l.perIP {
		return nil, false
	}
	l.open[host]++
	return &countedConn{Conn: c, l: l, host: host}, true
}

func (l *listener) release(host string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[host]--; l.open[host] <= 0 {
		delete(l.open, host)
	}
}

// connState is the http.Server's ConnState hook: an upgraded connection
// stops counting against its address.
func (l *listener) connState(c net.Conn, st http.ConnState) {
	if cc, ok := c.(*countedConn); ok && st == http.StateHijacked {
		cc.releaseOnce()
	}
}

func hostOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// resourceShortage reports whether an accept failed for lack of
// descriptors or memory: worth waiting out.
func resourceShortage(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

// countedConn gives its address's slot back when closed or hijacked.
type countedConn struct {
	net.Conn
	l    *listener
	host string
	once sync.Once
}

// NetConn returns the accepted connection (its descriptor serves the
// WebSocket's reads, see socket).
func (c *countedConn) NetConn() net.Conn { return c.Conn }

func (c *countedConn) releaseOnce() { c.once.Do(func() { c.l.release(c.host) }) }

func (c *countedConn) Close() error {
	c.releaseOnce()
	return c.Conn.Close()
}
