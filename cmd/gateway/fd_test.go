//go:build integration

package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/internal/kafkabus"
	"github.com/switchboard-chat/switchboard/internal/wsclient"
)

// TestAGatewayOutOfDescriptorsKeepsServing runs the real binary with 256
// descriptors (prlimit), fills them with stalled connections until accept
// fails with EMFILE, and checks that the gateway backs off with a metric
// and one log line rather than spinning, and serves again once they close.
func TestAGatewayOutOfDescriptorsKeepsServing(t *testing.T) {
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("prlimit (util-linux) not installed")
	}
	bin := buildBinary(t)
	addr, adminAddr := freePort(t), freePort(t)
	id := "gw-fd-" + strings.ReplaceAll(time.Now().Format("150405.000000"), ".", "")
	cmd := exec.Command(prlimit, "--nofile=256:256", bin)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "SERVER_ID="+id, "HTTP_ADDR="+addr, "ADMIN_ADDR="+adminAddr, "KAFKA_BROKERS="+brokers(), "AUTH_MODE=open",
		"REDIS_PREFIX=test:"+id+":", "KAFKA_CHAT_LOG_TOPIC=chat-log-"+id,
		"KAFKA_CHAT_STATE_TOPIC=chat-state-"+id, "KAFKA_AUDIT_TOPIC=chat-audit-"+id,
		"GATEWAY_MAX_CONNS_PER_IP=-1", "LOG_FORMAT=json", "GATEWAY_DRAIN_WINDOW=100ms")
	cmd.Env = append(cmd.Env, redisEnv()...)
	t.Cleanup(func() {
		admin, err := kafkabus.NewAdmin(kafkabus.Config{Brokers: []string{brokers()}})
		if err == nil {
			_ = admin.DeleteTopics(context.Background(), "chat-log-"+id, "chat-state-"+id, "messages-"+id, "chat-audit-"+id)
			admin.Close()
		}
	})
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	backoffLines := make(chan string, 100)
	var logMu sync.Mutex
	var logTail []string
	t.Cleanup(func() {
		if t.Failed() {
			logMu.Lock()
			t.Logf("gateway log:\n%s", strings.Join(logTail, "\n"))
			logMu.Unlock()
		}
	})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logMu.Lock()
			logTail = append(logTail[max(0, len(logTail)-30):], sc.Text())
			logMu.Unlock()
			if strings.Contains(sc.Text(), "lack of descriptors") {
				backoffLines <- sc.Text()
			}
		}
	}()
	get := func(path string) (int, string) {
		cl := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		host := addr
		if path == "/metrics" {
			host = adminAddr // never on the public port
		}
		resp, err := cl.Get("http://" + host + path)
		if err != nil {
			return 0, ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(60 * time.Second)
	for st, _ := get("/readyz"); st != 200; st, _ = get("/readyz") {
		if time.Now().After(deadline) {
			t.Fatal("not ready after 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Stalled connections (no request) until the gateway is out of
	// descriptors: at most 400, all on loopback.
	var stalled []net.Conn
	defer func() {
		for _, c := range stalled {
			c.Close()
		}
	}()
	var line string
	for i := 0; i < 400 && line == ""; i++ {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break // the backlog is full too
		}
		stalled = append(stalled, c)
		select {
		case line = <-backoffLines:
		default:
		}
	}
	if line == "" {
		select {
		case <-backoffLines:
		case <-time.After(5 * time.Second):
			t.Fatalf("no backoff log line after %d stalled connections", len(stalled))
		}
	}
	// One second out of descriptors: backoff doubles to 1 s, so a handful of
	// failed accepts, not a spin.
	time.Sleep(time.Second)
	for _, c := range stalled {
		c.Close()
	}
	stalled = nil
	deadline = time.Now().Add(15 * time.Second)
	for st := 0; st != 200; st, _ = get("/healthz") {
		if time.Now().After(deadline) {
			t.Fatal("the gateway did not serve again within 15s of the connections closing")
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, metrics := get("/metrics")
	var failed float64
	for _, l := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(l, "switchboard_gateway_accept_errors_total "); ok {
			failed, _ = strconv.ParseFloat(v, 64)
		}
	}
	if failed < 1 || failed > 50 {
		t.Fatalf("accept_errors_total = %v, want a few (backoff, not a spin)", failed)
	}
	if n := len(backoffLines); n > 3 {
		t.Fatalf("%d more backoff log lines; want one per episode", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, _, err := wsclient.Dial(ctx, "ws://"+addr+"/ws?user=alice", nil)
	if err != nil {
		t.Fatalf("WebSocket after the shortage: %v", err)
	}
	cl.Close()
	t.Logf("%v failed accepts while out of descriptors", failed)
}
