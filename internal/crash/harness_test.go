//go:build integration

// Package crash runs gateway binaries as real processes against the Kafka
// broker and Redis that `make test` starts (SWITCHBOARD_KAFKA,
// SWITCHBOARD_REDIS; defaults 127.0.0.1:9092 and 127.0.0.1:6379; a Redis
// Cluster with SWITCHBOARD_REDIS_CLUSTER), with the
// router in-process, and kills, drains and restarts them under traffic.
// Every test gets its own SERVER_IDs, chat-log topic and Redis key prefix,
// and deletes its topics and keys when it ends.
package crash

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/internal/kafkabus"
	"github.com/switchboard-chat/switchboard/internal/route"
	"github.com/switchboard-chat/switchboard/internal/router"
	"github.com/switchboard-chat/switchboard/internal/store"
	"github.com/switchboard-chat/switchboard/internal/testkit"
)

var (
	kafkaAddr = testkit.KafkaAddr()
	// redisEnv points a gateway or run.sh at the shared Redis.
	redisEnv = testkit.RedisEnv()
	runID    = strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	counter  atomic.Int64
)

// lease is the gateway lease of every test cluster (GATEWAY_LEASE).
const lease = 3 * time.Second

// The gateway and router binaries are built once per test run into binDir.
var (
	buildOnce sync.Once
	binDir    string
	binPath   string // the gateway's
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// gatewayBinary builds cmd/gateway and cmd/router once and returns the
// gateway's path; the router is beside it.
func gatewayBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "crash-gateway-"); buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "gateway")
		out, err := exec.Command("go", "build", "-o", binDir+"/", "../../cmd/gateway", "../../cmd/router").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ../../cmd/gateway ../../cmd/router: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// cluster is one test's isolated deployment: gateway processes sharing a
// chat-log topic and a Redis prefix, and an in-process router.
type cluster struct {
	t       *testing.T
	name    string
	prefix  string
	chatLog string
	// chatState is this cluster's chat-state topic.
	chatState string
	bin       string
	dir       string // t.TempDir: logs, the gateways' working directory
	rdb       redis.UniversalClient
	admin     *kafkabus.Admin
	topics    []string
	logs      []string // files printed when the test fails
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	name := fmt.Sprintf("t%s-%d", runID, counter.Add(1))
	c := &cluster{
		t: t, name: name, prefix: "test:" + name + ":", chatLog: "chat-log-" + name, chatState: "chat-state-" + name,
		bin: gatewayBinary(t), dir: t.TempDir(),
	}
	c.rdb, c.admin = testkit.Connect(t, "crash")
	c.topics = append(c.topics, c.chatLog, c.chatState, c.chatLog+"-checkpoint") // the router's default checkpoint topic
	t.Cleanup(c.cleanup)
	return c
}

// cleanup prints the logs of a failed test, then deletes the cluster's
// topics and Redis keys. It runs after every gateway and the router stopped.
func (c *cluster) cleanup() {
	c.logWarnings(20)
	if c.t.Failed() {
		for _, f := range c.logs {
			b, err := os.ReadFile(f)
			if err != nil {
				c.t.Logf("log %s: %v", f, err)
				continue
			}
			c.t.Logf("==== %s ====\n%s", filepath.Base(f), b)
		}
	}
	testkit.DropNamespace(c.t, c.admin, c.rdb, c.prefix, c.topics)
	c.rdb.Close()
}

// logWarnings logs up to max WARN and ERROR lines of each log file, and
// how many there were.
func (c *cluster) logWarnings(max int) {
	for _, f := range c.logs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var n int
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.Contains(line, `"level":"WARN"`) && !strings.Contains(line, `"level":"ERROR"`) {
				continue
			}
			if n++; n <= max {
				c.t.Logf("%s: %s", filepath.Base(f), line)
			}
		}
		if n > 0 {
			c.t.Logf("%s: %d warnings and errors", filepath.Base(f), n)
		}
	}
}

// startRouter runs a router in-process until the test ends; its logs go
// to router.log.
func (c *cluster) startRouter() {
	c.t.Helper()
	path := filepath.Join(c.dir, "router.log")
	f, err := os.Create(path)
	if err != nil {
		c.t.Fatal(err)
	}
	c.logs = append(c.logs, path)
	log := slog.New(slog.NewJSONHandler(f, &slog.HandlerOptions{Level: slog.LevelInfo}))
	r, err := router.New(router.Config{
		Addr: "127.0.0.1:0", ChatLogTopic: c.chatLog, ChatStateTopic: c.chatState, GroupID: "router-" + c.name, JanitorInterval: 200 * time.Millisecond,
	}, router.Deps{
		Logger: log, Redis: c.rdb, Route: route.Config{Prefix: c.prefix, Lease: lease},
		Store: store.Config{Prefix: c.prefix}, Kafka: kafkabus.Config{Brokers: []string{kafkaAddr}, ClientID: "crash-router"},
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
		f.Close()
	})
}

// gateway is one gateway process; it keeps its SERVER_ID and address
// across restarts.
type gateway struct {
	c     *cluster
	name  string // gw-1, gw-2
	id    string // SERVER_ID
	addr  string // 127.0.0.1:port
	admin string // its ADMIN_ADDR
	log   *os.File

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when the current process has been reaped
	err    error         // what Wait returned for the current process
	starts int
}

