// Package gateway is Switchboard's WebSocket edge: the HTTP server, the
// handshake, per-connection read and write loops, the local hub that fans
// deliveries out to sessions, and the drain on shutdown.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"path"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/internal/admin"
	"github.com/switchboard-chat/switchboard/internal/audit"
	"github.com/switchboard-chat/switchboard/internal/auth"
	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/config/setting"
	"github.com/switchboard-chat/switchboard/internal/history"
	"github.com/switchboard-chat/switchboard/internal/kafkabus"
	"github.com/switchboard-chat/switchboard/internal/relay"
	"github.com/switchboard-chat/switchboard/internal/route"
	"github.com/switchboard-chat/switchboard/internal/store"
)

// Config configures a gateway. Zero fields take the defaults in their
// default tags (see package setting); key tags name the configuration keys.
type Config struct {
	// ServerID names this gateway; its topic is messages-<ServerID>. Required.
	ServerID chat.ServerID `key:"server_id"`
	// Addr is the HTTP listen address. Default ":8080".
	Addr string `key:"http_addr" default:":8080"`
	// AllowedOrigins are the browser origins whose pages may open
	// WebSockets and call the REST API (CORS): patterns such as
	// "https://chat.example.com", "https://*.example.com" or a bare host
	// pattern "chat.example.com" (http and https); see originMatcher.
	// Nothing is derived from the request. Default DefaultAllowedOrigins
	// (loopback pages on any port).
	AllowedOrigins []string `key:"allowed_origins"`
	// ChatLogTopic is the log of record. Default "chat-log".
	ChatLogTopic string `key:"kafka.chat_log_topic" default:"chat-log"`
	// ChatLogPartitions is used when the gateway creates chat-log. Default 4.
	ChatLogPartitions int `key:"kafka.chat_log_partitions" default:"4"`
	// ChatStateTopic is the compacted table of users and conversations.
	// Default "chat-state".
	ChatStateTopic string `key:"kafka.chat_state_topic" default:"chat-state"`
	// TopicPartitions of this gateway's topic. Default 1.
	TopicPartitions int `key:"kafka.topic_partitions" default:"1"`
	// TopicRetention of this gateway's topic. Default 24h.
	TopicRetention time.Duration `key:"kafka.topic_retention" default:"24h"`
	// SendQueueBytes is how many bytes of frames may wait for one
	// connection's socket (queued, or being written) before it is closed
	// as a slow consumer (4000); typing and presence are shed once half of
	// it is used. Frames shared by many connections (a public message) are
	// counted in full by each. A frame always fits an empty queue. Default
	// 1 MiB: about 4,000 typical message frames, several seconds of a busy
	// conversation for a client that is reading.
	SendQueueBytes int `key:"gateway.send_queue_bytes" default:"1048576"`
	// Inbox is how many sends of one connection may wait for the send path
	// before reading from it pauses. Default 64.
	Inbox int `default:"64"`
	// PingInterval between WebSocket pings. Default 20s.
	PingInterval time.Duration `key:"gateway.ping_interval" default:"20s"`
	// PingTimeout closes a connection whose pong is this late. Default 10s.
	PingTimeout time.Duration `key:"gateway.ping_timeout" default:"10s"`
	// WriteTimeout bounds one frame write. Default 10s.
	WriteTimeout time.Duration `default:"10s"`
	// ProduceTimeout bounds a send's Kafka produce; past it the client gets
	// unavailable. Default 5s.
	ProduceTimeout time.Duration `key:"kafka.produce_timeout" default:"5s"`
	// RedisTimeout bounds a Redis round trip. Default 2s.
	RedisTimeout time.Duration `key:"redis.timeout" default:"2s"`
	// SyncRecent is how many recent messages a sync returns for a
	// conversation the client does not name (a new device, a new
	// conversation). Named conversations get everything after their seq
	// that the views hold. Default 50.
	SyncRecent int `default:"50"`
	// SyncWait bounds how long a sync waits for the router to apply the
	// log up to the moment the sync began. Default 5s.
	SyncWait time.Duration `default:"5s"`
	// SyncSeqWait bounds how long a sync then waits for the views to hold
	// the last seq handed out in each conversation (a send still in
	// flight). Default 1s.
	SyncSeqWait time.Duration `default:"1s"`
	// DrainWindow spreads clients' reconnects on shutdown. Default 5s.
	DrainWindow time.Duration `key:"gateway.drain_window" default:"5s"`
	// ShutdownTimeout bounds the whole drain. Default 20s.
	ShutdownTimeout time.Duration `key:"gateway.shutdown_timeout" default:"20s"`
	// ConnectRate and ConnectBurst bound new connections per second
	// (admission control). Defaults 1000 and 2000: 20,000 clients
	// dropped at once are back on two gateways within about 10 s.
	ConnectRate  float64 `key:"gateway.connect_rate" default:"1000"`
	ConnectBurst int     `key:"gateway.connect_burst" default:"2000"`
	// HTTPReadTimeout bounds reading one request, body included;
	// HTTPWriteTimeout writing its answer; HTTPIdleTimeout how long a
	// keep-alive connection may wait for its next request. None applies
	// to a WebSocket once upgraded. Defaults 30s, 30s, 60s.
	HTTPReadTimeout  time.Duration `key:"http.read_timeout" default:"30s"`
	HTTPWriteTimeout time.Duration `key:"http.write_timeout" default:"30s"`
	HTTPIdleTimeout  time.Duration `key:"http.idle_timeout" default:"60s"`
	// MaxHeaderBytes bounds a request's line and headers together (431
	// beyond; at least 4 KiB pass). Default 16 KiB.
	MaxHeaderBytes int `key:"http.max_header_bytes" default:"16384"`
	// MaxConnsPerIP bounds the TCP connections of one client address that
	// are not WebSockets (keep-alives, requests, handshakes); more are
	// closed at accept. Negative: unlimited. Default 256.
	MaxConnsPerIP int `key:"gateway.max_conns_per_ip" default:"256" negative:"unlimited"`
	// MessageRate and MessageBurst are each user's token bucket for sends
	// on this gateway (shared by the user's connections and REST sends here). Negative
	// rate: unlimited. Defaults 50 per second, burst 100.
	MessageRate  float64 `key:"gateway.message_rate" default:"50" negative:"unlimited"`
	MessageBurst int     `key:"gateway.message_burst" default:"100"`
	// SyncRate and SyncBurst are each user's token bucket for syncs on
	// this gateway: a sync costs 1 + (its conversations / 100) tokens, so
	// a user syncing 1,000 conversations over and over cannot crowd out
	// everyone else's sends. Negative rate: unlimited. Defaults 5 per
	// second, burst 50.
	SyncRate  float64 `key:"gateway.sync_rate" default:"5" negative:"unlimited"`
	SyncBurst int     `key:"gateway.sync_burst" default:"50"`
	// MaxSessionsPerUser bounds a user's sessions on live gateways,
	// checked at the handshake (429 beyond). Negative: unlimited.
	// Default 20.
	MaxSessionsPerUser int `key:"gateway.max_sessions_per_user" default:"20" negative:"unlimited"`
	// MaxBodyBytes bounds a REST request body (413 beyond). Default
	// 64 KiB.
	MaxBodyBytes int64 `key:"http.max_body_bytes" default:"65536"`
	// AuditTopic receives audit records. Default "chat-audit".
	AuditTopic string `key:"kafka.audit_topic" default:"chat-audit"`
	// LoginPerUser and LoginPerIP bound register and login attempts per
	// named user and per client address (429 beyond). Defaults 5 with one
	// more every 12s, and 20 with one more every 3s; see auth.LimitsConfig.
	LoginPerUser auth.Limit
	LoginPerIP   auth.Limit
	// Static is the web client served at /. Optional.
	Static fs.FS
	// AdminAddr is the admin listener's address: /metrics, /healthz,
	// /readyz and, with AdminPprof, /debug/pprof/. Default
	// admin.DefaultAddr(Addr, 1000): loopback, the public port plus 1000.
	AdminAddr  string `key:"admin.addr"`
	AdminPprof bool   `key:"admin.pprof"`
}

