//go:build integration

// Package e2e runs gateways and routers in-process against the real Kafka
// broker and Redis that `make test` starts (SWITCHBOARD_KAFKA,
// SWITCHBOARD_REDIS; defaults 127.0.0.1:9092 and 127.0.0.1:6379). Every
// test gets its own SERVER_IDs, chat-log topic and Redis key prefix, and
// deletes its topics and keys when it ends.
package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/internal/auth"
	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/gateway"
	"github.com/switchboard-chat/switchboard/internal/kafkabus"
	"github.com/switchboard-chat/switchboard/internal/route"
	"github.com/switchboard-chat/switchboard/internal/router"
	"github.com/switchboard-chat/switchboard/internal/store"
	"github.com/switchboard-chat/switchboard/internal/testkit"
	"github.com/switchboard-chat/switchboard/internal/wsclient"
)

var (
	kafkaAddr = testkit.KafkaAddr()
	runID     = strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	counter   atomic.Int64
)

// cluster is one test's isolated Switchboard deployment.
type cluster struct {
	t       testing.TB
	name    string
	prefix  string
	chatLog string
	// chatState is this cluster's chat-state topic.
	chatState string
	rdb       redis.UniversalClient
	admin     *kafkabus.Admin
	log       *slog.Logger
	topics    []string
	// historyWindow is the routers' window (0: the default).
	historyWindow int
	// tokens puts the gateways started after it is set in jwt auth mode
	// (nil: open mode).
	tokens *auth.Tokens
}

func newCluster(t testing.TB) *cluster {
	t.Helper()
	name := fmt.Sprintf("t%s-%d", runID, counter.Add(1))
	c := &cluster{
		t: t, name: name, prefix: "test:" + name + ":", chatLog: "chat-log-" + name, chatState: "chat-state-" + name,
		log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	c.rdb, c.admin = testkit.Connect(t, "e2e")
	c.topics = append(c.topics, c.chatLog, c.chatState, c.chatLog+"-checkpoint") // the router's default checkpoint topic
	t.Cleanup(c.cleanup)
	return c
}

func (c *cluster) kafka() kafkabus.Config {
	return kafkabus.Config{Brokers: []string{kafkaAddr}, ClientID: "e2e"}
}

func (c *cluster) routeConfig() route.Config {
	return route.Config{Prefix: c.prefix, Lease: 3 * time.Second}
}

func (c *cluster) cleanup() {
	testkit.DropNamespace(c.t, c.admin, c.rdb, c.prefix, c.topics)
	c.admin.Close()
	c.rdb.Close()
}

// gw is a running gateway.
type gw struct {
	id      chat.ServerID
	srv     *gateway.Server
	cancel  context.CancelFunc
	stopped chan struct{} // closed when Run has returned
	err     error         // what Run returned
	tokens  *auth.Tokens  // jwt mode; nil: open
}

// startGateway runs a gateway named <name>-<cluster> until the test ends,
// and waits until it delivers through its own topic.
func (c *cluster) startGateway(name string, tweak ...func(*gateway.Config)) *gw {
	c.t.Helper()
	g := c.launchGateway(name, tweak...)
	c.waitReady(g)
	return g
}

// launchGateway runs a gateway without waiting for its consumer.
func (c *cluster) launchGateway(name string, tweak ...func(*gateway.Config)) *gw {
	c.t.Helper()
	id := chat.ServerID(name + "-" + c.name)
	cfg := gateway.Config{
		ServerID: id, Addr: "127.0.0.1:0", ChatLogTopic: c.chatLog, ChatStateTopic: c.chatState,
		PingInterval: 2 * time.Second, PingTimeout: 2 * time.Second,
		DrainWindow: 500 * time.Millisecond, ShutdownTimeout: 10 * time.Second,
		// Tests send in bursts; the limit has tests of its own.
		MessageRate: -1, AuditTopic: "chat-audit-" + c.name,
	}
	if !slices.Contains(c.topics, cfg.AuditTopic) {
		c.topics = append(c.topics, cfg.AuditTopic)
	}
	for _, f := range tweak {
		f(&cfg)
	}
	var identity auth.Identity = auth.Open{}
	if c.tokens != nil {
		identity = auth.JWT{Tokens: c.tokens}
	}
	srv, err := gateway.New(cfg, gateway.Deps{
		Logger: c.log.With("gw", name), Redis: c.rdb, Route: c.routeConfig(), Kafka: c.kafka(), Identity: identity,
		Tokens: c.tokens,
	})
	if err != nil {
		c.t.Fatal(err)
	}
	if !slices.Contains(c.topics, id.Topic()) {
		c.topics = append(c.topics, id.Topic())
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &gw{id: id, srv: srv, cancel: cancel, stopped: make(chan struct{}), tokens: c.tokens}
	go func() { g.err = srv.Run(ctx); close(g.stopped) }()
	c.t.Cleanup(func() {
		if err := g.stop(); err != nil {
			c.t.Errorf("gateway %s: %v", id, err)
		}
	})
	return g
}

// stop drains the gateway (as SIGTERM does) and returns what Run returned.
func (g *gw) stop() error {
	g.cancel()
	select {
	case <-g.stopped:
		return g.err
	case <-time.After(30 * time.Second):
		return fmt.Errorf("did not stop within 30s")
	}
}

// waitReady waits until the gateway is registered live and its consumer
// group has joined: a note to self from one session of a probe user must
// reach the probe's second session through the gateway's own topic.
func (c *cluster) waitReady(g *gw) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	user := fmt.Sprintf("probe%d", counter.Add(1))
	sender, watcher := c.dial(g, user), c.dial(g, user)
	defer sender.Close()
	defer watcher.Close()
	for i := 0; ; i++ {
		cid := fmt.Sprintf("probe-%d", i)
		if err := sender.SendTo(ctx, cid, user, "probe"); err != nil {
			c.t.Fatalf("probe %s: %v", g.id, err)
		}
		wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := watcher.WaitFor(wctx, isMessage(cid))
		wcancel()
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			fctx, fcancel := context.WithTimeout(context.Background(), time.Second)
			f, ferr := sender.Next(fctx)
			fcancel()
			c.t.Fatalf("gateway %s never delivered its own probe: %v (sender's next frame: %s %v)", g.id, err, f.Raw, ferr)
		}
	}
}

