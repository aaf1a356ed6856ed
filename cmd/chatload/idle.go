package main

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// idleRun opens o.idle idle connections and reports how much the gateways'
// resident memory grew per connection.
func idleRun(ctx context.Context, o options) error {
	before, err := residentBytes(ctx, o.metrics)
	if err != nil {
		return err
	}
	start := time.Now()
	conns, err := dialIdle(ctx, o)
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
	for _, c := range conns {
		_ = c.CloseNow()
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

// dialIdle opens o.idle connections, spread round-robin over the
// gateways, a few at a time, each read in the background (so that it
// answers pings). To a loopback gateway each connection comes from its own
// source address in 127.0.0.0/8 (127.1.0.1, 127.1.0.2, …): one source
// address has only about 28,000 ports.
func dialIdle(ctx context.Context, o options) ([]*websocket.Conn, error) {
	conns := make([]*websocket.Conn, o.idle)
	var (
		next  atomic.Int64
		first error
		mu    sync.Mutex
		wg    sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < o.idle && ctx.Err() == nil; i = int(next.Add(1) - 1) {
				c, err := dialOneIdle(ctx, o, i)
				if err != nil {
					mu.Lock()
					first = cmp.Or(first, fmt.Errorf("connect idle user %d: %w", i, err))
					mu.Unlock()
					return
				}
				conns[i] = c
				go func() {
					for {
						if _, _, err := c.Read(context.Background()); err != nil {
							return
						}
					}
				}()
			}
		})
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	if first != nil {
		for _, c := range conns {
			if c != nil {
				_ = c.CloseNow()
			}
		}
		return nil, first
	}
	return conns, nil
}

func dialOneIdle(ctx context.Context, o options, i int) (*websocket.Conn, error) {
	g := i % len(o.gateways)
	path, err := wsPath(ctx, o, g, fmt.Sprintf("%sidle%d", o.prefix, i))
	if err != nil {
		return nil, err
	}
	opts := &websocket.DialOptions{}
	if u, err := url.Parse(o.gateways[g]); err == nil {
		if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsLoopback() && ip.To4() != nil {
			src := net.IPv4(127, 1+byte((i+1)>>16), byte((i+1)>>8), byte(i+1))
			d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: src}}
			opts.HTTPClient = &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
		}
	}
	c, _, err := websocket.Dial(ctx, o.gateways[g]+path, opts)
	return c, err
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