func (c *Config) setDefaults() error {
	if _, err := chat.ParseServerID(string(c.ServerID)); err != nil {
		return fmt.Errorf("SERVER_ID: %w", err)
	}
	setting.Fill(c)
	if c.AdminAddr == "" {
		c.AdminAddr = admin.DefaultAddr(c.Addr, 1000)
	}
	for _, o := range c.AllowedOrigins {
		if _, err := path.Match(o, ""); err != nil {
			return fmt.Errorf("ALLOWED_ORIGINS: bad pattern %q: %w", o, err)
		}
	}
	return nil
}

// Deps are the gateway's collaborators.
type Deps struct {
	Logger   *slog.Logger          // default: discard
	Registry prometheus.Registerer // default: a private registry
	Redis    redis.UniversalClient // required
	Route    route.Config
	Kafka    kafkabus.Config
	Identity auth.Identity // required
	// Tokens issues the tokens of register and login; nil turns accounts
	// off (open auth mode: those endpoints answer 404).
	Tokens *auth.Tokens
	// Hasher hashes passwords. Default auth.NewHasher with DefaultParams.
	Hasher *auth.Hasher
}

// Server is one gateway. Create it with New and start it with Run.
type Server struct {
	cfg      Config
	log      *slog.Logger
	m        *metrics
	gatherer prometheus.Gatherer
	table    *route.Table
	store    *store.Store
	history  *history.Reader
	logRead  *kafkabus.Reader // chat-log by offset, for history
	relay    *relay.Relay
	admin    *kafkabus.Admin
	producer *kafkabus.Producer
	kafka    kafkabus.Config
	consumer atomic.Pointer[kafkabus.Consumer] // set by Run
	identity auth.Identity
	accounts *accounts
	hub      *hub
	groups   *groupIndex
	admit    *bucket
	ln       *listener
	adminSrv *admin.Server
	started  time.Time
	origins  originMatcher
	audit    *audit.Log
	// sendLimits is the per-user message rate on this gateway.
	sendLimits *sendLimits
	members    members
	views      *views
	// stages serve the connections' requests (and the REST API's sends
	// and receipts).
	stages *stages

	forwards chan forward // to forwardLoop

	draining atomic.Bool
	conns    sync.WaitGroup // every conn.run
}

