//go:build integration

package crash

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/internal/rediskit"
	"github.com/switchboard-chat/switchboard/internal/testkit"
	"github.com/switchboard-chat/switchboard/internal/wsclient"
)

// localRun is a cluster started by deploy/local/run.sh, the script of
// `make run`, beside any other: its own ports, state and log directories,
// SERVER_IDs, topics and Redis prefix, on the shared broker and Redis.
type localRun struct {
	c      *cluster
	state  string // RUN_STATE_DIR
	logs   string // RUN_LOG_DIR
	env    []string
	gws    []*gateway
	router string // the router's address
}

// startLocalRun runs `run.sh start` with n gateways and returns once it
// did (every member ready); `run.sh stop` runs when the test ends.
func (c *cluster) startLocalRun(n int) *localRun {
	t := c.t
	t.Helper()
	gatewayBinary(t) // and the router, in the same directory
	dir := t.TempDir()
	lr := &localRun{c: c, state: filepath.Join(dir, "run"), logs: filepath.Join(dir, "logs"), router: freeAddr(t)}
	_, kafkaPort, _ := net.SplitHostPort(kafkaAddr)
	// run.sh starts (here: reuses) the shared Redis with deploy/redis's
	// scripts: the single Redis on REDIS_PORT, or the cluster whose first
	// node is on REDIS_CLUSTER_PORT.
	_, redisPort, _ := net.SplitHostPort(rediskit.ParseAddrs(testkit.RedisAddr())[0])
	redisPortVar := "REDIS_PORT="
	if testkit.RedisCluster() {
		redisPortVar = "REDIS_CLUSTER_PORT="
	}
	lr.env = []string{
		"BIN_DIR=" + binDir, "RUN_STATE_DIR=" + lr.state, "RUN_LOG_DIR=" + lr.logs,
		"AUTH_MODE=open", // the probes connect with ?user=
		"GATEWAYS=" + strconv.Itoa(n), "ROUTER_PORT=" + port(t, lr.router), "READY_TIMEOUT=120",
		"KAFKA_BROKERS=" + kafkaAddr, "KAFKA_PORT=" + kafkaPort, redisPortVar + redisPort,
		"SERVER_ID_PREFIX=" + c.name + "-", "REDIS_PREFIX=" + c.prefix, "ROUTER_GROUP_ID=router-" + c.name,
		"KAFKA_CHAT_LOG_TOPIC=" + c.chatLog, "KAFKA_CHAT_STATE_TOPIC=" + c.chatState,
		"GATEWAY_LEASE=" + lease.String(), "GATEWAY_DRAIN_WINDOW=500ms", "ROUTER_JANITOR_INTERVAL=200ms", "LOG_FORMAT=json",
		// Each client sends 200 messages/s, above the default per-user rate.
		"GATEWAY_MESSAGE_RATE=-1",
	}
	lr.env = append(lr.env, redisEnv...) // REDIS_ADDR, REDIS_CLUSTER
	for i := 1; i <= n; i++ {
		g := &gateway{c: c, name: fmt.Sprintf("gw-%d", i), addr: freeAddr(t)}
		g.id = c.name + "-" + g.name
		lr.env = append(lr.env, fmt.Sprintf("GW%d_PORT=%s", i, port(t, g.addr)))
		lr.gws = append(lr.gws, g)
		c.topics = append(c.topics, "messages-"+g.id)
		c.logs = append(c.logs, filepath.Join(lr.logs, g.name+".log"))
	}
	c.logs = append(c.logs, filepath.Join(lr.logs, "router.log"), filepath.Join(lr.logs, "supervisor.log"))
	t.Cleanup(func() {
		if out, _, err := lr.script("stop"); err != nil {
			t.Errorf("run.sh stop: %v\n%s", err, out)
		}
	})
	out, took, err := lr.script("start")
	if err != nil {
		t.Fatalf("run.sh start: %v\n%s", err, out)
	}
	t.Logf("run.sh start returned after %v: %s", took.Round(time.Millisecond), strings.TrimSpace(out))
	for _, g := range lr.gws {
		if st, body := readyz(g.addr); st != http.StatusOK {
			t.Fatalf("run.sh start returned but %s answers /readyz %d %s", g.name, st, body)
		}
	}
	return lr
}

func port(t *testing.T, addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// script runs deploy/local/run.sh action in this cluster's environment.
func (lr *localRun) script(action string) (string, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "../../deploy/local/run.sh", action)
	cmd.Env = append(os.Environ(), lr.env...) // later entries win
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	return string(out), time.Since(start), err
}

