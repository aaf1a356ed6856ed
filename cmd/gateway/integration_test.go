//go:build integration

package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard-chat/switchboard/internal/kafkabus"
	"github.com/switchboard-chat/switchboard/internal/testkit"
	"github.com/switchboard-chat/switchboard/internal/wsclient"
)

func brokers() string { return testkit.KafkaAddr() }

// redisEnv points the binary at the shared Redis: REDIS_ADDR and
// REDIS_CLUSTER.
func redisEnv() []string { return testkit.RedisEnv() }

func TestAnUnreachableBrokerExitsWithOneClearLine(t *testing.T) {
	bin := buildBinary(t)
	runFailing(t, bin, append([]string{
		"SERVER_ID=gw-x", "HTTP_ADDR=127.0.0.1:0", "KAFKA_BROKERS=127.0.0.1:1", "KAFKA_CONNECT_TIMEOUT=2s",
		"AUTH_MODE=open",
	}, redisEnv()...), nil, "KAFKA_BROKERS=127.0.0.1:1")
}

func freePort(t *testing.T) string { return testkit.FreeAddr(t) }

func TestTheBinaryServesAndDrainsOnSIGTERM(t *testing.T) {
	bin := buildBinary(t)
	addr := freePort(t)
	id := "gw-bin-" + strings.ReplaceAll(time.Now().Format("150405.000000"), ".", "")
	prefix := "test:" + id + ":"
	cmd := exec.Command(bin)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "SERVER_ID="+id, "HTTP_ADDR="+addr, "KAFKA_BROKERS="+brokers(),
		"REDIS_PREFIX="+prefix, "KAFKA_CHAT_LOG_TOPIC=chat-log-"+id,
		"KAFKA_CHAT_STATE_TOPIC=chat-state-"+id,
		"LOG_FORMAT=json", "GATEWAY_DRAIN_WINDOW=300ms", "AUTH_MODE=open")
	cmd.Env = append(cmd.Env, redisEnv()...)
	t.Cleanup(func() {
		admin, err := kafkabus.NewAdmin(kafkabus.Config{Brokers: []string{brokers()}})
		if err == nil {
			_ = admin.DeleteTopics(context.Background(), "chat-log-"+id, "chat-state-"+id, "messages-"+id)
			admin.Close()
		}
	})
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logs := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs <- sc.Text()
		}
		close(logs)
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready after 60s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "<html") {
		t.Fatalf("web client: %d %.80s", resp.StatusCode, page)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, _, err := wsclient.Dial(ctx, "ws://"+addr+"/ws?user=alice", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cl.Hello.Server != id {
		t.Fatalf("hello from %s, want %s", cl.Hello.Server, id)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if f, err := cl.WaitFor(ctx, func(f wsclient.Frame) bool { return f.Type == "reconnect" }); err != nil {
		t.Fatalf("no reconnect frame: %v", err)
	} else if f.AfterMS > 300 {
		t.Fatalf("after_ms %d beyond the drain window", f.AfterMS)
	}
	<-cl.Done()
	if st := websocket.CloseStatus(cl.Err()); st != websocket.StatusGoingAway {
		t.Fatalf("closed with %v, want 1001", st)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	var sawOpenWarning, sawDrained bool
	for l := range logs {
		sawOpenWarning = sawOpenWarning || strings.Contains(l, "AUTH MODE IS OPEN")
		sawDrained = sawDrained || strings.Contains(l, `"msg":"drained"`)
	}
	if !sawOpenWarning || !sawDrained {
		t.Fatalf("logs lack the open-mode warning (%v) or the drained line (%v)", sawOpenWarning, sawDrained)
	}
}