// New checks cfg, binds the listener and returns a gateway. It does not
// contact Kafka or Redis; Run does.
func New(cfg Config, deps Deps) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if deps.Redis == nil || deps.Identity == nil {
		return nil, errors.New("gateway: Redis and Identity are required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	reg, gatherer := registries(deps.Registry)
	producer, err := kafkabus.NewProducer(deps.Kafka)
	if err != nil {
		return nil, err
	}
	kadmin, err := kafkabus.NewAdmin(deps.Kafka)
	if err != nil {
		return nil, err
	}
	logRead, err := kafkabus.NewReader(deps.Kafka, kafkabus.ReaderConfig{Topic: cfg.ChatLogTopic})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("HTTP_ADDR %s: %w", cfg.Addr, err)
	}
	s := &Server{
		cfg:        cfg,
		log:        deps.Logger.With("server", cfg.ServerID),
		gatherer:   gatherer,
		table:      route.New(deps.Redis, deps.Route),
		store:      store.New(deps.Redis, store.Config{Prefix: deps.Route.Prefix}),
		logRead:    logRead,
		admin:      kadmin,
		producer:   producer,
		kafka:      deps.Kafka,
		identity:   deps.Identity,
		hub:        newHub(),
		groups:     newGroupIndex(),
		admit:      newBucket(cfg.ConnectRate, cfg.ConnectBurst),
		origins:    newOriginMatcher(cfg.AllowedOrigins),
		forwards:   make(chan forward, forwardQueue),
		started:    time.Now(),
		sendLimits: newSendLimits(cfg.MessageRate, cfg.MessageBurst),
	}
	s.relay = relay.New(s.table, producer)
	s.history = history.New(s.store, logRead)
	s.m = newMetrics(reg, func() float64 {
		if c := s.consumer.Load(); c != nil {
			return float64(c.Lag())
		}
		return 0
	})
	s.members = members{store: s.store, timeout: cfg.RedisTimeout, log: s.log}
	s.views = &views{store: s.store, table: s.table, wait: cfg.SyncWait, seqWait: cfg.SyncSeqWait, log: s.log, m: s.m,
		end: newCoalesced(func(ctx context.Context) (map[int]int64, error) {
			ctx, cancel := context.WithTimeout(ctx, cfg.SyncWait)
			defer cancel()
			return kadmin.EndOffsets(ctx, cfg.ChatLogTopic)
		}),
		applied: newCoalesced(func(ctx context.Context) (map[int]int64, error) {
			ctx, cancel := context.WithTimeout(ctx, cfg.RedisTimeout)
			defer cancel()
			return s.store.Applied(ctx, cfg.ChatLogTopic)
		}),
	}
	send := &sendPath{logTopic: cfg.ChatLogTopic, stateTopic: cfg.ChatStateTopic, produceTimeout: cfg.ProduceTimeout,
		redisTimeout: cfg.RedisTimeout, log: s.log, m: s.m, table: s.table, producer: producer}
	send.commits = newCommitter(send)
	s.stages = &stages{
		send: send,
		sync: &syncStage{recent: cfg.SyncRecent, log: s.log, m: s.m, store: s.store,
			table: s.table, reader: s.history, views: s.views,
			budget: newSendLimits(cfg.SyncRate, cfg.SyncBurst), large: make(chan struct{}, maxLargeSyncs)},
		history: &historyStage{members: s.members, views: s.views, reader: s.history, log: s.log, m: s.m},
		events: &eventStage{logTopic: cfg.ChatLogTopic, redisTimeout: cfg.RedisTimeout, produceTimeout: cfg.ProduceTimeout,
			log: s.log, m: s.m, table: s.table, relay: s.relay, members: s.members},
	}
	s.accounts = newAccounts(deps.Tokens, deps.Hasher, auth.LimitsConfig{PerUser: cfg.LoginPerUser, PerIP: cfg.LoginPerIP}, reg)
	s.ln = newListener(ln, cfg.MaxConnsPerIP, s.log, s.m)
	s.audit = audit.New(audit.Config{Topic: cfg.AuditTopic, Server: cfg.ServerID, Timeout: cfg.ProduceTimeout}, producer, s.log, reg)
	s.adminSrv, err = admin.New(admin.Config{Addr: cfg.AdminAddr, Pprof: cfg.AdminPprof}, gatherer, s.serveHealth, s.serveReady, s.log)
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	return s, nil
}

