//go:build integration

// Package outage stops, restarts and suspends Kafka and Redis underneath a
// running gateway and router (both in-process) and checks how they and the
// gateway's clients live through it, and that they leave no goroutine
// behind once stopped.
//
// These tests never touch the shared broker and Redis of `make test`
// (127.0.0.1:9092 and 6379): every test starts its own Kafka broker and
// Redis with the project's scripts (deploy/kafka/kafka.sh,
// deploy/redis/redis.sh) on free loopback ports between 20000 and 29999,
// with state under $TMPDIR/switchboard-outage/<pid>-<n>, and stops them and
// removes that directory when it ends (OUTAGE_KEEP_STATE=1 keeps it, logs
// included, for a look afterwards). The broker jars come from the
// repository's .cache/kafka. Processes left behind by a test binary that
// was killed (a -timeout, a Ctrl-C) are stopped by the next run.
package outage

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/internal/auth"
	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/config"
	"github.com/switchboard-chat/switchboard/internal/gateway"
	"github.com/switchboard-chat/switchboard/internal/health"
	"github.com/switchboard-chat/switchboard/internal/kafkabus"
	"github.com/switchboard-chat/switchboard/internal/route"
	"github.com/switchboard-chat/switchboard/internal/router"
	"github.com/switchboard-chat/switchboard/internal/store"
	"github.com/switchboard-chat/switchboard/internal/wsclient"
)

const (
	// stateRoot, under os.TempDir(), holds one directory per started infra.
	stateRoot = "switchboard-outage"
	// envFile in an infra directory records the scripts' environment, so a
	// later run can stop what a killed run left behind.
	envFile = "infra.env"
	// scriptTimeout bounds one start or stop script.
	scriptTimeout = 4 * time.Minute
	// prefix is the Redis key prefix of the gateways and the router.
	prefix = "sb:"
	// lease is the gateways' lease: they heartbeat every third of it, and
	// a gateway that finds its registration gone registers its sessions
	// again on that heartbeat.
	lease = 3 * time.Second
	// leftoverSlack is how many more goroutines than before a test started
	// its gateway and router may still run once both have stopped.
	leftoverSlack = 3
	// readyBound bounds a /readyz answer: its checks run concurrently,
	// each bounded by health.Timeout.
	readyBound = health.Timeout + 500*time.Millisecond
	// restoreExpected is how long a router should need, once Redis lost
	// its data, to restore these tests' short chat-log (until then every
	// send is refused); restoreLimit is what the tests wait. See
	// noteSlowRestore.
	restoreExpected = 3 * time.Second
	restoreLimit    = 60 * time.Second
)

// noteSlowRestore logs a restore slower than restoreExpected. It does not
// fail the test: router.Rebuild replays each partition with
// kafkabus.Replay, whose kafka-go Reader uses the default MaxWait (10 s),
// and Reader.Close waits for the fetch in flight at the end of the
// partition (segmentio/kafka-go#428), so every non-empty partition adds
// up to ten seconds during which sends are refused.
func noteSlowRestore(t *testing.T, took time.Duration) {
	t.Helper()
	if took > restoreExpected {
		t.Logf("STILL WRONG (slow restore): sends were refused for %v after Redis lost its data, over the %v a restore of this short log should need; "+
			"kafkabus.Replay's reader waits out its 10s MaxWait on Close for each non-empty chat-log partition", took.Round(time.Millisecond), restoreExpected)
	}
}

var (
	instances atomic.Int64
	setupOnce sync.Once
)

// repoRoot is the repository root, two levels above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "deploy", "kafka", "kafka.sh")); err != nil {
		t.Fatalf("repository root %s: %v", root, err)
	}
	return root
}

// infra is one test's own Kafka broker and Redis.
type infra struct {
	t                                    *testing.T
	root, dir                            string
	kafkaPort, controllerPort, redisPort int
	env                                  []string // overrides for the scripts
	inspect                              *redis.Client
}

