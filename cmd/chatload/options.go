package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-chat/switchboard/internal/admin"
)

// Bounds every run stays within, whatever the flags say.
const (
	maxRate     = 200_000
	maxDuration = 10 * time.Minute
	maxDrain    = 2 * time.Minute
	maxConns    = 250_000
)

type options struct {
	scenario    string
	target      string
	gateways    []string // ws:// base URLs of the endpoints (gateways or Centrifugo nodes)
	users       int
	pairs       int
	receivers   int
	senders     int
	conns       int
	clients     int
	syncUsers   int
	syncConvs   int
	rate        float64
	duration    time.Duration
	maxMessages int
	publicRatio float64
	drain       time.Duration
	prefix      string
	allowRemote bool
	metrics     []string
	auth        string // -auth: auto, open or jwt
	mode        string // the auth mode in use: open or jwt
	sourceAddrs int
	dialConc    int
	cpu         []component
	jsonOut     string
	plotOut     string
	quiet       bool
	cfSecret    string
	stormWait   time.Duration
}

// defaults for the ports of the local cluster, overridden by the same
// environment variables that deploy/local/run.sh reads.
func envPort(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func parseOptions(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("chatload", flag.ContinueOnError)
	fs.StringVar(&o.scenario, "scenario", "mixed", scenarioList+" (dm and idle: other names of private and connect)")
	fs.StringVar(&o.target, "target", "switchboard", "switchboard or centrifugo (private, public and connect only)")
	gws := fs.String("gateways", "", "comma-separated endpoint base URLs (default: ws://127.0.0.1:$GW1_PORT and the next port for Switchboard, :8000 and :8001 for Centrifugo)")
	fs.IntVar(&o.users, "users", 50, "mixed: connected users (one session each)")
	fs.IntVar(&o.pairs, "pairs", 50, "private and sync: sender → receiver pairs, each pair across two gateways")
	fs.IntVar(&o.receivers, "receivers", 1000, "public: receiving sessions")
	fs.IntVar(&o.senders, "senders", 2, "public: sending sessions; storm: sessions sending to the storm's clients")
	fs.IntVar(&o.conns, "conns", 0, "connect: idle connections to hold")
	idle := fs.Int("idle", 0, "same as -scenario connect -conns N")
	fs.IntVar(&o.clients, "clients", 1000, "storm: clients connected, synced, then dropped at once")
	fs.IntVar(&o.syncUsers, "sync-users", 16, "sync: users that sync over and over")
	fs.IntVar(&o.syncConvs, "sync-convs", 1000, "sync: direct conversations of each syncing user")
	fs.Float64Var(&o.rate, "rate", 500, "messages per second offered, all senders together")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "how long to send (at most 10m)")
	fs.IntVar(&o.maxMessages, "max-messages", 1_000_000, "stop sending after this many messages")
	fs.Float64Var(&o.publicRatio, "public", 0.05, "mixed: fraction of messages sent to the public room")
	fs.DurationVar(&o.drain, "drain", 10*time.Second, "after sending, wait for outstanding answers and deliveries until none arrived for this long (at most 6 times it in all); what is missing then counts as lost")
	fs.StringVar(&o.prefix, "prefix", "", "user name prefix (default: random per run)")
	fs.BoolVar(&o.allowRemote, "allow-remote", false, "allow non-loopback targets")
	fs.StringVar(&o.auth, "auth", "auto", "auth mode: open (?user=), jwt (register or log in each user over REST), auto (ask the gateway)")
	mets := fs.String("metrics", "", "comma-separated /metrics URLs read for connect (default: each gateway's admin address, its port plus 1000)")
	fs.IntVar(&o.sourceAddrs, "source-addrs", 0, "spread connections over this many loopback source addresses 127.0.0.2… (each gives ~28,000 ports; 0: one per 20,000 connections)")
	fs.IntVar(&o.dialConc, "dial-concurrency", 64, "handshakes in flight")
	cpu := fs.String("cpu", "auto", `components whose CPU to sample, name:port,… ("self" is chatload; "auto": each endpoint, and the router, Redis and Kafka ports of $ROUTER_PORT, $REDIS_PORT, $KAFKA_PORT; "off")`)
	fs.StringVar(&o.jsonOut, "json", "", "also write the report as JSON to this file")
	fs.StringVar(&o.plotOut, "plot", "", "draw latency percentiles and throughput per second into this PNG")
	fs.BoolVar(&o.quiet, "quiet", false, "no live progress line")
	fs.StringVar(&o.cfSecret, "centrifugo-secret", ".state/centrifugo/hmac-secret", "centrifugo: file holding the HMAC secret of its tokens")
	fs.DurationVar(&o.stormWait, "storm-timeout", 2*time.Minute, "storm: give up waiting for the clients to be back after this long")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *idle > 0 {
		o.scenario, o.conns = "connect", *idle
	}
	o.scenario = canonicalScenario(o.scenario)
	if err := o.validate(); err != nil {
		return o, err
	}
	if *gws == "" {
		if o.target == "centrifugo" {
			*gws = "ws://127.0.0.1:8000,ws://127.0.0.1:8001"
		} else {
			p := envPort("GW1_PORT", 8080)
			*gws = fmt.Sprintf("ws://127.0.0.1:%d,ws://127.0.0.1:%d", p, p+1)
		}
	}
	o.gateways = strings.Split(*gws, ",")
	for _, g := range o.gateways {
		if err := checkTarget(g, o.allowRemote); err != nil {
			return o, err
		}
	}
	if o.sourceAddrs > 0 && !o.allowRemote {
		for _, g := range o.gateways {
			if u, _ := url.Parse(g); u.Hostname() != "127.0.0.1" {
				return o, fmt.Errorf("-source-addrs needs gateways on 127.0.0.1, not %s", g)
			}
		}
	}
	switch {
	case *mets != "":
		o.metrics = strings.Split(*mets, ",")
	case o.target == "centrifugo":
		for _, g := range o.gateways {
			u, _ := url.Parse(g)
			o.metrics = append(o.metrics, "http://"+u.Host+"/metrics")
		}
	default:
		for _, g := range o.gateways {
			u, _ := url.Parse(g)
			o.metrics = append(o.metrics, "http://"+admin.DefaultAddr(u.Host, 1000)+"/metrics")
		}
	}
	var err error
	if o.cpu, err = cpuComponents(*cpu, o); err != nil {
		return o, err
	}
	if o.prefix == "" {
		o.prefix = fmt.Sprintf("l%d-", time.Now().UnixNano()%1_000_000)
	}
	return o, nil
}

