//go:build integration

package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/internal/kafkabus"
	"github.com/switchboard-chat/switchboard/internal/testkit"
)

func env(key, def string) string { return testkit.Env(key, def) }

// runRouter builds and runs the router with args and extra environment,
// bounded by 60s, and returns its output and exit error.
func runRouter(t *testing.T, extra []string, args ...string) (string, error) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "router")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), extra...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestRouterRebuildReplaysTheLogAndExits(t *testing.T) {
	id := "rb" + strings.ReplaceAll(time.Now().Format("150405.000000"), ".", "")
	topic := "chat-log-" + id
	t.Cleanup(func() {
		admin, err := kafkabus.NewAdmin(kafkabus.Config{Brokers: []string{env("SWITCHBOARD_KAFKA", "127.0.0.1:9092")}})
		if err == nil {
			_ = admin.DeleteTopics(context.Background(), topic, "chat-state-"+id)
			admin.Close()
		}
	})
	out, err := runRouter(t, append([]string{
		"KAFKA_BROKERS=" + env("SWITCHBOARD_KAFKA", "127.0.0.1:9092"),
		"REDIS_PREFIX=test:" + id + ":", "KAFKA_CHAT_LOG_TOPIC=" + topic, "KAFKA_CHAT_STATE_TOPIC=chat-state-" + id, "HTTP_ADDR=127.0.0.1:0",
	}, testkit.RedisEnv()...), "rebuild")
	if err != nil || !strings.Contains(out, "rebuilt: ") {
		t.Fatalf("router rebuild: %v\n%s", err, out)
	}
}

func TestTheRouterRefusesBadConfigurationWithOneLine(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"an unreachable Redis", []string{"REDIS_ADDR=127.0.0.1:1", "REDIS_CLUSTER=false", "REDIS_TIMEOUT=500ms"}, nil, "REDIS_ADDR=127.0.0.1:1"},
		{"an unreachable broker", append([]string{"KAFKA_BROKERS=127.0.0.1:1", "KAFKA_CONNECT_TIMEOUT=2s"}, testkit.RedisEnv()...), nil, "KAFKA_BROKERS=127.0.0.1:1"},
		{"an unknown command", nil, []string{"explode"}, `unknown command "explode"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runRouter(t, append([]string{"HTTP_ADDR=127.0.0.1:0"}, tc.env...), tc.args...)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if err == nil || len(lines) != 1 || !strings.HasPrefix(lines[0], "router: ") || !strings.Contains(lines[0], tc.want) {
				t.Fatalf("exit %v, output:\n%s\nwant one line naming %q", err, out, tc.want)
			}
		})
	}
}
