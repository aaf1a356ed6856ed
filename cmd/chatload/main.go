// Command chatload drives direct and public traffic at Switchboard gateways
// and reports acknowledgement and delivery latency, throughput and loss.
//
//	chatload -gateways ws://127.0.0.1:8080,ws://127.0.0.1:8081 -users 100 -rate 2000 -duration 30s
//
// Users are spread over the gateways round-robin; each DM goes to a user on
// another gateway when there is one. Every run is bounded by -duration and
// -max-messages and stops by itself. Only loopback gateways are accepted
// unless -allow-remote is given.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/switchboard-chat/switchboard/internal/admin"
)

type options struct {
	gateways    []string
	users       int
	rate        float64
	duration    time.Duration
	maxMessages int
	publicRatio float64
	drain       time.Duration
	prefix      string
	allowRemote bool
	idle        int
	metrics     []string
	auth        string // -auth: auto, open or jwt
	mode        string // the auth mode in use: open or jwt
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "chatload:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	var o options
	fs := flag.NewFlagSet("chatload", flag.ContinueOnError)
	gws := fs.String("gateways", "ws://127.0.0.1:8080,ws://127.0.0.1:8081", "comma-separated gateway base URLs")
	fs.IntVar(&o.users, "users", 50, "connected users (one session each)")
	fs.Float64Var(&o.rate, "rate", 500, "messages per second, all users together")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "how long to send")
	fs.IntVar(&o.maxMessages, "max-messages", 1_000_000, "stop sending after this many messages")
	fs.Float64Var(&o.publicRatio, "public", 0.05, "fraction of messages sent to the public room")
	fs.DurationVar(&o.drain, "drain", 10*time.Second, "how long to wait for outstanding deliveries after sending")
	fs.StringVar(&o.prefix, "prefix", "", "user name prefix (default: random per run)")
	fs.BoolVar(&o.allowRemote, "allow-remote", false, "allow non-loopback gateways")
	fs.IntVar(&o.idle, "idle", 0, "instead of traffic: hold this many idle connections and report gateway memory per connection")
	fs.StringVar(&o.auth, "auth", "auto", "auth mode: open (?user=), jwt (register or log in each user over REST), auto (ask the gateway)")
	mets := fs.String("metrics", "", "comma-separated /metrics URLs read for -idle (default: each gateway's default admin address, its port plus 1000)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.gateways = strings.Split(*gws, ",")
	if o.users < 2 || o.rate <= 0 || o.duration <= 0 || o.maxMessages <= 0 || o.publicRatio < 0 || o.publicRatio > 1 {
		return errors.New("need -users >= 2, -rate > 0, -duration > 0, -max-messages > 0, 0 <= -public <= 1")
	}
	for _, g := range o.gateways {
		if err := checkTarget(g, o.allowRemote); err != nil {
			return err
		}
	}
	if *mets != "" {
		o.metrics = strings.Split(*mets, ",")
	} else {
		for _, g := range o.gateways {
			u, err := url.Parse(g)
			if err != nil {
				return fmt.Errorf("gateway %q: %v", g, err)
			}
			o.metrics = append(o.metrics, "http://"+admin.DefaultAddr(u.Host, 1000)+"/metrics")
		}
	}
	if o.prefix == "" {
		o.prefix = fmt.Sprintf("load%d-", time.Now().Unix()%100000)
	}
	if o.auth != "auto" && o.auth != "open" && o.auth != "jwt" {
		return fmt.Errorf("-auth %q: want auto, open or jwt", o.auth)
	}
	var err error
	if o.mode, err = authMode(ctx, o); err != nil {
		return err
	}
	if o.idle > 0 {
		return idleRun(ctx, o)
	}
	return loadRun(ctx, o)
}

// checkTarget refuses anything but loopback unless remote targets are allowed.
func checkTarget(raw string, allowRemote bool) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return fmt.Errorf("gateway %q: want ws://host:port", raw)
	}
	if allowRemote {
		return nil
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("gateway %q is not on loopback (pass -allow-remote to load a remote cluster)", raw)
}