// validate checks the flags that need no network; o.scenario is a
// canonical name (parseOptions resolves the aliases first).
func (o *options) validate() error {
	var errs []error
	check := func(bad bool, msg string) {
		if bad {
			errs = append(errs, errors.New(msg))
		}
	}
	_, known := scenarios[o.scenario]
	check(!known, fmt.Sprintf("-scenario %q: want %s (or dm, idle: other names of private, connect)", o.scenario, scenarioList))
	switch o.target {
	case "switchboard":
	case "centrifugo":
		check(o.scenario != "private" && o.scenario != "public" && o.scenario != "connect",
			"-target centrifugo runs the private (dm), public and connect (idle) scenarios only")
	default:
		check(true, fmt.Sprintf("-target %q: want switchboard or centrifugo", o.target))
	}
	check(o.rate <= 0 || o.rate > maxRate, fmt.Sprintf("-rate must be in (0, %d]", maxRate))
	check(o.duration <= 0 || o.duration > maxDuration, fmt.Sprintf("-duration must be in (0, %v]", maxDuration))
	check(o.drain < 0 || o.drain > maxDrain, fmt.Sprintf("-drain must be in [0, %v]", maxDrain))
	check(o.maxMessages <= 0, "-max-messages must be > 0")
	check(o.publicRatio < 0 || o.publicRatio > 1, "-public must be in [0, 1]")
	check(o.auth != "auto" && o.auth != "open" && o.auth != "jwt", "-auth: want auto, open or jwt")
	check(o.dialConc < 1 || o.dialConc > 4096, "-dial-concurrency must be in [1, 4096]")
	check(o.sourceAddrs < 0 || o.sourceAddrs > 250, "-source-addrs must be in [0, 250]")
	switch o.scenario {
	case "mixed":
		check(o.users < 2 || o.users > maxConns, "-users must be in [2, 250000]")
	case "private":
		check(o.pairs < 1 || o.pairs > maxConns/2, "-pairs must be in [1, 125000]")
	case "public":
		check(o.receivers < 1 || o.senders < 1 || o.receivers+o.senders > maxConns, "-receivers and -senders must be >= 1, together at most 250000")
	case "connect":
		check(o.conns < 1 || o.conns > maxConns, "-conns must be in [1, 250000]")
	case "storm":
		check(o.clients < 1 || o.senders < 1 || o.clients+o.senders > maxConns, "-clients and -senders must be >= 1, together at most 250000")
	case "sync":
		check(o.pairs < 1 || o.syncUsers < 1 || o.syncConvs < 1 || o.syncConvs > 100_000, "-pairs, -sync-users >= 1 and -sync-convs in [1, 100000]")
	}
	return errors.Join(errs...)
}

