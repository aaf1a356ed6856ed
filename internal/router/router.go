// Package router is Switchboard's materializer and janitor: it turns the
// chat-log topic into the Redis views and removes the sessions of gateways
// whose lease lapsed.
package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/internal/admin"
	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/config/setting"
	"github.com/switchboard-chat/switchboard/internal/health"
	"github.com/switchboard-chat/switchboard/internal/kafkabus"
	"github.com/switchboard-chat/switchboard/internal/relay"
	"github.com/switchboard-chat/switchboard/internal/route"
	"github.com/switchboard-chat/switchboard/internal/store"
)

// The live log is applied in batches: up to applyBatchMax records, those
// that arrive within applyLinger of the first. Under load a batch fills at
// once; a lone record waits applyLinger. The views are not on the delivery
// path, so the linger adds nothing to a message's latency.
//
// The router's fetches ask the broker to wait for applyFetchBytes, at most
// applyFetchWait: a record reaches the views at most that much later, and
// under load the broker answers a few large fetches instead of one per
// record, which cost it CPU the send path needs.
const (
	applyBatchMax   = 2000
	applyLinger     = time.Millisecond
	applyFetchBytes = 256 << 10
	applyFetchWait  = 20 * time.Millisecond
)

// Config configures a router. Zero fields take the defaults in their
// default tags (see package setting); key tags name the configuration keys.
type Config struct {
	// Addr serves /healthz and /readyz. Default ":9090".
	Addr string `key:"http_addr" default:":9090"`
	// AdminAddr serves /metrics, /healthz, /readyz, the ops page (/ops,
	// /ops.json) and, with AdminPprof, /debug/pprof/. Default
	// admin.DefaultAddr(Addr, 100): loopback, the public port plus 100.
	AdminAddr  string `key:"admin.addr"`
	AdminPprof bool   `key:"admin.pprof"`
	// AdminToken is the ops page's bearer token (Authorization: Bearer or
	// ?token=). Empty: the page is served only when AdminAddr is loopback.
	AdminToken string `key:"admin.token"`
	// AuditTopic is the gateways' audit topic, whose latest records the
	// ops page shows. Default "chat-audit".
	AuditTopic string `key:"kafka.audit_topic" default:"chat-audit"`
	// ChatLogTopic is the log of record. Default "chat-log".
	ChatLogTopic string `key:"kafka.chat_log_topic" default:"chat-log"`
	// ChatLogPartitions is used when the router creates chat-log. Default 4.
	ChatLogPartitions int `key:"kafka.chat_log_partitions" default:"4"`
	// ChatStateTopic is the compacted table of users and conversations.
	// Default "chat-state".
	ChatStateTopic string `key:"kafka.chat_state_topic" default:"chat-state"`
	// GroupID is the consumer group of every router replica. Default "router".
	GroupID string `key:"router.group_id" default:"router"`
	// JanitorInterval is how often dead gateways are looked for. Default 5s.
	JanitorInterval time.Duration `key:"router.janitor_interval" default:"5s"`
	// DeadAfter is how long past its lease a gateway is purged. Default 0:
	// as soon as the lease lapses.
	DeadAfter time.Duration `key:"router.dead_after" default:"0s"`
	// ApplyTimeout bounds one Redis apply. Default 5s.
	ApplyTimeout time.Duration `default:"5s"`
	// OrphanGrace is how long the topic of a dead gateway is kept for its
	// return (a restart with the same SERVER_ID resumes it); past it the
	// topic is deleted. Default 1h.
	OrphanGrace time.Duration `key:"router.orphan_grace" default:"1h"`
	// CheckpointTopic is the compacted topic of seq checkpoints that the
	// seq counters come back from after a Redis loss. Default
	// "chat-checkpoint", or "<ChatLogTopic>-checkpoint" when chat-log has
	// another name.
	CheckpointTopic string `key:"kafka.checkpoint_topic"`
	// CheckpointInterval is how often a checkpoint is written. Default 10s.
	CheckpointInterval time.Duration `key:"router.checkpoint_interval" default:"10s"`
	// RestoreCheck is how often the router checks whether Redis lost its
	// data. Default 1s.
	RestoreCheck time.Duration `default:"1s"`
	// RestoreGrace is how long after a Redis loss was detected a send that
	// took its seq from the old Redis may still reach the log: at least
	// the gateways' KAFKA_PRODUCE_TIMEOUT. Sends are accepted again no
	// earlier. Default 5s.
	RestoreGrace time.Duration `key:"kafka.produce_timeout" default:"5s"`
	// DedupeLookback is how far back in the log a restore brings the
	// dedupe records back before sends are accepted again (the rebuild
	// behind it restores the rest of the dedupe TTL). Default 60s.
	DedupeLookback time.Duration `key:"router.dedupe_lookback" default:"60s"`
	// RebuildChunk is how many chat-log records a rebuild aggregates
	// before writing them. Default 100000.
	RebuildChunk int `default:"100000"`
}