// startInfra starts a broker and a Redis for t on free ports and stops both
// when t ends.
func startInfra(t *testing.T) *infra {
	t.Helper()
	root := repoRoot(t)
	setupOnce.Do(func() {
		// go-redis logs every failed dial; as in cmd/gateway, its messages
		// go to slog at debug level (dropped here).
		config.RouteRedisLogs(slog.New(slog.NewTextHandler(os.Stderr, nil)))
		sweepOrphans(t, root)
	})

	ports := freePorts(t, 3)
	dir := filepath.Join(os.TempDir(), stateRoot, fmt.Sprintf("%d-%d", os.Getpid(), instances.Add(1)))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	goroutinesAtStart := runtime.NumGoroutine()
	in := &infra{t: t, root: root, dir: dir, kafkaPort: ports[0], controllerPort: ports[1], redisPort: ports[2]}
	in.env = []string{
		"KAFKA_PORT=" + strconv.Itoa(in.kafkaPort),
		"KAFKA_CONTROLLER_PORT=" + strconv.Itoa(in.controllerPort),
		"KAFKA_STATE_DIR=" + filepath.Join(dir, "kafka"),
		"KAFKA_CACHE_DIR=" + filepath.Join(root, ".cache", "kafka"),
		"REDIS_PORT=" + strconv.Itoa(in.redisPort),
		"REDIS_STATE_DIR=" + filepath.Join(dir, "redis"),
	}
	if err := os.WriteFile(filepath.Join(dir, envFile), []byte(strings.Join(in.env, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if in.inspect != nil {
			in.inspect.Close()
		}
		if _, err := runScript(root, in.env, "kafka", "stop"); err != nil {
			t.Errorf("stop kafka: %v", err)
		}
		if _, err := runScript(root, in.env, "redis", "stop"); err != nil {
			t.Errorf("stop redis: %v", err)
		}
		if t.Failed() {
			in.dumpLogs()
		}
		checkLeftovers(t, goroutinesAtStart, "after the gateway, router, clients and infra stopped")
		if os.Getenv("OUTAGE_KEEP_STATE") != "" {
			t.Logf("OUTAGE_KEEP_STATE is set: keeping %s", dir)
			return
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("remove %s: %v", dir, err)
		}
	})
	t.Logf("infra: Kafka 127.0.0.1:%d (controller %d), Redis 127.0.0.1:%d, state %s",
		in.kafkaPort, in.controllerPort, in.redisPort, dir)
	in.startRedis()
	in.startKafka()
	in.inspect = redis.NewClient(&redis.Options{Addr: in.redisAddr()})
	return in
}

func (in *infra) kafkaAddr() string { return "127.0.0.1:" + strconv.Itoa(in.kafkaPort) }
func (in *infra) redisAddr() string { return "127.0.0.1:" + strconv.Itoa(in.redisPort) }

// startKafka starts the broker (first start or restart on the same state)
// and returns how long the script took until the broker was ready.
func (in *infra) startKafka() time.Duration {
	return in.run("kafka", "start", filepath.Join(in.dir, "kafka", "kafka.pid"))
}

// stopKafka stops the broker and returns once its process has exited.
func (in *infra) stopKafka() time.Duration { return in.run("kafka", "stop", "") }

// startRedis starts Redis (empty: it has no persistence).
func (in *infra) startRedis() time.Duration {
	return in.run("redis", "start", filepath.Join(in.dir, "redis", "redis.pid"))
}

// stopRedis stops Redis and returns once its process has exited.
func (in *infra) stopRedis() time.Duration { return in.run("redis", "stop", "") }

// run runs a script and fails the test if it fails. When pidFile is set it
// must exist afterwards: the process on the port is ours, not one that the
// script merely found there and reused.
func (in *infra) run(which, action, pidFile string) time.Duration {
	in.t.Helper()
	took, err := runScript(in.root, in.env, which, action)
	if err != nil {
		in.t.Fatalf("%s %s: %v", which, action, err)
	}
	if pidFile != "" {
		if _, err := os.Stat(pidFile); err != nil {
			in.t.Fatalf("%s %s: no pid file of our own (%v): another process answers on its port", which, action, err)
		}
	}
	in.t.Logf("%s %s took %v", which, action, took.Round(time.Millisecond))
	return took
}

// runScript runs deploy/<which>/<which>.sh action with env overrides.
func runScript(root string, env []string, which, action string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "deploy", which, which+".sh"), action)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...) // later entries win
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	if err != nil {
		return took, fmt.Errorf("%w\n%s", err, out)
	}
	return took, nil
}