// wsURL is the WebSocket URL of g for user: ?user= in open mode, a token
// for user in jwt mode.
func (g *gw) wsURL(user string) string {
	if g.tokens != nil {
		tok, _, err := g.tokens.Issue(chat.UserID(user))
		if err != nil {
			panic(err)
		}
		return "ws://" + g.srv.Addr().String() + "/ws?token=" + tok
	}
	return "ws://" + g.srv.Addr().String() + "/ws?user=" + url.QueryEscape(user)
}

// httpURL is the base HTTP URL of g.
func (g *gw) httpURL() string { return "http://" + g.srv.Addr().String() }

// dial connects user to g; the connection closes when the test ends.
func (c *cluster) dial(g *gw, user string) *wsclient.Client {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, _, err := wsclient.Dial(ctx, g.wsURL(user), nil)
	if err != nil {
		c.t.Fatalf("dial %s as %s: %v", g.id, user, err)
	}
	c.t.Cleanup(cl.CloseNow)
	return cl
}

// startRouter runs a router on this cluster's chat-log until the test ends.
func (c *cluster) startRouter(tweak ...func(*router.Config)) *router.Router {
	c.t.Helper()
	cfg := router.Config{Addr: "127.0.0.1:0", ChatLogTopic: c.chatLog, ChatStateTopic: c.chatState, GroupID: "router-" + c.name, JanitorInterval: 200 * time.Millisecond}
	for _, f := range tweak {
		f(&cfg)
	}
	r, err := router.New(cfg, router.Deps{
		Logger: c.log.With("component", "router"), Redis: c.rdb, Route: c.routeConfig(),
		Store: store.Config{Prefix: c.prefix, HistoryWindow: c.historyWindow}, Kafka: c.kafka(),
	})
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	c.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			c.t.Errorf("router: %v", err)
		}
	})
	return r
}

func (c *cluster) store() *store.Store { return store.New(c.rdb, store.Config{Prefix: c.prefix}) }

func (c *cluster) table() *route.Table { return route.New(c.rdb, c.routeConfig()) }

// eventually polls cond until it holds or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testkit.Eventually(t, timeout, what, cond)
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// expect reads frames from cl until one matches, failing after timeout.
func expect(t testing.TB, cl *wsclient.Client, what string, match func(wsclient.Frame) bool) wsclient.Frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	f, err := cl.WaitFor(ctx, match)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return f
}

func isSent(cid string) func(wsclient.Frame) bool {
	return func(f wsclient.Frame) bool { return (f.Type == "sent" || f.Type == "error") && f.CID == cid }
}

func isMessage(cid string) func(wsclient.Frame) bool {
	return func(f wsclient.Frame) bool { return f.Type == "message" && f.CID == cid }
}

// websocketStatus is the close code the server sent cl, or -1.
func websocketStatus(cl *wsclient.Client) int {
	return int(websocket.CloseStatus(cl.Err()))
}

type gatewayConfig = gateway.Config
