//go:build integration

package outage

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/config"
	"github.com/switchboard-chat/switchboard/internal/kafkabus"
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
	inspect                              redis.UniversalClient
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

// startRedis starts Redis; it reloads what its append-only file holds.
func (in *infra) startRedis() time.Duration {
	return in.run("redis", "start", filepath.Join(in.dir, "redis", "redis.pid"))
}

// wipeRedis deletes the data of the stopped Redis: its next start is
// empty, as after a lost disk.
func (in *infra) wipeRedis() { in.run("redis", "wipe", "") }

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
