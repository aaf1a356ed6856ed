package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// idleRun opens o.idle idle connections and reports how much the gateways'
// resident memory grew per connection.
func idleRun(ctx context.Context, o options) error {
	before, err := residentBytes(ctx, o.metrics)
	if err != nil {
		return err
	}
	start := time.Now()
	users, err := dialAll(ctx, o, o.idle, func(i int) string { return fmt.Sprintf("%sidle%d", o.prefix, i) })
	if err != nil {
		return err
	}
	connectDur := time.Since(start)
	runtime.GC()
	// Let the gateways settle (GC, goroutine stacks) before measuring.
	select {
	case <-ctx.Done():
	case <-time.After(3 * time.Second):
	}
	after, err := residentBytes(ctx, o.metrics)
	for _, u := range users {
		u.cl.CloseNow()
	}
	if err != nil {
		return err
	}
	grow := after - before
	fmt.Printf("%d idle connections over %d gateways, connected in %v (%.0f/s)\n",
		o.idle, len(o.gateways), connectDur.Round(time.Millisecond), float64(o.idle)/connectDur.Seconds())
	fmt.Printf("gateway RSS %.1f MiB → %.1f MiB: %.1f KiB per connection\n",
		float64(before)/(1<<20), float64(after)/(1<<20), float64(grow)/float64(o.idle)/1024)
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
