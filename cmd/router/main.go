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
	"time"

	"github.com/switchboard-chat/switchboard/internal/config"
	"github.com/switchboard-chat/switchboard/internal/router"
	"github.com/switchboard-chat/switchboard/internal/store"
)

func main() { config.Main("router", run) }

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
	deps, err := cfg.Open(ctx)
	if err != nil {
		return err
	}
	defer deps.Redis.Close()
	log := deps.Log
	r, err := router.New(cfg.Router, router.Deps{
		Logger:   log,
		Registry: deps.Registry,
		Redis:    deps.Redis,
		Route:    cfg.Route,
		Store:    store.Config{Prefix: cfg.Route.Prefix, HistoryWindow: cfg.HistoryWindow},
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
		fmt.Printf("rebuilt: %d view keys deleted, %d records replayed in %v (%.0f records/s)\n",
			st.KeysDeleted, st.Records, st.Took.Round(time.Millisecond), st.Rate())
		return nil
	}
	return r.Run(ctx)
}