func (c *Config) setDefaults() {
	setting.Fill(c)
	if c.AdminAddr == "" {
		c.AdminAddr = admin.DefaultAddr(c.Addr, 100)
	}
	if c.CheckpointTopic == "" {
		var d Config
		setting.Fill(&d)
		c.CheckpointTopic = "chat-checkpoint"
		if c.ChatLogTopic != d.ChatLogTopic {
			c.CheckpointTopic = c.ChatLogTopic + "-checkpoint"
		}
	}
}

// Deps are the router's collaborators.
type Deps struct {
	Logger   *slog.Logger
	Registry *prometheus.Registry  // default: a private registry
	Redis    redis.UniversalClient // required
	Route    route.Config
	Store    store.Config
	Kafka    kafkabus.Config
}

// Router materializes the log and cleans up after dead gateways.
type Router struct {
	cfg      Config
	log      *slog.Logger
	reg      *prometheus.Registry
	table    *route.Table
	store    *store.Store
	admin    *kafkabus.Admin
	producer *kafkabus.Producer
	relay    *relay.Relay
	kafka    kafkabus.Config
	consumer atomic.Pointer[kafkabus.Consumer] // set by Run
	ln       net.Listener
	adminSrv *admin.Server
	ops      opsRates

	applied *prometheus.CounterVec
	purged  prometheus.Counter
	orphans prometheus.Gauge
	deleted prometheus.Counter

	checkpoints     prometheus.Counter
	rebuildRecords  prometheus.Counter
	rebuildProgress prometheus.Gauge
	restoreSeconds  prometheus.Gauge
	lastRebuild     atomic.Pointer[RebuildStats]
}

// New checks cfg, binds the HTTP listener and returns a router.
func New(cfg Config, deps Deps) (*Router, error) {
	cfg.setDefaults()
	if deps.Redis == nil {
		return nil, errors.New("router: Redis is required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Registry == nil {
		deps.Registry = prometheus.NewRegistry()
	}
	kadmin, err := kafkabus.NewAdmin(deps.Kafka)
	if err != nil {
		return nil, err
	}
	producer, err := kafkabus.NewProducer(deps.Kafka)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("HTTP_ADDR %s: %w", cfg.Addr, err)
	}
	r := &Router{
		cfg: cfg, log: deps.Logger.With("component", "router"), reg: deps.Registry,
		table: route.New(deps.Redis, deps.Route), store: store.New(deps.Redis, deps.Store),
		admin: kadmin, producer: producer, kafka: deps.Kafka, ln: ln,
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "router",
			Name: "applied_total", Help: "chat-log and chat-state records applied, by result (message, receipt, delete, user, conversation, skipped; error counts failed batch writes, which are retried)."}, []string{"result"}),
		purged: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "router",
			Name: "gateways_purged_total", Help: "Dead gateways whose sessions were removed."}),
		orphans: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "switchboard", Subsystem: "router",
			Name: "orphan_topics", Help: "Topics of dead gateways waiting out the grace period."}),
		deleted: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "router",
			Name: "orphan_topics_deleted_total", Help: "Topics of gateways that never returned, deleted."}),
		checkpoints: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "router",
			Name: "checkpoints_total", Help: "Seq checkpoints written to the checkpoint topic."}),
		rebuildRecords: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "router",
			Name: "rebuild_records_total", Help: "Records replayed into the views by rebuilds."}),
		rebuildProgress: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "switchboard", Subsystem: "router",
			Name: "rebuild_progress_ratio", Help: "Share of the log the current (or last) rebuild has replayed, 0 to 1."}),
		restoreSeconds: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "switchboard", Subsystem: "router",
			Name: "restore_seconds", Help: "Time from detecting the last Redis loss until sends were accepted again."}),
	}
	r.relay = relay.New(r.table, producer)
	r.reg.MustRegister(r.applied, r.purged, r.orphans, r.deleted, r.checkpoints, r.rebuildRecords, r.rebuildProgress, r.restoreSeconds, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "switchboard", Subsystem: "router", Name: "consumer_lag", Help: "Records behind the end of chat-log.",
	}, func() float64 {
		if c := r.consumer.Load(); c != nil {
			return float64(c.Lag())
		}
		return 0
	}))
	r.adminSrv, err = admin.New(admin.Config{Addr: cfg.AdminAddr, Pprof: cfg.AdminPprof}, r.reg, r.serveHealth, r.serveReady, r.log)
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	if cfg.AdminToken == "" && !r.adminSrv.Loopback() {
		r.log.Warn("ADMIN_TOKEN is empty and ADMIN_ADDR is not loopback: the ops page is refused", "admin", r.adminSrv.Addr().String())
	}
	r.adminSrv.Handle("GET /ops", r.opsAuth(http.HandlerFunc(r.serveOps)))
	r.adminSrv.Handle("GET /ops.json", r.opsAuth(http.HandlerFunc(r.serveOpsJSON)))
	return r, nil
}

