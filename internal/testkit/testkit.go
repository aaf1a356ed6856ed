//go:build integration

// Package testkit holds what the integration test suites share: where the
// Kafka broker and Redis that `make test` starts are (a single Redis, or a
// Redis Cluster with `make test REDIS_CLUSTER=1`), free loopback addresses,
// waiting for a condition, and removing a test's topics and keys.
package testkit

import (
	"context"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/internal/kafkabus"
	"github.com/switchboard-chat/switchboard/internal/rediskit"
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

// RedisAddr is the shared Redis: SWITCHBOARD_REDIS, default 127.0.0.1:6379;
// for a cluster, its nodes, comma-separated.
func RedisAddr() string { return Env("SWITCHBOARD_REDIS", "127.0.0.1:6379") }

// RedisCluster reports whether the shared Redis is a Redis Cluster:
// SWITCHBOARD_REDIS_CLUSTER set to 1 or true (any value strconv.ParseBool
// reads as true).
func RedisCluster() bool {
	on, _ := strconv.ParseBool(os.Getenv("SWITCHBOARD_REDIS_CLUSTER"))
	return on
}

// RedisEnv is the environment that points a gateway or router binary at the
// shared Redis: REDIS_ADDR and REDIS_CLUSTER.
func RedisEnv() []string {
	return []string{"REDIS_ADDR=" + RedisAddr(), "REDIS_CLUSTER=" + strconv.FormatBool(RedisCluster())}
}

// RedisOptions describes the shared Redis for rediskit.New.
func RedisOptions() rediskit.Options {
	return rediskit.Options{Addrs: rediskit.ParseAddrs(RedisAddr()), Cluster: RedisCluster()}
}

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
func DropNamespace(t testing.TB, admin *kafkabus.Admin, rdb redis.UniversalClient, prefix string, topics []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if len(topics) > 0 {
		if err := admin.DeleteTopics(ctx, topics...); err != nil {
			t.Logf("cleanup: %v", err)
		}
	}
	if _, err := rediskit.DeleteMatching(ctx, rdb, prefix+"*"); err != nil {
		t.Logf("cleanup: %v", err)
	}
}

// ConnectRedis opens the shared Redis (a cluster client when
// RedisCluster), and fails the test unless it answers within 10s: on a
// cluster, every master, with every slot served. On a single Redis the
// client carries a rediskit.SlotGuard, and the test fails at its end if
// anything it sent would have been refused by a cluster (CROSSSLOT).
func ConnectRedis(t testing.TB) redis.UniversalClient {
	t.Helper()
	rdb, err := rediskit.New(RedisOptions())
	if err != nil {
		t.Fatalf("Redis at %s: %v", RedisAddr(), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rediskit.Ping(ctx, rdb); err != nil {
		rdb.Close()
		t.Fatalf("Redis at %s (cluster: %v): %v (make test starts it)", RedisAddr(), RedisCluster(), err)
	}
	if !RedisCluster() {
		guard := &rediskit.SlotGuard{}
		rdb.AddHook(guard)
		t.Cleanup(func() {
			if v := guard.Violations(); len(v) > 0 {
				t.Errorf("%d Redis commands would fail on a Redis Cluster (CROSSSLOT); the first: %s", len(v), v[0])
			}
		})
	}
	return rdb
}

// Connect opens the shared Redis and a Kafka admin client, and fails the
// test unless both answer within 10s.
func Connect(t testing.TB, clientID string) (redis.UniversalClient, *kafkabus.Admin) {
	t.Helper()
	rdb := ConnectRedis(t)
	admin, err := kafkabus.NewAdmin(kafkabus.Config{Brokers: []string{KafkaAddr()}, ClientID: clientID})
	if err != nil {
		rdb.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.Ping(ctx); err != nil {
		rdb.Close()
		admin.Close()
		t.Fatalf("Kafka at %s: %v (make test starts it)", KafkaAddr(), err)
	}
	return rdb, admin
}