// pid returns the process id in the pid file of which ("kafka", "redis").
func (in *infra) pid(which string) int {
	in.t.Helper()
	b, err := os.ReadFile(filepath.Join(in.dir, which, which+".pid"))
	if err != nil {
		in.t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		in.t.Fatalf("%s pid file: %q", which, b)
	}
	return pid
}

// freeze suspends which's process (SIGSTOP): its sockets stay open and the
// kernel still accepts connections, but nothing answers — a hung server or
// a network that drops packets, rather than one that refuses. The returned
// thaw resumes it (SIGCONT); it also runs when the test ends.
func (in *infra) freeze(which string) (thaw func()) {
	in.t.Helper()
	pid := in.pid(which)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		in.t.Fatalf("SIGSTOP %s (pid %d): %v", which, pid, err)
	}
	var once sync.Once
	thaw = func() {
		once.Do(func() {
			if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
				in.t.Errorf("SIGCONT %s (pid %d): %v", which, pid, err)
			}
		})
	}
	in.t.Cleanup(thaw)
	return thaw
}

// checkLeftovers waits (bounded) until no more goroutines run than
// before, once everything started since has stopped (DESIGN.md, invariant
// 7: shutdown leaves nothing running). Up to leftoverSlack more are
// tolerated and listed in the log; more than that fail the test, unless
// it failed already.
func checkLeftovers(t *testing.T, before int, what string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	n, last, same := runtime.NumGoroutine(), -1, 0
	// Stop early once the count is down to before, or when it held still
	// for two seconds: what is left then does not end by itself.
	for n > before && same < 20 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		last, n = n, runtime.NumGoroutine()
		if n == last {
			same++
		} else {
			same = 0
		}
	}
	switch {
	case n <= before:
		t.Logf("goroutines %s: %d (%d before)", what, n, before)
	case n <= before+leftoverSlack:
		t.Logf("goroutines %s: %d, %d more than before (%d allowed): %s", what, n, n-before, leftoverSlack, goroutineSummary())
	case t.Failed():
		t.Logf("goroutines %s: %d, %d more than before: %s", what, n, n-before, goroutineSummary())
	default:
		t.Errorf("goroutines %s: %d, %d more than before (%d allowed): %s", what, n, n-before, leftoverSlack, goroutineSummary())
	}
	return n
}

// goroutineSummary names where the running goroutines (other than the
// testing framework's) wait, with their counts.
func goroutineSummary() string {
	var b bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
	var where []string
	_, profile, _ := strings.Cut(b.String(), "\n") // drops "goroutine profile: total N"
	for _, block := range strings.Split(profile, "\n\n") {
		lines := strings.Split(strings.TrimSpace(block), "\n")
		if len(lines) < 2 || strings.Contains(block, "testing.") || strings.Contains(block, "runtime/pprof.") {
			continue
		}
		count, _, _ := strings.Cut(lines[0], " @")
		// The innermost frame of a module (not the standard library)
		// names the waiter best; else the innermost one.
		frame := ""
		for _, l := range lines[1:] {
			fields := strings.Fields(l)
			if len(fields) < 3 {
				continue
			}
			fn, _, _ := strings.Cut(fields[2], "+0x")
			if frame == "" {
				frame = fn
			}
			if strings.Contains(fn, ".com/") || strings.Contains(fn, ".org/") || strings.Contains(fn, ".io/") {
				frame = fn
				break
			}
		}
		if frame != "" {
			where = append(where, count+"× "+frame)
		}
	}
	if len(where) == 0 {
		return "none outside the testing framework"
	}
	return strings.Join(where, ", ")
}

// dumpLogs shows the end of the broker's and Redis's logs.
func (in *infra) dumpLogs() {
	for _, f := range []string{"kafka/server.log", "kafka/kafka.out", "redis/redis.log"} {
		b, err := os.ReadFile(filepath.Join(in.dir, f))
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		in.t.Logf("----- last lines of %s -----\n%s", f, strings.Join(lines[max(0, len(lines)-40):], "\n"))
	}
}

