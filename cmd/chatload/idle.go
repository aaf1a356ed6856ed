package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// IdleResult is what the connect scenario (idle connections) measured.
type IdleResult struct {
	Conns          int     `json:"conns"`
	SourceAddrs    int     `json:"source_addrs"`
	ConnectSec     float64 `json:"connect_s"`
	ConnectPerSec  float64 `json:"connect_per_s"`
	RSSBeforeMiB   float64 `json:"rss_before_mib"`
	RSSAfterMiB    float64 `json:"rss_after_mib"`
	KiBPerConn     float64 `json:"kib_per_conn"`
	DroppedWhileIn int     `json:"dropped_while_held"`
}

func (r *IdleResult) print(w io.Writer) {
	fmt.Fprintf(w, "%d idle connections from %d source addresses, connected in %.1f s (%.0f/s); %d dropped while held\n",
		r.Conns, max(r.SourceAddrs, 1), r.ConnectSec, r.ConnectPerSec, r.DroppedWhileIn)
	fmt.Fprintf(w, "endpoint RSS %.1f MiB → %.1f MiB: %.1f KiB per connection\n", r.RSSBeforeMiB, r.RSSAfterMiB, r.KiBPerConn)
}

// idleRun, the connect scenario, opens -conns idle connections
// (round-robin over the endpoints; give one gateway for a single-gateway
// figure), holds them while the endpoints settle, and reports how much
// their resident memory grew per connection
// (process_resident_memory_bytes of -metrics).
//
// From one machine, past ~28,000 connections to one port the source
// ports run out: -source-addrs spreads the connections over 127.0.0.2…
// (automatic past 20,000). The gateway side needs GATEWAY_CONNECT_RATE and
// GATEWAY_CONNECT_BURST raised (admission control, 1,000/s by default) to
// connect quickly, and both processes need `ulimit -n` above the count.
// GATEWAY_MAX_CONNS_PER_IP bounds the handshakes in flight per address;
// -dial-concurrency stays below it.
func idleRun(ctx context.Context, o *options, d *dialer, r *Report) error {
	r.Params.Conns = o.conns
	before, err := residentBytes(ctx, o.metrics)
	if err != nil {
		return err
	}
	n := d.tgt.endpoints()
	start := time.Now()
	sessions, err := d.dialMany(ctx, o.conns, o.dialConc,
		func(i int) string { return fmt.Sprintf("%sidle%d", o.prefix, i) },
		func(i int) int { return i % n })
	if err != nil {
		return err
	}
	connect := time.Since(start)
	for _, s := range sessions {
		go s.run(func(*session, event) {})
	}
	defer closeAll(sessions)
	// Let the endpoints settle (GC, goroutine stacks) before measuring.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(5 * time.Second):
	}
	after, err := residentBytes(ctx, o.metrics)
	if err != nil {
		return err
	}
	res := &IdleResult{Conns: o.conns, SourceAddrs: len(d.clients), ConnectSec: connect.Seconds(),
		ConnectPerSec: float64(o.conns) / connect.Seconds(), RSSBeforeMiB: before / (1 << 20), RSSAfterMiB: after / (1 << 20),
		KiBPerConn: (after - before) / float64(o.conns) / 1024}
	for _, s := range sessions {
		if s.dropped() {
			res.DroppedWhileIn++
		}
	}
	r.Idle = res
	return nil
}

// residentBytes sums process_resident_memory_bytes over the metrics URLs.
func residentBytes(ctx context.Context, urls []string) (float64, error) {
	var total float64
	for _, u := range urls {
		req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
		if err != nil {
			return 0, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, fmt.Errorf("metrics %s: %w", u, err)
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		found := false
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "process_resident_memory_bytes "); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err == nil {
					total += f
					found = true
				}
			}
		}
		resp.Body.Close()
		if !found {
			return 0, fmt.Errorf("metrics %s: no process_resident_memory_bytes", u)
		}
	}
	return total, nil
}
