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

	"github.com/switchboard-chat/switchboard/internal/auth"
	"github.com/switchboard-chat/switchboard/internal/config"
	"github.com/switchboard-chat/switchboard/internal/gateway"
	"github.com/switchboard-chat/switchboard/internal/route"
	"github.com/switchboard-chat/switchboard/static"
)

func main() { config.Main("gateway", run) }

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
	var identity auth.Identity = auth.Open{}
	var tokens *auth.Tokens
	if cfg.AuthMode == "jwt" {
		if tokens, err = cfg.Tokens(); err != nil {
			return err
		}
		identity = auth.JWT{Tokens: tokens}
	}
	deps, err := cfg.Open(ctx)
	if err != nil {
		return err
	}
	defer deps.Redis.Close()
	log := deps.Log
	if cfg.AuthMode == "open" {
		log.Warn("AUTH MODE IS OPEN: anyone can connect as any user with ?user=; for local demos and load tests only")
	}
	srv, err := gateway.New(gateway.Config{
		ServerID:          cfg.ServerID,
		Addr:              cfg.HTTPAddr,
		AllowedOrigins:    cfg.AllowedOrigins,
		ChatLogTopic:      cfg.ChatLogTopic,
		ChatLogPartitions: cfg.ChatLogPartitions,
		ChatStateTopic:    cfg.ChatStateTopic,
		TopicPartitions:   cfg.TopicPartitions,
		TopicRetention:    cfg.TopicRetention,
		SendQueueBytes:    cfg.SendQueueBytes,
		PingInterval:      cfg.PingInterval,
		PingTimeout:       cfg.PingTimeout,
		ProduceTimeout:    cfg.ProduceTimeout,
		RedisTimeout:      cfg.RedisTimeout,
		DrainWindow:       cfg.DrainWindow,
		ShutdownTimeout:   cfg.ShutdownTimeout,
		ConnectRate:       cfg.ConnectRate,
		ConnectBurst:      cfg.ConnectBurst,

		HTTPReadTimeout:    cfg.HTTPReadTimeout,
		HTTPWriteTimeout:   cfg.HTTPWriteTimeout,
		HTTPIdleTimeout:    cfg.HTTPIdleTimeout,
		MaxHeaderBytes:     cfg.MaxHeaderBytes,
		MaxBodyBytes:       cfg.MaxBodyBytes,
		MaxConnsPerIP:      cfg.MaxConnsPerIP,
		MessageRate:        cfg.MessageRate,
		MessageBurst:       cfg.MessageBurst,
		MaxSessionsPerUser: cfg.MaxSessionsPerUser,
		AuditTopic:         cfg.AuditTopic,
		LoginPerUser:       cfg.LoginPerUser,
		LoginPerIP:         cfg.LoginPerIP,
		Static:             static.Files,
		AdminAddr:          cfg.AdminAddr,
		AdminPprof:         cfg.AdminPprof,
	}, gateway.Deps{
		Logger:   log,
		Registry: deps.Registry,
		Redis:    deps.Redis,
		Route:    route.Config{Prefix: cfg.RedisPrefix, Lease: cfg.Lease},
		Kafka:    cfg.Kafka("gateway-" + string(cfg.ServerID)),
		Identity: identity,
		Tokens:   tokens,
	})
	if err != nil {
		return err
	}
	return srv.Run(ctx)
}