// sweepOrphans stops the brokers and Redis servers of earlier runs whose
// test process is gone, and removes their state. The scripts only stop
// the process named in their own pid file.
func sweepOrphans(t *testing.T, root string) {
	base := filepath.Join(os.TempDir(), stateRoot)
	entries, err := os.ReadDir(base)
	if err != nil {
		return
	}
	for _, e := range entries {
		pidStr, _, ok := strings.Cut(e.Name(), "-")
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil || pid == os.Getpid() || alive(pid) {
			continue
		}
		dir := filepath.Join(base, e.Name())
		env, err := readEnv(filepath.Join(dir, envFile))
		if err == nil {
			t.Logf("stopping what a killed run (pid %d) left in %s", pid, dir)
			if _, err := runScript(root, env, "kafka", "stop"); err != nil {
				t.Logf("sweep: %v", err)
			}
			if _, err := runScript(root, env, "redis", "stop"); err != nil {
				t.Logf("sweep: %v", err)
			}
		}
		_ = os.RemoveAll(dir)
	}
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func readEnv(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var env []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); strings.Contains(line, "=") {
			env = append(env, line)
		}
	}
	return env, sc.Err()
}

// freePorts returns n distinct loopback ports in [20000, 30000) that can be
// bound now: below the kernel's ephemeral range, so that an outgoing
// connection does not take one while its server is stopped.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for tries := 0; len(ports) < n && tries < 2000; tries++ {
		p := 20000 + rand.IntN(10000)
		if slices.Contains(ports, p) {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		held = append(held, l)
		ports = append(ports, p)
	}
	if len(ports) < n {
		t.Fatalf("found only %d free ports", len(ports))
	}
	return ports
}

// gw is a gateway running in-process against the test's infra, built as
// cmd/gateway builds it.
type gw struct {
	t       *testing.T
	id      chat.ServerID
	cfg     gateway.Config
	route   route.Config
	srv     *gateway.Server
	rdb     *redis.Client
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
	rdb     *redis.Client
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

// waitDelivering waits until a note to self from one session of a probe
// user reaches the probe's second session through the gateway's topic.
func (g *gw) waitDelivering(timeout time.Duration) {
	t := g.t
	t.Helper()
	user := fmt.Sprintf("probe%d", instances.Add(1))
	sender, watcher := g.dial(user), g.dial(user)
	defer sender.close()
	defer watcher.close()
	deadline := time.Now().Add(timeout)
	for i := 0; ; i++ {
		cid := fmt.Sprintf("probe-%d", i)
		mark := watcher.count()
		sender.send(cid, user, "probe")
		if _, ok := watcher.await(mark, 2*time.Second, isMessage(cid)); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway %s never delivered its own probe within %v; sender saw %s", g.id, timeout, sender.describe())
		}
	}
}

func (g *gw) wsURL(user string) string {
	return "ws://" + g.srv.Addr().String() + "/ws?user=" + url.QueryEscape(user)
}

// readiness is a /readyz answer.
type readiness struct {
	Status int
	Ready  bool              `json:"ready"`
	Checks map[string]string `json:"checks"`
	Took   time.Duration
}

// ready asks the gateway's /readyz.
func (g *gw) ready() readiness {
	g.t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	start := time.Now()
	resp, err := client.Get("http://" + g.srv.Addr().String() + "/readyz")
	if err != nil {
		g.t.Fatalf("readyz: %v", err)
	}
	defer resp.Body.Close()
	var r readiness
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		g.t.Fatalf("readyz body: %v", err)
	}
	r.Status, r.Took = resp.StatusCode, time.Since(start)
	return r
}

