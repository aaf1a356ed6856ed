// Command gateway runs one Switchboard WebSocket gateway.
//
//	gateway [-config configs/gateway.yaml]
//
// Every configuration key can be overridden by environment (SERVER_ID,
// KAFKA_BROKERS, REDIS_ADDR, HTTP_ADDR, …); see the README.
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

	"github.com/switchboard-chat/switchboard/internal/auth"
	"github.com/switchboard-chat/switchboard/internal/config"
	"github.com/switchboard-chat/switchboard/internal/gateway"
	"github.com/switchboard-chat/switchboard/internal/route"
	"github.com/switchboard-chat/switchboard/static"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "gateway: "+config.OneLine(err))
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	file := fs.String("config", "", "config file (default configs/gateway.yaml when present; or CONFIG)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	path, required := config.ConfigFile(*file, "configs/gateway.yaml")
	cfg, err := config.LoadGateway(path, required)
	if err != nil {
		return err
	}
	log := cfg.Logger(os.Stderr)
	config.RouteRedisLogs(log)
	if cfg.AuthMode == "open" {
		log.Warn("AUTH MODE IS OPEN: anyone can connect as any user with ?user=; for local demos and load tests only")
	}
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
	srv, err := gateway.New(gateway.Config{
		ServerID:          cfg.ServerID,
		Addr:              cfg.HTTPAddr,
		AllowedOrigins:    cfg.AllowedOrigins,
		ChatLogTopic:      cfg.ChatLogTopic,
		ChatLogPartitions: cfg.ChatLogPartitions,
		TopicPartitions:   cfg.TopicPartitions,
		TopicRetention:    cfg.TopicRetention,
		SendQueue:         cfg.SendQueue,
		PingInterval:      cfg.PingInterval,
		PingTimeout:       cfg.PingTimeout,
		ProduceTimeout:    cfg.ProduceTimeout,
		RedisTimeout:      cfg.RedisTimeout,
		DrainWindow:       cfg.DrainWindow,
		ShutdownTimeout:   cfg.ShutdownTimeout,
		ConnectRate:       cfg.ConnectRate,
		ConnectBurst:      cfg.ConnectBurst,
		Static:            static.Files,
	}, gateway.Deps{
		Logger:   log,
		Registry: reg,
		Redis:    rdb,
		Route:    route.Config{Prefix: cfg.RedisPrefix, Lease: cfg.Lease},
		Kafka:    cfg.Kafka("gateway-" + string(cfg.ServerID)),
		Identity: auth.Open{},
	})
	if err != nil {
		return err
	}
	return srv.Run(ctx)
}
