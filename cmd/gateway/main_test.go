package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildBinary compiles this command into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "gateway")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// runFailing runs the binary with env added and checks that it exits
// non-zero within 30s with exactly one stderr line containing every want.
func runFailing(t *testing.T, bin string, env []string, args []string, wants ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = "../.." // the repository root, where configs/ lives
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("exited 0 with %v", env)
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("still running after 30s with %v", env)
	}
	lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "gateway: ") {
		t.Fatalf("last stderr line %q is not the gateway's error line; stderr:\n%s", last, stderr.String())
	}
	for _, l := range lines[:len(lines)-1] {
		if !strings.Contains(l, "AUTH MODE IS OPEN") {
			t.Fatalf("unexpected stderr line %q", l)
		}
	}
	for _, w := range wants {
		if !strings.Contains(last, w) {
			t.Fatalf("error line %q does not mention %q", last, w)
		}
	}
}

func TestBadConfigurationExitsWithOneClearLine(t *testing.T) {
	bin := buildBinary(t)
	base := []string{"HTTP_ADDR=127.0.0.1:0", "KAFKA_CONNECT_TIMEOUT=2s", "REDIS_TIMEOUT=500ms",
		"AUTH_JWT_SECRET=" + strings.Repeat("s", 32)}
	for _, tc := range []struct {
		name  string
		env   []string
		args  []string
		wants []string
	}{
		{"a missing SERVER_ID", []string{"SERVER_ID="}, nil, []string{"SERVER_ID", "required"}},
		{"a SERVER_ID with a space", []string{"SERVER_ID=gw 1"}, nil, []string{"SERVER_ID", "Kafka topic name"}},
		{"a SERVER_ID with a slash", []string{"SERVER_ID=gw/1"}, nil, []string{"SERVER_ID", "Kafka topic name"}},
		{"an unreachable Redis", []string{"SERVER_ID=gw-x", "REDIS_ADDR=127.0.0.1:1", "REDIS_CLUSTER=false"}, nil, []string{"REDIS_ADDR=127.0.0.1:1"}},
		{"a bad duration", []string{"SERVER_ID=gw-x", "KAFKA_PRODUCE_TIMEOUT=soon"}, nil, []string{"KAFKA_PRODUCE_TIMEOUT", "soon"}},
		{"an unknown auth mode", []string{"SERVER_ID=gw-x", "AUTH_MODE=magic"}, nil, []string{"AUTH_MODE", "magic"}},
		{"jwt mode without a secret", []string{"SERVER_ID=gw-x", "AUTH_JWT_SECRET="}, nil, []string{"AUTH_MODE=jwt needs AUTH_JWT_SECRET"}},
		{"a short jwt secret", []string{"SERVER_ID=gw-x", "AUTH_JWT_SECRET=short"}, nil, []string{"AUTH_JWT_SECRET", "shorter than 32 bytes"}},
		{"a jwt key without its kid", []string{"SERVER_ID=gw-x", "AUTH_JWT_KEYS=" + strings.Repeat("k", 40)}, nil, []string{"AUTH_JWT_KEYS", "kid:secret"}},
		{"a missing config file", []string{"SERVER_ID=gw-x"}, []string{"-config", "nope.yaml"}, []string{"nope.yaml"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runFailing(t, bin, append(append([]string{}, base...), tc.env...), tc.args, tc.wants...)
		})
	}
}