// checkNotReady checks a /readyz answer given while only failing (kafka
// or redis) is unreachable: 503 within readyBound, that check failing and
// every other one passing.
func checkNotReady(t *testing.T, r readiness, failing string) {
	t.Helper()
	if r.Status != http.StatusServiceUnavailable || r.Ready {
		t.Errorf("readyz while %s is unreachable: %d ready=%v, want 503", failing, r.Status, r.Ready)
	}
	if r.Took > readyBound {
		t.Errorf("readyz took %v while %s is unreachable, over %v", r.Took.Round(time.Millisecond), failing, readyBound)
	}
	want := map[string]bool{"kafka": true, "redis": true, "draining": true}
	for name, v := range r.Checks {
		ok := v == "ok" || (name == "draining" && v == "no")
		switch {
		case !want[name]:
			t.Errorf("readyz reports an unknown check %s=%q", name, v)
		case name == failing && ok:
			t.Errorf("readyz reports %s as %q while it is unreachable", name, v)
		case name != failing && !ok:
			t.Errorf("readyz reports %s as failing (%q) while only %s is unreachable", name, v, failing)
		}
		delete(want, name)
	}
	for name := range want {
		t.Errorf("readyz has no %s check: %v", name, r.Checks)
	}
}

// awaitReady polls /readyz until it answers want, and returns the answer.
func (g *gw) awaitReady(want int, timeout time.Duration) readiness {
	g.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := g.ready()
		if r.Status == want {
			return r
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("readyz still %d %v after %v, want %d", r.Status, r.Checks, timeout, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rx is a frame and when it arrived.
type rx struct {
	wsclient.Frame
	At time.Time
}

// peer is a client whose frames are all recorded, in order, by one reader
// goroutine that ends when the connection does.
type peer struct {
	t    *testing.T
	user string
	cl   *wsclient.Client
	done chan struct{}

	mu     sync.Mutex
	frames []rx
	more   chan struct{} // closed and replaced when a frame arrives
}

// dial connects user; the connection closes when the test ends.
func (g *gw) dial(user string) *peer {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, _, err := wsclient.Dial(ctx, g.wsURL(user), nil)
	if err != nil {
		g.t.Fatalf("dial %s as %s: %v", g.id, user, err)
	}
	p := &peer{t: g.t, user: user, cl: cl, done: make(chan struct{}), more: make(chan struct{})}
	go func() {
		defer close(p.done)
		for {
			f, err := cl.Next(context.Background())
			if err != nil {
				return
			}
			p.mu.Lock()
			p.frames = append(p.frames, rx{Frame: f, At: time.Now()})
			close(p.more)
			p.more = make(chan struct{})
			p.mu.Unlock()
		}
	}()
	g.t.Cleanup(p.close)
	return p
}

// close drops the connection and waits for the reader.
func (p *peer) close() {
	p.cl.CloseNow()
	<-p.done
}

// send sends a direct message.
func (p *peer) send(cid, to, body string) time.Time {
	p.t.Helper()
	return p.write(wsclient.Send{Type: "send", CID: cid, Body: body, To: to})
}

// sendConv sends to a conversation.
func (p *peer) sendConv(cid, conv, body string) time.Time {
	p.t.Helper()
	return p.write(wsclient.Send{Type: "send", CID: cid, Body: body, Conv: conv})
}

func (p *peer) write(s wsclient.Send) time.Time {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	at := time.Now()
	if err := p.cl.SendJSON(ctx, s); err != nil {
		p.t.Fatalf("%s sends %s: %v", p.user, s.CID, err)
	}
	return at
}

// count is how many frames arrived so far.
func (p *peer) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.frames)
}

// snapshot returns every frame so far.
func (p *peer) snapshot() []rx {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.frames)
}

// await returns the first frame at index from or later that matches,
// waiting up to timeout.
func (p *peer) await(from int, timeout time.Duration, match func(wsclient.Frame) bool) (rx, bool) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		p.mu.Lock()
		for i := from; i < len(p.frames); i++ {
			if match(p.frames[i].Frame) {
				f := p.frames[i]
				p.mu.Unlock()
				return f, true
			}
		}
		from = len(p.frames)
		more := p.more
		p.mu.Unlock()
		select {
		case <-more:
		case <-p.done:
			return rx{}, false
		case <-timer.C:
			return rx{}, false
		}
	}
}