// newGateway names a gateway of the cluster and picks its address; start
// runs it. The process is killed when the test ends.
func (c *cluster) newGateway(name string) *gateway {
	c.t.Helper()
	g := &gateway{c: c, name: name, id: name + "-" + c.name, addr: freeAddr(c.t), admin: freeAddr(c.t)}
	path := filepath.Join(c.dir, name+".log")
	f, err := os.Create(path)
	if err != nil {
		c.t.Fatal(err)
	}
	g.log = f
	c.logs = append(c.logs, path)
	c.topics = append(c.topics, "messages-"+g.id)
	c.t.Cleanup(func() {
		if g.running() {
			_ = g.process().Kill()
			<-g.done()
		}
		f.Close()
	})
	return g
}

func freeAddr(t *testing.T) string { return testkit.FreeAddr(t) }

// wsURL is the WebSocket URL of the gateway.
func (g *gateway) wsURL() string { return "ws://" + g.addr + "/ws" }

func (g *gateway) process() *os.Process {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cmd.Process
}

func (g *gateway) done() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.exited
}

func (g *gateway) running() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.exited == nil {
		return false
	}
	select {
	case <-g.exited:
		return false
	default:
		return true
	}
}

// start runs the gateway process and waits until /readyz answers 200.
func (g *gateway) start() {
	g.c.t.Helper()
	if g.running() {
		g.c.t.Fatalf("%s is already running", g.name)
	}
	cmd := exec.Command(g.c.bin)
	cmd.Dir = g.c.dir // no configs/gateway.yaml there: defaults and env only
	cmd.Env = append(append(os.Environ(), redisEnv...),
		"CONFIG=",
		"SERVER_ID="+g.id,
		"HTTP_ADDR="+g.addr,
		"ADMIN_ADDR="+g.admin,
		"KAFKA_BROKERS="+kafkaAddr,
		"REDIS_PREFIX="+g.c.prefix,
		"KAFKA_CHAT_LOG_TOPIC="+g.c.chatLog,
		"KAFKA_CHAT_STATE_TOPIC="+g.c.chatState,
		"GATEWAY_LEASE="+lease.String(),
		"GATEWAY_DRAIN_WINDOW=500ms",
		"AUTH_MODE=open",          // the clients connect with ?user=
		"GATEWAY_MESSAGE_RATE=-1", // the load comes in bursts
		"LOG_FORMAT=json",
	)
	g.mu.Lock()
	g.starts++
	fmt.Fprintf(g.log, "==== start %d of %s (%s) at %s ====\n", g.starts, g.id, g.addr, time.Now().Format(time.RFC3339Nano))
	g.mu.Unlock()
	cmd.Stdout, cmd.Stderr = g.log, g.log
	if err := cmd.Start(); err != nil {
		g.c.t.Fatalf("start %s: %v", g.name, err)
	}
	exited := make(chan struct{})
	g.mu.Lock()
	g.cmd, g.exited, g.err = cmd, exited, nil
	g.mu.Unlock()
	go func() {
		err := cmd.Wait()
		g.mu.Lock()
		g.err = err
		g.mu.Unlock()
		close(exited)
	}()
	g.waitReady(60 * time.Second)
}

// waitReady polls /readyz until it answers 200, the process exits or the
// timeout passes.
func (g *gateway) waitReady(timeout time.Duration) {
	g.c.t.Helper()
	deadline := time.Now().Add(timeout)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		status, body := readyz(g.addr)
		if status == http.StatusOK {
			return
		}
		last := fmt.Sprintf("%d %s", status, body)
		if time.Now().After(deadline) {
			g.c.t.Fatalf("%s not ready after %v: %s", g.name, timeout, last)
		}
		select {
		case <-g.done():
			g.c.t.Fatalf("%s exited before it was ready: %v", g.name, g.exitErr())
		case <-t.C:
		}
	}
}

func (g *gateway) exitErr() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// kill ends the process with SIGKILL and waits until it is reaped.
func (g *gateway) kill() {
	g.c.t.Helper()
	if err := g.process().Kill(); err != nil {
		g.c.t.Fatalf("kill %s: %v", g.name, err)
	}
	<-g.done()
	fmt.Fprintf(g.log, "==== killed (SIGKILL) at %s ====\n", time.Now().Format(time.RFC3339Nano))
}

// terminate sends SIGTERM and waits (bounded) for a clean exit.
func (g *gateway) terminate(timeout time.Duration) time.Duration {
	g.c.t.Helper()
	start := time.Now()
	if err := g.process().Signal(syscall.SIGTERM); err != nil {
		g.c.t.Fatalf("SIGTERM %s: %v", g.name, err)
	}
	select {
	case <-g.done():
	case <-time.After(timeout):
		g.c.t.Fatalf("%s did not exit within %v of SIGTERM", g.name, timeout)
	}
	if err := g.exitErr(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			g.c.t.Errorf("%s exited with %v after SIGTERM", g.name, ee)
		} else {
			g.c.t.Errorf("%s: %v", g.name, err)
		}
	}
	return time.Since(start)
}

// logMetrics logs the gateway's delivery, forwarding, sync and disconnect
// counters (since its last start).
func (g *gateway) logMetrics() {
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + g.admin + "/metrics")
	if err != nil {
		g.c.t.Logf("%s metrics: %v", g.name, err)
		return
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	var out []string
	for _, line := range strings.Split(b.String(), "\n") {
		for _, name := range []string{"drops_total", "forwarded_total", "syncs_total", "disconnects_total", "sends_total"} {
			if strings.HasPrefix(line, "switchboard_gateway_"+name) {
				out = append(out, strings.TrimPrefix(line, "switchboard_gateway_"))
			}
		}
	}
	g.c.t.Logf("%s metrics since start %d: %s", g.name, g.starts, strings.Join(out, ", "))
}
