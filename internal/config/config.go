// Package config loads service configuration from a YAML file and the
// environment (every key can be overridden: kafka.brokers by KAFKA_BROKERS,
// server_id by SERVER_ID, and so on), and opens the clients it describes,
// failing with one line that names the key or address at fault.
package config

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/viper"

	"github.com/switchboard-chat/switchboard/internal/kafkabus"
)

// Common is the part of the configuration every service shares.
type Common struct {
	LogLevel  string // LOG_LEVEL: debug, info, warn, error
	LogFormat string // LOG_FORMAT: text or json
	HTTPAddr  string // HTTP_ADDR
	// ADMIN_ADDR: /metrics, probes, pprof and the router's ops page; empty
	// is loopback beside HTTP_ADDR (see admin.DefaultAddr).
	AdminAddr  string
	AdminPprof bool // ADMIN_PPROF: serve /debug/pprof/ on the admin address

	KafkaBrokers        []string      // KAFKA_BROKERS, comma separated
	KafkaConnectTimeout time.Duration // KAFKA_CONNECT_TIMEOUT: start-up reachability check
	KafkaBatchTimeout   time.Duration // KAFKA_BATCH_TIMEOUT
	ChatLogTopic        string        // KAFKA_CHAT_LOG_TOPIC
	ChatLogPartitions   int           // KAFKA_CHAT_LOG_PARTITIONS
	ChatStateTopic      string        // KAFKA_CHAT_STATE_TOPIC
	// KAFKA_REPLICATION_FACTOR, KAFKA_MIN_INSYNC_REPLICAS of the topics a
	// service creates; 0 is "auto" (see kafkabus.Config).
	KafkaReplicationFactor int
	KafkaMinInsyncReplicas int

	RedisAddr     string        // REDIS_ADDR
	RedisDB       int           // REDIS_DB
	RedisPassword string        // REDIS_PASSWORD
	RedisPrefix   string        // REDIS_PREFIX
	RedisTimeout  time.Duration // REDIS_TIMEOUT
	Lease         time.Duration // GATEWAY_LEASE: sessions die with their gateway's lease
}

// defaults every service shares.
var commonDefaults = map[string]any{
	"log.level":                 "info",
	"log.format":                "text",
	"admin.addr":                "",
	"admin.pprof":               false,
	"kafka.brokers":             []string{"127.0.0.1:9092"},
	"kafka.connect_timeout":     "10s",
	"kafka.batch_timeout":       "2ms",
	"kafka.chat_log_topic":      "chat-log",
	"kafka.chat_log_partitions": 4,
	"kafka.chat_state_topic":    "chat-state",
	"kafka.replication_factor":  "auto",
	"kafka.min_insync_replicas": "auto",
	"redis.addr":                "127.0.0.1:6379",
	"redis.db":                  0,
	"redis.password":            "",
	"redis.prefix":              "sb:",
	"redis.timeout":             "2s",
	"gateway.lease":             "15s",
}

// load reads file (when it exists, or always when required) over defaults,
// with environment overrides.
func load(file string, required bool, defaults map[string]any) (*viper.Viper, error) {
	v := viper.New()
	for k, val := range commonDefaults {
		v.SetDefault(k, val)
	}
	for k, val := range defaults {
		v.SetDefault(k, val)
	}
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	if file != "" {
		v.SetConfigFile(file)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			if required || !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("config file %s: %w", file, err)
			}
		}
	}
	return v, nil
}

func common(v *viper.Viper) (Common, error) {
	c := Common{
		LogLevel:          v.GetString("log.level"),
		LogFormat:         v.GetString("log.format"),
		HTTPAddr:          v.GetString("http_addr"),
		AdminAddr:         v.GetString("admin.addr"),
		AdminPprof:        v.GetBool("admin.pprof"),
		KafkaBrokers:      list(v.GetStringSlice("kafka.brokers")),
		ChatLogTopic:      v.GetString("kafka.chat_log_topic"),
		ChatLogPartitions: v.GetInt("kafka.chat_log_partitions"),
		ChatStateTopic:    v.GetString("kafka.chat_state_topic"),
		RedisAddr:         v.GetString("redis.addr"),
		RedisDB:           v.GetInt("redis.db"),
		RedisPassword:     v.GetString("redis.password"),
		RedisPrefix:       v.GetString("redis.prefix"),
	}
	var err error
	durations := []struct {
		key string
		dst *time.Duration
	}{
		{"kafka.connect_timeout", &c.KafkaConnectTimeout},
		{"kafka.batch_timeout", &c.KafkaBatchTimeout},
		{"redis.timeout", &c.RedisTimeout},
		{"gateway.lease", &c.Lease},
	}
	for _, d := range durations {
		if *d.dst, err = duration(v, d.key); err != nil {
			return c, err
		}
	}
	if c.KafkaReplicationFactor, err = autoCount(v, "kafka.replication_factor"); err != nil {
		return c, err
	}
	if c.KafkaMinInsyncReplicas, err = autoCount(v, "kafka.min_insync_replicas"); err != nil {
		return c, err
	}
	if rf, isr := c.KafkaReplicationFactor, c.KafkaMinInsyncReplicas; rf > 0 && isr > rf {
		return c, fmt.Errorf("KAFKA_MIN_INSYNC_REPLICAS (kafka.min_insync_replicas) %d exceeds KAFKA_REPLICATION_FACTOR %d: every send would fail", isr, rf)
	}
	switch {
	case len(c.KafkaBrokers) == 0:
		return c, errors.New("KAFKA_BROKERS (kafka.brokers) is empty")
	case c.RedisAddr == "":
		return c, errors.New("REDIS_ADDR (redis.addr) is empty")
	case c.HTTPAddr == "":
		return c, errors.New("HTTP_ADDR (http_addr) is empty")
	case c.LogFormat != "text" && c.LogFormat != "json":
		return c, fmt.Errorf("LOG_FORMAT (log.format) %q: want text or json", c.LogFormat)
	}
	if _, err := level(c.LogLevel); err != nil {
		return c, err
	}
	return c, nil
}