// Addr returns the HTTP listen address.
func (r *Router) Addr() net.Addr { return r.ln.Addr() }

// AdminAddr returns the admin listen address (/metrics, /ops).
func (r *Router) AdminAddr() net.Addr { return r.adminSrv.Addr() }

// Run creates chat-log, then materializes it and runs the janitor until
// ctx is done. It returns after its goroutines have exited.
func (r *Router) Run(ctx context.Context) error {
	defer r.ln.Close()
	defer r.adminSrv.Close()
	setup, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := r.admin.EnsureTopics(setup, r.topics()...)
	cancel()
	if err != nil {
		return err
	}
	// The consumer joins its group at once, so it is made after the topic.
	consumer, err := kafkabus.NewConsumer(r.kafka, kafkabus.ConsumerConfig{
		Topics: []string{r.cfg.ChatLogTopic, r.cfg.ChatStateTopic}, GroupID: r.cfg.GroupID,
		MinBytes: applyFetchBytes, MaxWait: applyFetchWait,
	})
	if err != nil {
		return err
	}
	r.consumer.Store(consumer)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", r.serveHealth)
	mux.HandleFunc("GET /readyz", r.serveReady)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second, MaxHeaderBytes: 16 << 10}
	r.log.Info("router started", "addr", r.ln.Addr().String(), "admin", r.adminSrv.Addr().String(), "topic", r.cfg.ChatLogTopic)

	var wg sync.WaitGroup
	wg.Add(6)
	go func() { defer wg.Done(); _ = srv.Serve(r.ln) }()
	go func() { defer wg.Done(); _ = r.adminSrv.Run(ctx) }()
	go func() {
		defer wg.Done()
		consumer.ServeBatch(ctx, applyBatchMax, applyLinger, r.applyBatch, func(err error) { r.log.Warn("consumer stopped; restarting", "err", err) })
	}()
	go func() { defer wg.Done(); r.janitorLoop(ctx) }()
	go func() { defer wg.Done(); r.restoreLoop(ctx) }()
	go func() { defer wg.Done(); r.checkpointLoop(ctx) }()
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = srv.Shutdown(sctx)
	cancel()
	wg.Wait()
	if err := r.producer.Close(); err != nil {
		r.log.Warn("producer close", "err", err)
	}
	r.admin.Close()
	return consumer.Close()
}

func (r *Router) serveHealth(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) }

func (r *Router) serveReady(w http.ResponseWriter, req *http.Request) {
	checks, ok := health.Run(req.Context(), map[string]health.Check{"kafka": r.admin.Ping, "redis": r.table.Ping})
	health.Write(w, "router", checks, ok)
}

// topics are the topics the router reads, with the configs it creates
// them with.
func (r *Router) topics() []kafkabus.TopicSpec {
	return []kafkabus.TopicSpec{
		{Name: r.cfg.ChatLogTopic, Partitions: r.cfg.ChatLogPartitions},
		{Name: r.cfg.ChatStateTopic, Partitions: 1, Compact: true},
		{Name: r.cfg.CheckpointTopic, Partitions: 1, Compact: true, Segment: checkpointSegment},
	}
}

