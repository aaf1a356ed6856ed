// Command chatload drives load at Switchboard gateways (or, for
// comparison, at Centrifugo nodes) and reports throughput, acknowledgement
// and delivery latency, loss, errors and the CPU each component spent.
//
//	chatload -scenario private -pairs 50 -rate 2000 -duration 20s -json private.json -plot private.png
//
// Scenarios: connect (-conns idle connections, gateway memory per
// connection; -idle N is -scenario connect -conns N), private (sender →
// receiver pairs on different gateways), public (fan-out to -receivers),
// mixed (the default: -users users, random direct messages across
// gateways and a -public fraction to the public room), storm (-clients
// dropped at once, time until all are back and synced, nothing lost) and
// sync (users with -sync-convs conversations syncing while others send).
// dm and idle are other names of private and connect; reports carry the
// canonical name. Every run is bounded by -duration, -max-messages and
// -drain and stops by itself. Only loopback targets are accepted unless
// -allow-remote is given.
//
//	chatload markdown -o BENCHMARKS.md [-commit C] [-note TEXT] [-plot] run.json…
//
// renders reports into the generated section of BENCHMARKS.md: one row per
// scenario, target and setup, with the medians of its runs.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code, err := run(ctx, os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatload:", err)
	}
	os.Exit(code)
}

// run parses the arguments, runs the scenario and reports; the exit code
// is 1 on an error, 2 when something acknowledged was lost.
func run(ctx context.Context, args []string) (int, error) {
	if len(args) > 0 && args[0] == "markdown" {
		return exitOf(markdownCmd(args[1:]))
	}
	o, err := parseOptions(args)
	if err != nil {
		return 1, err
	}
	r, err := runScenario(ctx, &o)
	if err != nil {
		return 1, err
	}
	r.print(os.Stdout)
	if o.jsonOut != "" {
		if err := r.writeJSON(o.jsonOut); err != nil {
			return 1, err
		}
	}
	if o.plotOut != "" {
		if err := plotReport(r, o.plotOut); err != nil {
			return 1, fmt.Errorf("plot: %w", err)
		}
	}
	if r.Failed() {
		return 2, fmt.Errorf("acknowledged messages were lost")
	}
	return 0, nil
}

func exitOf(err error) (int, error) {
	if err != nil {
		return 1, err
	}
	return 0, nil
}