// registries returns reg (or a new registry) and the matching gatherer for
// /metrics.
func registries(reg prometheus.Registerer) (prometheus.Registerer, prometheus.Gatherer) {
	if reg == nil {
		r := prometheus.NewRegistry()
		return r, r
	}
	if g, ok := reg.(prometheus.Gatherer); ok {
		return reg, g
	}
	return reg, prometheus.NewRegistry()
}

// Addr returns the address the gateway listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// AdminAddr returns the admin listener's address (/metrics).
func (s *Server) AdminAddr() net.Addr { return s.adminSrv.Addr() }

// Run creates the gateway's topics, joins the live registry, serves until
// ctx is done, then drains. It returns after every goroutine it started has
// exited.
func (s *Server) Run(ctx context.Context) error {
	defer s.ln.Close()
	defer s.adminSrv.Close()
	setup, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := s.admin.EnsureTopics(setup,
		kafkabus.TopicSpec{Name: s.cfg.ServerID.Topic(), Partitions: s.cfg.TopicPartitions, Retention: s.cfg.TopicRetention},
		kafkabus.TopicSpec{Name: s.cfg.ChatLogTopic, Partitions: s.cfg.ChatLogPartitions},
		kafkabus.TopicSpec{Name: s.cfg.ChatStateTopic, Partitions: 1, Compact: true},
		kafkabus.TopicSpec{Name: s.cfg.AuditTopic, Partitions: 1},
	)
	if err == nil {
		err = s.markRestoredIfEmpty(setup)
	}
	if err == nil {
		_, err = s.table.Heartbeat(setup, s.cfg.ServerID)
	}
	cancel()
	if err == nil {
		s.announce(ctx)
	}
	if err != nil {
		_ = s.producer.Close()
		return err
	}
	// The consumer joins its group as soon as it exists, so it is made
	// only once the topic is there.
	consumer, err := kafkabus.NewConsumer(s.kafka, kafkabus.ConsumerConfig{
		Topic: s.cfg.ServerID.Topic(), GroupID: "ws-server-group-" + string(s.cfg.ServerID),
	})
	if err != nil {
		return err
	}
	s.consumer.Store(consumer)
	s.log.Info("gateway started", "addr", s.ln.Addr().String(), "admin", s.adminSrv.Addr().String(), "topic", s.cfg.ServerID.Topic())

	// connCtx outlives ctx so that the drain can still talk to clients.
	connCtx, stopConns := context.WithCancel(context.WithoutCancel(ctx))
	defer stopConns()
	// The timeouts end idle keep-alives and slow requests; a WebSocket is
	// hijacked, which clears them (its liveness is the ping loop's).
	srv := &http.Server{
		Handler:           s.secure(s.routes(connCtx)),
		ReadHeaderTimeout: min(10*time.Second, s.cfg.HTTPReadTimeout),
		ReadTimeout:       s.cfg.HTTPReadTimeout,
		WriteTimeout:      s.cfg.HTTPWriteTimeout,
		IdleTimeout:       s.cfg.HTTPIdleTimeout,
		MaxHeaderBytes:    max(s.cfg.MaxHeaderBytes-headerSlack, 1),
		ConnState:         s.ln.connState,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return connCtx },
	}
	bg, stopBg := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(7)
	serveErr := make(chan error, 1)
	go func() { defer wg.Done(); s.stages.send.commits.loop(bg) }()
	go func() { defer wg.Done(); serveErr <- srv.Serve(s.ln) }()
	go func() { defer wg.Done(); _ = s.adminSrv.Run(bg) }()
	go func() { defer wg.Done(); s.heartbeatLoop(bg) }()
	go func() { defer wg.Done(); s.audit.Run(bg) }()
	go func() { defer wg.Done(); s.forwardLoop(bg) }()
	go func() {
		defer wg.Done()
		consumer.Serve(bg, s.deliver, func(err error) { s.log.Warn("consumer stopped; restarting", "err", err) })
	}()

	select {
	case <-ctx.Done():
	case err = <-serveErr:
		err = fmt.Errorf("serve: %w", err)
	}
	s.drain(srv, stopConns)
	// The consumer, forwarder and heartbeat stop before the producer closes
	// and the registration is removed: nothing produces into a closed
	// producer, and nothing registers the gateway again.
	stopBg()
	wg.Wait()
	if cerr := consumer.Close(); cerr != nil {
		s.log.Warn("consumer close", "err", cerr)
	}
	s.finish()
	s.admin.Close()
	_ = s.logRead.Close()
	return err
}