// EnvName returns the environment variable that overrides key.
func EnvName(key string) string {
	return strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

func duration(v *viper.Viper, key string) (time.Duration, error) {
	raw := v.GetString(key)
	d, err := time.ParseDuration(raw)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s (%s) %q: want a duration such as 500ms or 10s", EnvName(key), key, raw)
	}
	return d, nil
}

// autoCount reads "auto" (0) or a positive count.
func autoCount(v *viper.Viper, key string) (int, error) {
	raw := strings.TrimSpace(v.GetString(key))
	if raw == "" || raw == "auto" {
		return 0, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%s (%s) %q: want auto or a count from 1", EnvName(key), key, raw)
	}
	return n, nil
}

// list splits comma-separated entries (an environment variable gives one
// string) and drops empty ones.
func list(in []string) []string {
	var out []string
	for _, s := range in {
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func level(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("LOG_LEVEL (log.level) %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// Logger returns the configured structured logger writing to w.
func (c Common) Logger(w io.Writer) *slog.Logger {
	l, _ := level(c.LogLevel) // validated on load
	opts := &slog.HandlerOptions{Level: l}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// Kafka returns the kafkabus configuration.
func (c Common) Kafka(clientID string) kafkabus.Config {
	return kafkabus.Config{Brokers: c.KafkaBrokers, ClientID: clientID, BatchTimeout: c.KafkaBatchTimeout,
		ReplicationFactor: c.KafkaReplicationFactor, MinInsyncReplicas: c.KafkaMinInsyncReplicas}
}

// ConnectRedis opens the Redis client and checks that it answers.
func (c Common) ConnectRedis(ctx context.Context) (*redis.Client, error) {
	rdb := redis.NewClient(&redis.Options{
		Addr: c.RedisAddr, DB: c.RedisDB, Password: c.RedisPassword,
		DialTimeout: c.RedisTimeout, ReadTimeout: c.RedisTimeout, WriteTimeout: c.RedisTimeout,
		PoolSize: 64,
	})
	pctx, cancel := context.WithTimeout(ctx, c.RedisTimeout+time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("cannot reach Redis at REDIS_ADDR=%s: %v", c.RedisAddr, err)
	}
	return rdb, nil
}

// CheckKafka checks that a broker answers within the connect timeout.
func (c Common) CheckKafka(ctx context.Context) error {
	admin, err := kafkabus.NewAdmin(kafkabus.Config{Brokers: c.KafkaBrokers, DialTimeout: c.KafkaConnectTimeout})
	if err != nil {
		return err
	}
	defer admin.Close()
	cctx, cancel := context.WithTimeout(ctx, c.KafkaConnectTimeout)
	defer cancel()
	if err := admin.Ping(cctx); err != nil {
		return fmt.Errorf("cannot reach Kafka at KAFKA_BROKERS=%s: %s",
			strings.Join(c.KafkaBrokers, ","), strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return nil
}

// OneLine folds err's message onto one line for a fatal start-up report.
func OneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// ConfigFile returns the config file to read: the -config flag, else the
// CONFIG environment variable (both required to exist), else def (used
// only when it exists).
func ConfigFile(flagValue, def string) (string, bool) {
	if flagValue != "" {
		return flagValue, true
	}
	if env := os.Getenv("CONFIG"); env != "" {
		return env, true
	}
	return def, false
}

// redisLog sends go-redis's internal messages to slog at debug level, so
// they neither bypass the structured log nor clutter a start-up failure.
type redisLog struct{ log *slog.Logger }

func (r redisLog) Printf(ctx context.Context, format string, v ...any) {
	r.log.DebugContext(ctx, "redis client", "msg", fmt.Sprintf(format, v...))
}

// RouteRedisLogs makes go-redis log through log. go-redis's logger is
// process-wide, so mains call this once.
func RouteRedisLogs(log *slog.Logger) { redis.SetLogger(redisLog{log}) }
