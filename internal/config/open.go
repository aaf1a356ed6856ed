package config

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
)

// Main runs a service's run function with a context that SIGINT and
// SIGTERM cancel, and exits 1 with one "name: error" line on failure.
func Main(name string, run func(ctx context.Context, args []string) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		stop()
		fmt.Fprintln(os.Stderr, name+": "+OneLine(err))
		os.Exit(1)
	}
}

// Deps are what every service opens at start.
type Deps struct {
	Log      *slog.Logger
	Redis    redis.UniversalClient
	Registry *prometheus.Registry // with the Go and process collectors
}

// Open makes the logger, connects to Redis and checks that Kafka answers,
// failing with the one-line errors of ConnectRedis and CheckKafka. The
// caller closes Redis.
func (c Common) Open(ctx context.Context) (Deps, error) {
	log := c.Logger(os.Stderr)
	RouteRedisLogs(log)
	rdb, err := c.ConnectRedis(ctx)
	if err != nil {
		return Deps{}, err
	}
	if err := c.CheckKafka(ctx); err != nil {
		rdb.Close()
		return Deps{}, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return Deps{Log: log, Redis: rdb, Registry: reg}, nil
}
