// Package health answers readiness probes: it runs a service's checks
// concurrently, each bounded, and reports every result as JSON.
package health

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"
)

// Timeout bounds every check of one probe.
const Timeout = 2 * time.Second

// Check is one dependency check; nil means healthy.
type Check func(context.Context) error

// Run runs checks concurrently, each bounded by Timeout, and returns "ok"
// or the error text of each, and whether all passed.
func Run(ctx context.Context, checks map[string]Check) (map[string]string, bool) {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	out := make(map[string]string, len(checks))
	ok := true
	for name, check := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := "ok"
			if err := check(ctx); err != nil {
				res = err.Error()
			}
			mu.Lock()
			defer mu.Unlock()
			out[name] = res
			ok = ok && res == "ok"
		}()
	}
	wg.Wait()
	return out, ok
}

// Write answers 200 when ready and 503 otherwise, with
// {"ready": …, "server": server, "checks": checks}.
func Write(w http.ResponseWriter, server string, checks map[string]string, ready bool) {
	status := http.StatusOK
	if !ready {
		status = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"ready": ready, "server": server, "checks": checks})
}