// cpuComponents resolves -cpu.
func cpuComponents(spec string, o options) ([]component, error) {
	switch spec {
	case "off", "":
		return nil, nil
	case "auto":
		var parts []string
		name := "gateway"
		if o.target == "centrifugo" {
			name = "centrifugo"
		}
		for _, g := range o.gateways {
			u, _ := url.Parse(g)
			if _, p, err := net.SplitHostPort(u.Host); err == nil {
				parts = append(parts, name+":"+p)
			}
		}
		if o.target != "centrifugo" {
			parts = append(parts, fmt.Sprintf("router:%d", envPort("ROUTER_PORT", 9090)))
		}
		parts = append(parts, fmt.Sprintf("redis:%d", envPort("REDIS_PORT", 6379)))
		if o.target != "centrifugo" {
			parts = append(parts, fmt.Sprintf("kafka:%d", envPort("KAFKA_PORT", 9092)))
		}
		parts = append(parts, "self")
		spec = strings.Join(parts, ",")
	}
	return parseCPUSpec(spec)
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

// newTarget builds the system under test of the options.
func newTarget(ctx context.Context, o *options, run string) (target, error) {
	if o.target == "centrifugo" {
		return newCentrifugo(o.gateways, o.cfSecret, run)
	}
	var err error
	if o.mode, err = authMode(ctx, *o); err != nil {
		return nil, err
	}
	return &switchboard{o: o, run: run}, nil
}

// runScenario runs the chosen scenario and returns its report.
func runScenario(ctx context.Context, o *options) (*Report, error) {
	run := strings.TrimSuffix(o.prefix, "-")
	tgt, err := newTarget(ctx, o, run)
	if err != nil {
		return nil, err
	}
	r := &Report{Scenario: o.scenario, Target: o.target, Date: time.Now().UTC(), Machine: machine(),
		Params: Params{Endpoints: len(o.gateways)}}
	addrs := o.sourceAddrs
	if conns := max(o.conns, o.clients, o.receivers); addrs == 0 && conns > 20_000 && !o.allowRemote {
		addrs = min(250, conns/20_000+1)
	}
	d := newDialer(tgt, addrs, time.Minute)
	return r, scenarios[o.scenario](ctx, o, d, r)
}

// scenarios are the runs by their canonical -scenario name, the one
// reports carry.
var scenarios = map[string]func(context.Context, *options, *dialer, *Report) error{
	"connect": idleRun, "private": dmRun, "public": publicRun, "mixed": mixedRun, "storm": stormRun, "sync": syncRun,
}

// scenarioList names the scenarios for usage and error messages.
const scenarioList = "connect, private, public, mixed, storm or sync"

// scenarioAliases are the older names of scenarios, still accepted on the
// command line and in reports written before the rename.
var scenarioAliases = map[string]string{"dm": "private", "idle": "connect"}

// canonicalScenario returns the canonical name of a scenario given by its
// name or an alias; any other string comes back unchanged.
func canonicalScenario(name string) string {
	if c, ok := scenarioAliases[name]; ok {
		return c
	}
	return name
}
