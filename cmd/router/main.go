// Command router runs Switchboard's materializer and janitor.
//
//	router [-config configs/router.yaml]           run
//	router [-config configs/router.yaml] rebuild   delete the Redis views and replay chat-log, then exit
//
// Every configuration key can be overridden by environment (KAFKA_BROKERS,
// REDIS_ADDR, HTTP_ADDR, …); see the README.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/switchboard-chat/switchboard/internal/config"
	"github.com/switchboard-chat/switchboard/internal/route"
	"github.com/switchboard-chat/switchboard/internal/router"
	"github.com/switchboard-chat/switchboard/internal/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "router: "+config.OneLine(err))
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("router", flag.ContinueOnError)
	file := fs.String("config", "", "config file (default configs/router.yaml when present; or CONFIG)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rebuild := false
	switch fs.Arg(0) {
	case "":
	case "rebuild":
		rebuild = true
	default:
		return fmt.Errorf("unknown command %q (want no command, or rebuild)", fs.Arg(0))
	}
	path, required := config.ConfigFile(*file, "configs/router.yaml")
	cfg, err := config.LoadRouter(path, required)
	if err != nil {
		return err
	}
	log := cfg.Logger(os.Stderr)
	config.RouteRedisLogs(log)
	rdb, err := cfg.ConnectRedis(ctx)
	if err != nil {
		return err
	}
	defer rdb.Close()
	if err := cfg.CheckKafka(ctx); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	r, err := router.New(router.Config{
		Addr:              cfg.HTTPAddr,
		ChatLogTopic:      cfg.ChatLogTopic,
		ChatLogPartitions: cfg.ChatLogPartitions,
		GroupID:           cfg.GroupID,
		JanitorInterval:   cfg.JanitorInterval,
		DeadAfter:         cfg.DeadAfter,
		OrphanGrace:       cfg.OrphanGrace,
	}, router.Deps{
		Logger:   log,
		Registry: reg,
		Redis:    rdb,
		Route:    route.Config{Prefix: cfg.RedisPrefix, Lease: cfg.Lease},
		Store:    store.Config{Prefix: cfg.RedisPrefix, HistoryWindow: cfg.HistoryWindow},
		Kafka:    cfg.Kafka("router"),
	})
	if err != nil {
		return err
	}
	if rebuild {
		st, err := r.Rebuild(ctx)
		if err != nil {
			return err
		}
		fmt.Printf("rebuilt: %d view keys deleted, %d records replayed\n", st.KeysDeleted, st.Records)
		return nil
	}
	return r.Run(ctx)
}
