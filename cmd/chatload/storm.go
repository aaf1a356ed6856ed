package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// StormResult is what the storm scenario measured.
type StormResult struct {
	Clients       int     `json:"clients"`
	Senders       int     `json:"senders"`
	DropAfterSec  float64 `json:"drop_after_s"`
	ReconnectSec  float64 `json:"reconnected_all_s"` // from the drop until every client had its hello
	SyncedSec     float64 `json:"synced_all_s"`      // from the drop until every client had its synced
	NotBack       int     `json:"not_back"`
	Lost          int64   `json:"lost"`
	SentDuringGap int64   `json:"sent_while_down"`
	// SyncRetries are syncs answered by an error (unavailable,
	// rate_limited) and sent again after its retry_after_ms, as clients
	// do.
	SyncRetries int64 `json:"sync_retries"`
	// DialRetries are reconnects tried again after a refusal or a
	// connection closed before the handshake's answer.
	DialRetries int64 `json:"dial_retries"`
}

func (r *StormResult) print(w io.Writer) {
	fmt.Fprintf(w, "storm: %d clients dropped at once %.1f s into the sending; all reconnected after %.2f s, all synced after %.2f s; %d not back\n",
		r.Clients, r.DropAfterSec, r.ReconnectSec, r.SyncedSec, r.NotBack)
	fmt.Fprintf(w, "messages sent to them while they were down: %d; acknowledged messages never received (live or by sync): %d; reconnects retried: %d; syncs retried after an error: %d\n",
		r.SentDuringGap, r.Lost, r.DialRetries, r.SyncRetries)
}

// syncFrame is a sync request naming the last seq held per conversation.
func syncFrame(since map[string]int64) []byte {
	b, _ := json.Marshal(map[string]any{"type": "sync", "since": since})
	return b
}

// syncAll sends a sync on every session (since[i] is what session i
// holds; nil: a new device) and waits, at most until deadline, for the
// synced frames. A sync answered by an error is sent again after the
// error's retry_after_ms (1 s when it gives none), as clients do. It
// returns how many synced, when the last one did (since t0), and how many
// syncs were sent again.
func syncAll(ctx context.Context, sessions []*session, since []map[string]int64, deadline, t0 time.Time) (int, time.Duration, int64) {
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		done    int
		last    time.Duration
		retries atomic.Int64
	)
	for i, s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var held map[string]int64
			if since != nil {
				held = since[i]
			}
			for {
				if err := s.write(ctx, syncFrame(held)); err != nil {
					return
				}
				select {
				case convs := <-s.synced:
					if convs != nil {
						mu.Lock()
						done++
						last = max(last, time.Since(t0))
						mu.Unlock()
						return
					}
				case <-time.After(time.Until(deadline)):
					return
				case <-ctx.Done():
					return
				}
				// Refused: wait as asked, then sync again.
				wait := time.Duration(s.syncRetry.Load())
				if wait <= 0 {
					wait = time.Second
				}
				if time.Now().Add(wait).After(deadline) {
					return
				}
				retries.Add(1)
				select {
				case <-time.After(wait):
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	wg.Wait()
	return done, last, retries.Load()
}

// stormRun: -clients clients connect and sync; -senders others send them
// direct messages at -rate for -duration; a quarter into it every client
// is dropped at once, reconnects at once (admission control and jittered
// retries permitting) and syncs from the last seq it held. Reported: the
// time until all are back and synced, and every acknowledged message that
// a client received neither live nor by its sync.
//
// Each client's seqs are read while its read loop runs; the sync request
// takes them only after that loop ended (the old session) or before any
// message can arrive on the new one, so there is no race.
func stormRun(ctx context.Context, o *options, d *dialer, r *Report) error {
	n := d.tgt.endpoints()
	r.Params.Clients, r.Params.Senders, r.Params.Rate, r.Params.Duration = o.clients, o.senders, o.rate, o.duration.String()
	d.retryBy = o.stormWait
	name := func(i int) string {
		if i < o.senders {
			return fmt.Sprintf("%sss%d", o.prefix, i)
		}
		return fmt.Sprintf("%sst%d", o.prefix, i-o.senders)
	}
	gw := func(i int) int { return i % n }
	sessions, err := d.dialMany(ctx, o.senders+o.clients, o.dialConc, name, gw)
	if err != nil {
		return err
	}
	for _, s := range sessions {
		s.synced = make(chan map[string]int64, 1)
	}
	res := &StormResult{Clients: o.clients, Senders: o.senders}
	r.Storm = res
	// The senders name the original sessions (same users) while the storm
	// replaces entries of sessions.
	named := slices.Clone(sessions)
	pick := func(g, _ int) plan {
		to := o.senders + rand.IntN(o.clients)
		return plan{from: named[g], to: named[to], toIdx: to, expect: 1}
	}
	during := func(t *traffic, sendDone <-chan struct{}) error {
		clients := sessions[o.senders:]
		got, _, retried := syncAll(ctx, clients, nil, time.Now().Add(o.stormWait), time.Now())
		res.SyncRetries += retried
		if got < len(clients) {
			return fmt.Errorf("first sync: %d of %d clients synced", got, len(clients))
		}
		select {
		case <-time.After(o.duration / 4):
		case <-sendDone:
			return fmt.Errorf("the sending ended before the storm (raise -duration)")
		case <-ctx.Done():
			return ctx.Err()
		}
		// Drop them all at once.
		drop := time.Now()
		retriesBefore := d.retries.Load()
		res.DropAfterSec = time.Since(t.t0).Seconds()
		sentBefore := t.next.Load()
		var wg sync.WaitGroup
		for _, s := range clients {
			wg.Add(1)
			go func() { defer wg.Done(); s.closeNow(true) }()
		}
		wg.Wait()
		// Back at once: every client redials; refusals are retried with
		// jittered backoff until -storm-timeout.
		old := make([]*session, len(clients))
		copy(old, clients)
		held := make([]map[string]int64, len(clients))
		var mu sync.Mutex
		back := 0
		var lastBack time.Duration
		var dials sync.WaitGroup
		sem := make(chan struct{}, max(o.dialConc, 512))
		for i := range clients {
			dials.Add(1)
			go func() {
				defer dials.Done()
				sem <- struct{}{}
				s, err := d.dial(ctx, o.senders+i, gw(o.senders+i), old[i].name)
				<-sem
				if err != nil {
					return
				}
				held[i] = maps.Clone(old[i].seqs) // the old read loop has ended
				s.seqs = maps.Clone(held[i])
				s.synced = make(chan map[string]int64, 1)
				go s.run(t.handle)
				mu.Lock()
				clients[i] = s
				back++
				lastBack = time.Since(drop)
				mu.Unlock()
			}()
		}
		dials.Wait()
		res.DialRetries = d.retries.Load() - retriesBefore
		res.ReconnectSec = lastBack.Seconds()
		res.SentDuringGap = t.next.Load() - sentBefore
		res.NotBack = len(clients) - back
		var backOnes []*session
		var backHeld []map[string]int64
		for i, s := range clients {
			if s != old[i] {
				backOnes = append(backOnes, s)
				backHeld = append(backHeld, held[i])
			}
		}
		synced, last, retried := syncAll(ctx, backOnes, backHeld, drop.Add(o.stormWait), drop)
		res.SyncRetries += retried
		res.SyncedSec = last.Seconds()
		res.NotBack = len(clients) - synced
		return nil
	}
	err = runTraffic(ctx, o, r, sessions, o.senders, pick, during)
	res.Lost = r.Lost + r.ReceiverGone
	return err
}