// pid is the process id in a member's pid file, 0 when there is none.
func (lr *localRun) pid(name string) int {
	b, err := os.ReadFile(filepath.Join(lr.state, name+".pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// processes lists the live processes started for this cluster (the
// supervisor, its members, its timers): those whose environment holds its
// RUN_STATE_DIR.
func (lr *localRun) processes() []string {
	mark := []byte("RUN_STATE_DIR=" + lr.state + "\x00")
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(env, mark) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		out = append(out, fmt.Sprintf("%d %s", pid, bytes.ReplaceAll(bytes.TrimRight(cmdline, "\x00"), []byte{0}, []byte{' '})))
	}
	return out
}

// readyz is the status and body of addr's /readyz (0 when it does not answer).
func readyz(addr string) (int, string) {
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, strings.TrimSpace(b.String())
}

// probeRoute checks that a note to self sent on from reaches the same
// user's session on to, retrying until timeout.
func probeRoute(t *testing.T, from, to *gateway, timeout time.Duration) {
	t.Helper()
	user := fmt.Sprintf("probe-%s-%d", from.name, counter.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	sender, _, err := wsclient.Dial(ctx, from.wsURL()+"?user="+user, nil)
	if err != nil {
		t.Fatalf("probe on %s: %v", from.name, err)
	}
	defer sender.CloseNow()
	watcher, _, err := wsclient.Dial(ctx, to.wsURL()+"?user="+user, nil)
	if err != nil {
		t.Fatalf("probe on %s: %v", to.name, err)
	}
	defer watcher.CloseNow()
	for i := 0; ; i++ {
		cid := fmt.Sprintf("probe-%d", i)
		if err := sender.SendTo(ctx, cid, user, "probe"); err != nil {
			t.Fatalf("probe send on %s: %v", from.name, err)
		}
		wctx, wcancel := context.WithTimeout(ctx, time.Second)
		_, err := watcher.WaitFor(wctx, func(f wsclient.Frame) bool { return f.Type == "message" && f.CID == cid })
		wcancel()
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("a message sent on %s never reached %s within %v", from.name, to.name, timeout)
		}
	}
}

// The supervisor of `make run` restarts a gateway killed with SIGKILL,
// while the other gateway keeps serving; the killed gateway's client moves
// to the other one, syncs and ends up with every acknowledged message
// exactly once; `run.sh stop` leaves no process behind.
func TestTheLocalClusterRestartsAKilledGatewayWhileTheOtherKeepsServingAndItsClientLosesNothing(t *testing.T) {
	start := time.Now()
	c := newCluster(t)
	lr := c.startLocalRun(2)
	gw1, gw2 := lr.gws[0], lr.gws[1]
	p := c.pairOn(gw1, gw2)
	wait := p.traffic(t)

	if !p.a.waitAcked(perClient*2/5, trafficMax) {
		t.Fatalf("alice never got %d sends acknowledged", perClient*2/5)
	}
	victim := lr.pid("gw-1")
	if victim <= 1 {
		t.Fatalf("no pid file for gw-1 in %s", lr.state)
	}
	killedAt := time.Now()
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 gw-1 (pid %d): %v", victim, err)
	}
	t.Logf("killed gw-1 (pid %d, kill -9) at %s", victim, killedAt.Format("15:04:05.000"))

	// Both, whichever comes first: alice moves to gw-2 and syncs there,
	// and the supervisor brings gw-1 back.
	var backAt, movedAt time.Time
	for deadline := killedAt.Add(reconnected); backAt.IsZero() || movedAt.IsZero(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%v after the kill: gw-1 ready again at %v, alice synced on gw-2 at %v (zero: not yet); gw-1 /readyz: %v",
				reconnected, backAt, movedAt, fmt.Sprint(readyz(gw1.addr)))
		}
		if st, _ := readyz(gw1.addr); backAt.IsZero() && st == http.StatusOK {
			backAt = time.Now()
		}
		if movedAt.IsZero() && p.a.await(0, onGateway(p.a, gw2)) {
			movedAt = time.Now()
		}
	}
	if pid := lr.pid("gw-1"); pid == victim || pid == 0 {
		t.Errorf("gw-1 is ready again, but its pid file says %d (killed: %d)", pid, victim)
	}
	t.Logf("gw-1 restarted by the supervisor and ready %v after the kill; alice synced on gw-2 %v after it",
		backAt.Sub(killedAt).Round(time.Millisecond), movedAt.Sub(killedAt).Round(time.Millisecond))
	// The restarted gw-1 routes both ways.
	probeRoute(t, gw1, gw2, 30*time.Second)
	probeRoute(t, gw2, gw1, 30*time.Second)

	wait()
	// gw-2 kept serving while gw-1 was down: bob's sends were acknowledged.
	p.b.mu.Lock()
	var whileDown int
	for _, a := range p.b.acked {
		if a.at.After(killedAt) && a.at.Before(backAt) {
			whileDown++
		}
	}
	p.b.mu.Unlock()
	t.Logf("bob's sends acknowledged by gw-2 while gw-1 was down: %d", whileDown)
	if whileDown == 0 {
		t.Errorf("gw-2 acknowledged none of bob's sends in the %v gw-1 was down", backAt.Sub(killedAt).Round(time.Millisecond))
	}
	p.finish(t, start)

	log, err := os.ReadFile(filepath.Join(lr.logs, "supervisor.log"))
	if want := "gw-1 exited (status 137); restarting in 1s"; err != nil || !bytes.Contains(log, []byte(want)) {
		t.Errorf("supervisor.log lacks %q (%v):\n%s", want, err, log)
	}

	// run.sh stop stops the supervisor and every member, and nothing of
	// this cluster keeps running.
	if len(lr.processes()) < 4 { // the supervisor, the router, two gateways
		t.Errorf("before run.sh stop, only these processes run: %v", lr.processes())
	}
	out, took, err := lr.script("stop")
	if err != nil {
		t.Fatalf("run.sh stop: %v\n%s", err, out)
	}
	t.Logf("run.sh stop took %v", took.Round(time.Millisecond))
	if left := lr.processes(); len(left) > 0 {
		t.Errorf("processes left after run.sh stop: %v", left)
	}
	for _, g := range append(lr.gws, &gateway{name: "router", addr: lr.router}) {
		if st, _ := readyz(g.addr); st != 0 {
			t.Errorf("%s still answers on %s after run.sh stop", g.name, g.addr)
		}
	}
	if pids, _ := filepath.Glob(filepath.Join(lr.state, "*.pid")); len(pids) > 0 {
		t.Errorf("pid files left after run.sh stop: %v", pids)
	}
}