// applyBatch materializes a batch of chat-log and chat-state records,
// retrying Redis failures until they succeed or ctx ends: the log must not
// be skipped past, so a batch that was not applied is not committed.
// Writing a batch again is harmless (every write is idempotent).
func (r *Router) applyBatch(ctx context.Context, recs []kafkabus.Record) error {
	backoff := 50 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, r.cfg.ApplyTimeout)
		results, err := r.writeBatch(actx, recs)
		cancel()
		if err == nil {
			for result, n := range results {
				r.applied.WithLabelValues(result).Add(float64(n))
			}
			return nil
		}
		r.applied.WithLabelValues("error").Inc()
		r.log.Warn("apply failed; retrying", "records", len(recs), "offset", recs[0].Offset, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// writeBatch writes recs to the views in a few pipelined round trips: the
// chat-state records (users, conversations) first, then the chat-log
// records aggregated per conversation (store.Bulk: one script per
// conversation, plain commands for the rest). The two topics are
// independent; within each, records keep their log order. It counts the
// records by result for the applied_total metric. An undecodable record
// is skipped (and logged).
func (r *Router) writeBatch(ctx context.Context, recs []kafkabus.Record) (map[string]int, error) {
	results := make(map[string]int)
	bulk := r.store.NewBulk(r.cfg.ChatLogTopic)
	var states []*chat.StateRecord
	var statePos []store.Position
	for _, rec := range recs {
		if rec.Topic == r.cfg.ChatStateTopic {
			sr, err := chat.DecodeStateRecord(rec.Value)
			if err != nil {
				r.log.Warn("undecodable chat-state record", "offset", rec.Offset, "err", err)
				sr = nil // only raises the applied offset
			}
			states = append(states, sr)
			statePos = append(statePos, store.Position{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset})
			results[stateResult(sr)]++
			continue
		}
		lr, err := chat.DecodeLogRecord(rec.Value)
		if err != nil {
			r.log.Warn("undecodable chat-log record", "partition", rec.Partition, "offset", rec.Offset, "err", err)
			lr = nil // only raises the applied offset
		}
		bulk.Add(lr, rec.Partition, rec.Offset)
		results[logResult(lr)]++
	}
	if len(states) > 0 {
		if err := r.store.BulkEntities(ctx, states, statePos); err != nil {
			return nil, err
		}
	}
	if bulk.Len() > 0 {
		if err := bulk.Write(ctx); err != nil {
			return nil, err
		}
	}
	return results, nil
}

// stateResult and logResult name a record for the applied_total metric.
func stateResult(sr *chat.StateRecord) string {
	switch {
	case sr == nil:
		return "skipped"
	case sr.Type == chat.TypeUser:
		return "user"
	case sr.Type == chat.TypeConversation:
		return "conversation"
	}
	return "skipped"
}

func logResult(lr *chat.LogRecord) string {
	if lr == nil {
		return "skipped"
	}
	switch lr.Type {
	case chat.TypeMessage:
		return "message"
	case chat.TypeReceipt:
		return "receipt"
	case chat.TypeDelete:
		return "delete"
	}
	return "skipped"
}

// janitorLoop purges gateways whose lease lapsed.
func (r *Router) janitorLoop(ctx context.Context) {
	every(ctx, r.cfg.JanitorInterval, false, func() bool { r.sweep(ctx); return true })
}

// every calls f every d (and at once if now) until ctx ends or f returns
// false.
func every(ctx context.Context, d time.Duration, now bool, f func() bool) {
	if now && !f() {
		return
	}
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if ctx.Err() != nil || !f() {
			return
		}
	}
}

// sweep purges the sessions of gateways whose lease lapsed, tells their
// users' peers who went offline, and handles the dead gateways' topics.
func (r *Router) sweep(ctx context.Context) {
	dead, err := r.table.DeadGateways(ctx, r.cfg.DeadAfter)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("janitor: list gateways", "err", err)
		}
		return
	}
	for _, gw := range dead {
		if err := r.table.MarkDead(ctx, gw); err != nil {
			r.log.Warn("janitor: mark dead", "gateway", gw, "err", err)
			continue
		}
		gone, err := r.table.PurgeGateway(ctx, gw)
		if err != nil {
			r.log.Warn("janitor: purge", "gateway", gw, "err", err)
			continue
		}
		r.purged.Inc()
		r.log.Info("janitor: purged dead gateway", "gateway", gw, "users_offline", len(gone),
			"topic", gw.Topic(), "topic_deleted_after", r.cfg.OrphanGrace)
		for _, u := range gone {
			if err := r.relay.Presence(ctx, r.store, u, false); err != nil {
				r.log.Warn("janitor: offline presence", "user", u, "err", err)
			}
		}
	}
	r.sweepOrphans(ctx)
}

// sweepOrphans deletes the topics of gateways dead for longer than the
// grace period, and forgets gateways that came back.
func (r *Router) sweepOrphans(ctx context.Context) {
	deadSince, err := r.table.Dead(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("janitor: list dead gateways", "err", err)
		}
		return
	}
	live, err := r.table.LiveGateways(ctx)
	if err != nil {
		r.log.Warn("janitor: list live gateways", "err", err)
		return
	}
	for _, gw := range live {
		if _, ok := deadSince[gw]; ok {
			r.log.Info("janitor: gateway returned; keeping its topic", "gateway", gw)
			_ = r.table.ForgetDead(ctx, gw)
			delete(deadSince, gw)
		}
	}
	for gw, since := range deadSince {
		if time.Since(since) < r.cfg.OrphanGrace {
			continue
		}
		if err := r.admin.DeleteTopics(ctx, gw.Topic()); err != nil {
			r.log.Warn("janitor: delete orphaned topic", "topic", gw.Topic(), "err", err)
			continue
		}
		_ = r.table.ForgetDead(ctx, gw)
		delete(deadSince, gw)
		r.deleted.Inc()
		r.log.Info("janitor: deleted orphaned topic", "topic", gw.Topic(), "dead_since", since)
	}
	r.orphans.Set(float64(len(deadSince)))
}
