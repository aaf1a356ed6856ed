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
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/viper"

	"github.com/switchboard-chat/switchboard/internal/config/setting"
	"github.com/switchboard-chat/switchboard/internal/kafkabus"
	"github.com/switchboard-chat/switchboard/internal/rediskit"
	"github.com/switchboard-chat/switchboard/internal/route"
)

// Common is the part of the configuration every service shares. Each
// field names its key (the YAML key; the environment variable is EnvName
// of it) and default in its tags, as do the service Configs that Gateway
// and Router embed: see package setting. A key may tag several fields
// (HTTPAddr is also the service's Addr); they all get its value.
type Common struct {
	LogLevel  string `key:"log.level" default:"info"`  // debug, info, warn, error
	LogFormat string `key:"log.format" default:"text"` // text or json
	HTTPAddr  string `key:"http_addr"`                 // default: the service's

	KafkaBrokers        []string      `key:"kafka.brokers" default:"127.0.0.1:9092"`
	KafkaConnectTimeout time.Duration `key:"kafka.connect_timeout" default:"10s"` // start-up reachability check
	// Bus holds the rest of the kafkabus settings
	// (KAFKA_REPLICATION_FACTOR, KAFKA_MIN_INSYNC_REPLICAS); Kafka adds the
	// brokers and the client id.
	Bus kafkabus.Config

	// RedisAddr is one address, or a comma-separated list of a cluster's
	// nodes (any of them will do; the client discovers the others).
	RedisAddr     string        `key:"redis.addr" default:"127.0.0.1:6379"`
	RedisCluster  bool          `key:"redis.cluster"`
	RedisDB       int           `key:"redis.db"`
	RedisPassword string        `key:"redis.password"`
	RedisTimeout  time.Duration `key:"redis.timeout" default:"2s"` // the client's and gateway.Config's
	// Route is the routing table's: REDIS_PREFIX and GATEWAY_LEASE
	// (sessions die with their gateway's lease).
	Route route.Config
}

// load fills dst (a pointer to a Gateway or Router) from file (when it
// exists, or always when required), then the environment, over the
// defaults its fields' tags declare.
func load(file string, required bool, dst any) error {
	fields := setting.Fields(dst)
	v := viper.New()
	defaults := map[string]string{}
	for _, f := range fields {
		if f.Key == "" {
			continue
		}
		if d, ok := defaults[f.Key]; ok && f.Default != "" && d != "" && d != f.Default {
			return fmt.Errorf("config: %s has two defaults, %q and %q (%s)", f.Key, d, f.Default, f.Name)
		}
		if f.Default != "" || defaults[f.Key] == "" {
			defaults[f.Key] = f.Default
		}
	}
	for k, d := range defaults {
		v.SetDefault(k, d)
		if err := v.BindEnv(k, EnvName(k)); err != nil {
			return err
		}
	}
	if file != "" {
		v.SetConfigFile(file)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			if required || !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("config file %s: %w", file, err)
			}
		}
	}
	for _, f := range fields {
		if f.Key == "" {
			continue
		}
		if err := decode(v, f.Key, defaults[f.Key], f.Value); err != nil {
			return err
		}
	}
	return nil
}

var durationType = reflect.TypeOf(time.Duration(0))

// decode sets dst from key as viper's typed getters read it.
func decode(v *viper.Viper, key, def string, dst reflect.Value) error {
	switch {
	case dst.Type() == durationType:
		d, err := duration(v, key)
		if err != nil {
			return err
		}
		dst.SetInt(int64(d))
	case dst.CanInt() && def == setting.Auto:
		n, err := autoCount(v, key)
		if err != nil {
			return err
		}
		dst.SetInt(int64(n))
	case dst.CanInt():
		dst.SetInt(v.GetInt64(key))
	case dst.CanFloat():
		dst.SetFloat(v.GetFloat64(key))
	case dst.Kind() == reflect.Bool:
		dst.SetBool(v.GetBool(key))
	case dst.Kind() == reflect.String:
		dst.SetString(v.GetString(key))
	case dst.Kind() == reflect.Slice && dst.Type().Elem().Kind() == reflect.String:
		dst.Set(reflect.ValueOf(list(v.GetStringSlice(key))).Convert(dst.Type()))
	default:
		return fmt.Errorf("config: %s: unsupported type %s", key, dst.Type())
	}
	return nil
}

// check validates what every service shares.
func (c Common) check() error {
	if rf, isr := c.Bus.ReplicationFactor, c.Bus.MinInsyncReplicas; rf > 0 && isr > rf {
		return fmt.Errorf("KAFKA_MIN_INSYNC_REPLICAS (kafka.min_insync_replicas) %d exceeds KAFKA_REPLICATION_FACTOR %d: every send would fail", isr, rf)
	}
	switch {
	case len(c.KafkaBrokers) == 0:
		return errors.New("KAFKA_BROKERS (kafka.brokers) is empty")
	case c.RedisAddr == "":
		return errors.New("REDIS_ADDR (redis.addr) is empty")
	case c.HTTPAddr == "":
		return errors.New("HTTP_ADDR (http_addr) is empty")
	case c.LogFormat != "text" && c.LogFormat != "json":
		return fmt.Errorf("LOG_FORMAT (log.format) %q: want text or json", c.LogFormat)
	}
	if _, err := level(c.LogLevel); err != nil {
		return err
	}
	return nil
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
	k := c.Bus
	k.Brokers, k.ClientID = c.KafkaBrokers, clientID
	return k
}

// ConnectRedis opens the Redis client (a cluster client when
// REDIS_CLUSTER is set) and checks that it answers.
func (c Common) ConnectRedis(ctx context.Context) (redis.UniversalClient, error) {
	rdb, err := rediskit.New(rediskit.Options{
		Addrs: rediskit.ParseAddrs(c.RedisAddr), Cluster: c.RedisCluster,
		DB: c.RedisDB, Password: c.RedisPassword, Timeout: c.RedisTimeout, PoolSize: 64,
	})
	if err != nil {
		return nil, fmt.Errorf("REDIS_ADDR=%s: %v", c.RedisAddr, err)
	}
	pctx, cancel := context.WithTimeout(ctx, c.RedisTimeout+time.Second)
	defer cancel()
	if err := rediskit.Ping(pctx, rdb); err != nil {
		rdb.Close()
		what := "Redis"
		if c.RedisCluster {
			what = "the Redis Cluster"
		}
		return nil, fmt.Errorf("cannot reach %s at REDIS_ADDR=%s: %v", what, c.RedisAddr, err)
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
