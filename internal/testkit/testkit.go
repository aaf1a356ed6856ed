//go:build integration

// Package testkit holds what the integration test suites share: where the
// Kafka broker and Redis that `make test` starts are, free loopback
// addresses, waiting for a condition, and removing a test's topics and
// keys.
package testkit

import (
	"context"
	"net"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/internal/kafkabus"
)

// Env returns the environment variable key, or def when it is empty.
func Env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// KafkaAddr is the shared broker: SWITCHBOARD_KAFKA, default 127.0.0.1:9092.
func KafkaAddr() string { return Env("SWITCHBOARD_KAFKA", "127.0.0.1:9092") }

// RedisAddr is the shared Redis: SWITCHBOARD_REDIS, default 127.0.0.1:6379.
func RedisAddr() string { return Env("SWITCHBOARD_REDIS", "127.0.0.1:6379") }

// FreeAddr returns a loopback host:port nobody listens on right now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Eventually polls cond every 20ms until it holds, failing the test after
// timeout.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// DropNamespace deletes a test's topics and every Redis key under its
// prefix, logging (not failing) what goes wrong.
func DropNamespace(t testing.TB, admin *kafkabus.Admin, rdb *redis.Client, prefix string, topics []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if len(topics) > 0 {
		if err := admin.DeleteTopics(ctx, topics...); err != nil {
			t.Logf("cleanup: %v", err)
		}
	}
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Logf("cleanup: %v", err)
	}
	if len(keys) > 0 {
		rdb.Del(ctx, keys...)
	}
}

// Connect opens the shared Redis and a Kafka admin client, and fails the
// test unless both answer within 10s.
func Connect(t testing.TB, clientID string) (*redis.Client, *kafkabus.Admin) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: RedisAddr()})
	admin, err := kafkabus.NewAdmin(kafkabus.Config{Brokers: []string{KafkaAddr()}, ClientID: clientID})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis at %s: %v (make test starts it)", RedisAddr(), err)
	}
	if err := admin.Ping(ctx); err != nil {
		t.Fatalf("Kafka at %s: %v (make test starts it)", KafkaAddr(), err)
	}
	return rdb, admin
}