// expect is await that fails the test when nothing matches.
func (p *peer) expect(from int, timeout time.Duration, what string, match func(wsclient.Frame) bool) rx {
	p.t.Helper()
	f, ok := p.await(from, timeout, match)
	if !ok {
		p.t.Fatalf("%s: %s got nothing matching within %v; %s", what, p.user, timeout, p.describe())
	}
	return f
}

// describe summarises the last frames, for failure messages.
func (p *peer) describe() string {
	fs := p.snapshot()
	var b strings.Builder
	fmt.Fprintf(&b, "%d frames", len(fs))
	for _, f := range fs[max(0, len(fs)-5):] {
		fmt.Fprintf(&b, "; %s", f.Raw)
	}
	if err := p.cl.Err(); err != nil {
		fmt.Fprintf(&b, "; connection ended: %v", err)
	}
	return b.String()
}

// isAnswer matches the sent or error answering cid.
func isAnswer(cid string) func(wsclient.Frame) bool {
	return func(f wsclient.Frame) bool { return (f.Type == "sent" || f.Type == "error") && f.CID == cid }
}

func isMessage(cid string) func(wsclient.Frame) bool {
	return func(f wsclient.Frame) bool { return f.Type == "message" && f.CID == cid }
}

// sendLog records sends made by a pacer.
type sendLog struct {
	CID string
	At  time.Time
}

// pacer sends a new direct message every interval until stopped.
type pacer struct {
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
	mu       sync.Mutex
	sent     []sendLog
	err      error
}

