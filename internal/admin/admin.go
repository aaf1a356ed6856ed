// Package admin is a service's operator listener, apart from its public
// port: /metrics, /healthz and /readyz, pprof when enabled, and whatever
// pages the service adds (the router's /ops). It listens on loopback unless
// configured otherwise, so that what it shows is not served to the world.
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config configures a Server.
type Config struct {
	// Addr is the listen address (ADMIN_ADDR). Required; see DefaultAddr.
	Addr string
	// Pprof serves net/http/pprof under /debug/pprof/ (ADMIN_PPROF).
	// Default false.
	Pprof bool
}

// DefaultAddr is the admin address beside public: loopback, on public's
// port plus offset (port 0 stays 0, any free port). The gateways use
// offset 1000 (:8080 → 127.0.0.1:9080), the router 100 (:9090 →
// 127.0.0.1:9190), so that the members of one `make run` never clash.
func DefaultAddr(public string, offset int) string {
	_, port, err := net.SplitHostPort(public)
	p, perr := strconv.Atoi(port)
	if err != nil || perr != nil || p == 0 {
		return "127.0.0.1:0"
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p+offset))
}

// Server is the admin listener. Handle may be called until Run starts.
type Server struct {
	ln  net.Listener
	mux *http.ServeMux
	log *slog.Logger
}

// New binds cfg.Addr and serves gatherer on /metrics, health on /healthz
// and ready on /readyz (the public port's own handlers).
func New(cfg Config, gatherer prometheus.Gatherer, health, ready http.HandlerFunc, log *slog.Logger) (*Server, error) {
	if cfg.Addr == "" {
		return nil, errors.New("admin: ADMIN_ADDR is empty")
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("ADMIN_ADDR %s: %w", cfg.Addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", health)
	mux.HandleFunc("GET /readyz", ready)
	if cfg.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{ln: ln, mux: mux, log: log}, nil
}

// Handle adds a route (a net/http pattern). Not safe once Run started.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Addr returns the address the listener is bound to.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Loopback reports whether the listener accepts only local connections.
func (s *Server) Loopback() bool {
	a, ok := s.ln.Addr().(*net.TCPAddr)
	return ok && a.IP.IsLoopback()
}

// Run serves until ctx ends, then shuts down (waiting up to 5s for
// requests in flight) and returns; it closes the listener.
func (s *Server) Run(ctx context.Context) error {
	srv := &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		// pprof's profile and trace run for ?seconds= (30 by default).
		WriteTimeout: 2 * time.Minute, IdleTimeout: 60 * time.Second, MaxHeaderBytes: 16 << 10,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(s.ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("admin serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	<-done
	return nil
}

// Close releases the listener of a Server that never ran.
func (s *Server) Close() error { return s.ln.Close() }

// Version is the running binary's version: the module version, else the
// VCS revision it was built from (12 digits, "+dirty" when modified), else
// "devel".
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if rev == "" {
		return "devel"
	}
	return rev[:min(12, len(rev))] + dirty
}