// heartbeatLoop renews the gateway's lease every third of it.
//
// After a failed heartbeat it tries again every lease/15 instead: once
// Redis answers again the gateway is registered (and its sessions are, if
// the janitor purged them meanwhile) within a fraction of a heartbeat, so
// live delivery resumes promptly after an outage longer than the lease.
func (s *Server) heartbeatLoop(ctx context.Context) {
	every, retry := s.table.Lease()/3, s.table.Lease()/15
	t := time.NewTimer(every)
	defer t.Stop()
	pending := false // sessions still to register again
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			hctx, cancel := context.WithTimeout(ctx, s.cfg.RedisTimeout)
			lost, err := s.table.Heartbeat(hctx, s.cfg.ServerID)
			cancel()
			if err != nil {
				s.log.Warn("heartbeat failed", "err", err)
				t.Reset(retry)
				continue
			}
			if lost || pending {
				pending = !s.reregister(ctx)
			}
			s.announce(ctx)
			if pending {
				t.Reset(retry)
			} else {
				t.Reset(every)
			}
		}
	}
}

// announce publishes this gateway's info for the router's ops page.
func (s *Server) announce(ctx context.Context) {
	var m dto.Metric
	_ = s.m.disconnects.WithLabelValues(reasonSlowConsumer.label).Write(&m)
	var conns dto.Metric
	_ = s.m.connections.Write(&conns)
	actx, cancel := context.WithTimeout(ctx, s.cfg.RedisTimeout)
	defer cancel()
	err := s.table.Announce(actx, s.cfg.ServerID, route.GatewayInfo{
		Version: admin.Version(), AdminAddr: s.adminSrv.Addr().String(), Started: s.started,
		Connections: int64(conns.GetGauge().GetValue()), SlowConsumers: int64(m.GetCounter().GetValue()),
	})
	if err != nil {
		s.log.Warn("announce failed", "err", err)
	}
}