// pace starts sending from p to `to` with cids prefix-000, prefix-001, …,
// until halted or the test ends.
func pace(p *peer, to, prefix string, every time.Duration) *pacer {
	pc := &pacer{stop: make(chan struct{}), done: make(chan struct{})}
	p.t.Cleanup(func() {
		pc.stopOnce.Do(func() { close(pc.stop) })
		<-pc.done
	})
	go func() {
		defer close(pc.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i := 0; ; i++ {
			cid := fmt.Sprintf("%s-%03d", prefix, i)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			at := time.Now()
			err := p.cl.SendJSON(ctx, wsclient.Send{Type: "send", CID: cid, Body: "paced " + cid, To: to})
			cancel()
			pc.mu.Lock()
			if err != nil {
				pc.err = fmt.Errorf("send %s: %w", cid, err)
				pc.mu.Unlock()
				return
			}
			pc.sent = append(pc.sent, sendLog{CID: cid, At: at})
			pc.mu.Unlock()
			select {
			case <-pc.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return pc
}

// halt stops the pacer and returns what it sent.
func (pc *pacer) halt(t *testing.T) []sendLog {
	t.Helper()
	pc.stopOnce.Do(func() { close(pc.stop) })
	<-pc.done
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.err != nil {
		t.Fatalf("pacer: %v", pc.err)
	}
	return slices.Clone(pc.sent)
}

// sends returns what the pacer has sent so far.
func (pc *pacer) sends() []sendLog {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return slices.Clone(pc.sent)
}

// answered pairs each send with the first answer to its cid in frames.
type answered struct {
	sendLog
	Answer  rx
	Ok      bool // an answer arrived
	Latency time.Duration
}

func answers(sends []sendLog, frames []rx) []answered {
	first := make(map[string]rx)
	for _, f := range frames {
		if f.Type == "sent" || f.Type == "error" {
			if _, seen := first[f.CID]; !seen && f.CID != "" {
				first[f.CID] = f
			}
		}
	}
	out := make([]answered, len(sends))
	for i, s := range sends {
		out[i].sendLog = s
		if f, ok := first[s.CID]; ok {
			out[i].Answer, out[i].Ok, out[i].Latency = f, true, f.At.Sub(s.At)
		}
	}
	return out
}

// latencyStats summarises latencies as "n=… min=… median=… max=…".
func latencyStats(ds []time.Duration) string {
	if len(ds) == 0 {
		return "n=0"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return fmt.Sprintf("n=%d min=%v median=%v p90=%v max=%v", len(s), r(s[0]), r(s[len(s)/2]), r(s[len(s)*9/10]), r(s[len(s)-1]))
}

// settledGoroutines waits (bounded) until the goroutine count holds still
// for a few readings, and returns it.
func settledGoroutines(t *testing.T) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	last, same := runtime.NumGoroutine(), 0
	for same < 5 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		n := runtime.NumGoroutine()
		if n == last {
			same++
		} else {
			last, same = n, 0
		}
	}
	return last
}

// awaitGoroutinesAtMost waits until at most limit goroutines run; it fails
// the test with a goroutine dump when they do not settle in time.
func awaitGoroutinesAtMost(t *testing.T, limit int, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n := runtime.NumGoroutine()
		if n <= limit {
			return n
		}
		if time.Now().After(deadline) {
			var b bytes.Buffer
			_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
			t.Errorf("%d goroutines after %v, want at most %d:\n%s", n, timeout, limit, b.String())
			return n
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// chatLog reads topic from the start with a fresh consumer group until
// enough(messages so far) holds or timeout passes, and returns every
// message record read, duplicates included.
func (in *infra) chatLog(topic string, enough func([]chat.Message) bool, timeout time.Duration) []chat.Message {
	t := in.t
	t.Helper()
	c, err := kafkabus.NewConsumer(kafkabus.Config{Brokers: []string{in.kafkaAddr()}, ClientID: "outage-check"},
		kafkabus.ConsumerConfig{Topic: topic, GroupID: fmt.Sprintf("outage-check-%d", instances.Add(1)), SessionTimeout: 6 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var msgs []chat.Message
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- c.Run(ctx, func(_ context.Context, r kafkabus.Record) error {
			lr, err := chat.DecodeLogRecord(r.Value)
			if err == nil && lr.Message != nil {
				mu.Lock()
				msgs = append(msgs, *lr.Message)
				mu.Unlock()
			}
			return nil
		})
	}()
	deadline := time.Now().Add(timeout)
	for {
		mu.Lock()
		ok := enough(msgs)
		mu.Unlock()
		if ok || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("chat-log reader: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Logf("chat-log reader close: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(msgs)
}

// testWriter sends the gateway's log lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// awaitSendsAfter waits until the pacer has issued n sends after at.
func (pc *pacer) awaitSendsAfter(t *testing.T, at time.Time, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := 0
		for _, s := range pc.sends() {
			if s.At.After(at) {
				got++
			}
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pacer stalled: %d of %d sends after %v", got, n, at.Format("15:04:05.000"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkConvLog checks chat-log's message records of conv, in log order
// (one conversation is one partition): each seq belongs to one message,
// and, when ordered, the seqs of distinct messages strictly increase. A
// message written twice (a produce retried) is tolerated. It returns the
// distinct messages.
func checkConvLog(t *testing.T, msgs []chat.Message, conv chat.ConvID, ordered bool) []chat.Message {
	t.Helper()
	var out []chat.Message
	seen := make(map[string]int64)  // id → seq
	bySeq := make(map[int64]string) // seq → id
	for _, m := range msgs {
		if m.Conv != conv {
			continue
		}
		if seq, dup := seen[m.ID]; dup {
			if seq != m.Seq {
				t.Errorf("chat-log: message %s logged with seq %d and %d", m.ID, seq, m.Seq)
			}
			continue
		}
		if id, taken := bySeq[m.Seq]; taken {
			t.Errorf("chat-log: seq %d of %s given to %s and %s (cid %s)", m.Seq, conv, id, m.ID, m.CID)
		} else if ordered && len(out) > 0 && m.Seq <= out[len(out)-1].Seq {
			t.Errorf("chat-log: seq of %s went back from %d to %d (message %s, cid %s)", conv, out[len(out)-1].Seq, m.Seq, m.ID, m.CID)
		}
		seen[m.ID], bySeq[m.Seq] = m.Seq, m.ID
		out = append(out, m)
	}
	return out
}

// hasIDs returns a chatLog stop condition: every id in want was read.
func hasIDs(want map[string]bool) func([]chat.Message) bool {
	return func(ms []chat.Message) bool {
		have := make(map[string]bool, len(ms))
		for _, m := range ms {
			have[m.ID] = true
		}
		for id := range want {
			if !have[id] {
				return false
			}
		}
		return true
	}
}
