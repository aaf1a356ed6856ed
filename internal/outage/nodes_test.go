//go:build integration

package outage

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/internal/auth"
	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/config"
	"github.com/switchboard-chat/switchboard/internal/gateway"
	"github.com/switchboard-chat/switchboard/internal/route"
	"github.com/switchboard-chat/switchboard/internal/router"
	"github.com/switchboard-chat/switchboard/internal/store"
)

// gw is a gateway running in-process against the test's infra, built as
// cmd/gateway builds it.
type gw struct {
	t       *testing.T
	id      chat.ServerID
	cfg     gateway.Config
	route   route.Config
	srv     *gateway.Server
	rdb     redis.UniversalClient
	cancel  context.CancelFunc
	stopped chan struct{}
	err     error
	once    sync.Once
}

// startGateway runs a gateway until the test ends and waits until it
// delivers through its own topic.
func (in *infra) startGateway(name string, tweak func(*gateway.Config)) *gw {
	t := in.t
	t.Helper()
	cfg := gateway.Config{
		ServerID: chat.ServerID(name), Addr: "127.0.0.1:0",
		PingInterval: 2 * time.Second, PingTimeout: 2 * time.Second,
		DrainWindow: 500 * time.Millisecond, ShutdownTimeout: 10 * time.Second,
		RedisTimeout: 2 * time.Second, ProduceTimeout: 5 * time.Second,
		MessageRate: -1, // the traffic comes in bursts
	}
	if tweak != nil {
		tweak(&cfg)
	}
	common := config.Common{KafkaBrokers: []string{in.kafkaAddr()}, RedisAddr: in.redisAddr(), RedisTimeout: cfg.RedisTimeout}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	rdb, err := common.ConnectRedis(ctx)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	rc := route.Config{Prefix: prefix, Lease: lease}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := gateway.New(cfg, gateway.Deps{
		Logger: log.With("gw", name), Registry: reg, Redis: rdb, Route: rc,
		Kafka: common.Kafka("gateway-" + name), Identity: auth.Open{},
	})
	if err != nil {
		rdb.Close()
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(context.Background())
	g := &gw{t: t, id: cfg.ServerID, cfg: cfg, route: rc, srv: srv, rdb: rdb, cancel: rcancel, stopped: make(chan struct{})}
	go func() { g.err = srv.Run(rctx); close(g.stopped) }()
	t.Cleanup(g.stop)
	g.waitDelivering(60 * time.Second)
	return g
}

// stop drains the gateway (as SIGTERM does: its clients are told to
// reconnect and closed) and waits for Run to return; it runs once.
func (g *gw) stop() {
	g.once.Do(func() {
		g.cancel()
		select {
		case <-g.stopped:
			if g.err != nil {
				g.t.Errorf("gateway %s: %v", g.id, g.err)
			}
		case <-time.After(30 * time.Second):
			g.t.Errorf("gateway %s did not stop within 30s", g.id)
		}
		g.rdb.Close()
	})
}

// rt is a router running in-process against the test's infra, built as
// cmd/router builds it, on the gateways' chat-log and key prefix.
type rt struct {
	t       *testing.T
	r       *router.Router
	rdb     redis.UniversalClient
	cancel  context.CancelFunc
	stopped chan struct{}
	err     error
	once    sync.Once
}

// startRouter runs a router until the test ends (or stop). Its janitor
// sweeps every 200 ms: that is when it notices that Redis lost its data.
func (in *infra) startRouter(tweak func(*router.Config)) *rt {
	t := in.t
	t.Helper()
	cfg := router.Config{Addr: "127.0.0.1:0", GroupID: "router", JanitorInterval: 200 * time.Millisecond}
	if tweak != nil {
		tweak(&cfg)
	}
	common := config.Common{KafkaBrokers: []string{in.kafkaAddr()}, RedisAddr: in.redisAddr(), RedisTimeout: 2 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	rdb, err := common.ConnectRedis(ctx)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r, err := router.New(cfg, router.Deps{
		Logger: log, Redis: rdb, Route: route.Config{Prefix: prefix, Lease: lease},
		Store: store.Config{Prefix: prefix}, Kafka: common.Kafka("router"),
	})
	if err != nil {
		rdb.Close()
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(context.Background())
	x := &rt{t: t, r: r, rdb: rdb, cancel: rcancel, stopped: make(chan struct{})}
	go func() { x.err = r.Run(rctx); close(x.stopped) }()
	t.Cleanup(x.stop)
	return x
}

// stop stops the router and waits for Run to return; it runs once.
func (x *rt) stop() {
	x.once.Do(func() {
		x.cancel()
		select {
		case <-x.stopped:
			if x.err != nil {
				x.t.Errorf("router: %v", x.err)
			}
		case <-time.After(30 * time.Second):
			x.t.Errorf("router did not stop within 30s")
		}
		x.rdb.Close()
	})
}

// restored reports whether the restored marker is in Redis: the seq
// counters are known to be at least the log's, and sends are accepted.
func (in *infra) restored() bool {
	ok, err := route.New(in.inspect, route.Config{Prefix: prefix, Lease: lease}).Restored(context.Background())
	return err == nil && ok
}

// latestSeq is the highest seq of conv the router has materialized.
func (in *infra) latestSeq(conv chat.ConvID) int64 {
	n, err := store.New(in.inspect, store.Config{Prefix: prefix}).Latest(context.Background(), conv)
	if err != nil {
		return -1
	}
	return n
}

// history is the messages of conv the router has materialized, oldest first.
func (in *infra) history(conv chat.ConvID) []*chat.Message {
	in.t.Helper()
	ms, err := store.New(in.inspect, store.Config{Prefix: prefix}).History(context.Background(), conv, 0, 10000)
	if err != nil {
		in.t.Errorf("history %s: %v", conv, err)
	}
	return ms
}