// markRestoredIfEmpty lets a new cluster send before any router ran; with a
// non-empty log only a router rebuild sets the restored marker.
func (s *Server) markRestoredIfEmpty(ctx context.Context) error {
	ok, err := s.table.MarkRestoredIfLogEmpty(ctx, true, func(ctx context.Context) (map[int]int64, error) {
		return s.admin.EndOffsets(ctx, s.cfg.ChatLogTopic)
	})
	if err == nil && !ok {
		s.log.Warn("Redis lost its routing state; sends answer unavailable until a router restores it from the log")
	}
	return err
}

// reregister writes every local session to Redis again, after the
// gateway's registration was found missing (its lease lapsed and the
// janitor purged it, or Redis lost its data). It reports success.
func (s *Server) reregister(ctx context.Context) bool {
	conns := s.hub.snapshot()
	s.log.Warn("registration was lost; registering sessions again", "sessions", len(conns))
	for _, c := range conns {
		rctx, cancel := context.WithTimeout(ctx, s.cfg.RedisTimeout)
		_, err := s.table.AddSession(rctx, c.user, c.session, s.cfg.ServerID)
		cancel()
		if err != nil {
			s.log.Warn("register session again failed", "user", c.user, "err", err)
			return false // the next heartbeat retries
		}
	}
	// The membership index went with them: this gateway's presence in the
	// index of every group with members connected here.
	if err := s.syncGroups(ctx, s.groups.local()); err != nil {
		s.log.Warn("membership index rewrite failed", "err", err)
		return false
	}
	return true
}

// drain starts a graceful stop: readiness goes false, new connections are
// refused, and every client is told to reconnect (spread over the drain
// window) and closed with 1001. Run then stops its loops and calls finish.
func (s *Server) drain(srv *http.Server, stopConns context.CancelFunc) {
	s.draining.Store(true)
	deadline := time.Now().Add(s.cfg.ShutdownTimeout)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	conns := s.hub.snapshot()
	s.log.Info("draining", "connections", len(conns))
	_ = srv.Shutdown(ctx) // stops the listener; does not wait for WebSockets
	for i, c := range conns {
		after := s.cfg.DrainWindow.Milliseconds() * int64(i) / int64(max(len(conns), 1))
		c.enqueue(encodeReconnect(after), essential)
		c.close(reasonDrain)
	}
	done := make(chan struct{})
	go func() { s.conns.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.log.Warn("drain timed out; closing the remaining connections")
		stopConns()
		<-done
	}
}

// finish flushes the producer and removes the gateway's sessions and
// registration; the last step of a drain.
func (s *Server) finish() {
	if err := s.producer.Close(); err != nil {
		s.log.Warn("producer close", "err", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.table.PurgeGateway(ctx, s.cfg.ServerID); err != nil {
		s.log.Warn("remove sessions", "err", err)
	}
	s.log.Info("drained")
}

// headerSlack is what net/http reads past Server.MaxHeaderBytes before it
// answers 431; it is taken off Config.MaxHeaderBytes so that the
// configured bound is the one that holds.
const headerSlack = 4096
