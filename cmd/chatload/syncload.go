package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// SyncResult is what the sync scenario measured.
type SyncResult struct {
	Users          int     `json:"users"`
	Convs          int     `json:"convs_each"`
	SetupErrors    int     `json:"setup_errors"`
	SyncErrors     int     `json:"sync_errors"` // syncs answered by an error frame
	Syncs          uint64  `json:"syncs"`
	SyncsPerSec    float64 `json:"syncs_per_s"`
	SyncLatency    Latency `json:"sync_latency"`
	BaselineDeliv  Latency `json:"baseline_delivery"`   // the others' delivery latency before the syncs
	WithSyncsDeliv Latency `json:"with_syncs_delivery"` // … while they ran
}

func (r *SyncResult) print(w io.Writer) {
	fmt.Fprintf(w, "sync: %d users × %d conversations (%d setup errors); %d syncs, %.0f/s, %d answered by an error; sync latency %s\n",
		r.Users, r.Convs, r.SetupErrors, r.Syncs, r.SyncsPerSec, r.SyncErrors, fmtLat(r.SyncLatency))
	fmt.Fprintf(w, "others' delivery, first half (no syncs)  %s\n", fmtLat(r.BaselineDeliv))
	fmt.Fprintf(w, "others' delivery, second half (syncs)    %s\n", fmtLat(r.WithSyncsDeliv))
}

// syncRun: -sync-users users each first send one message into
// -sync-convs direct conversations (with users who are not connected),
// then -pairs others exchange direct messages at -rate for -duration; for
// its second half the syncing users sync over and over, naming every one
// of their conversations at its latest seq. Reported: the others' delivery
// latency in each half and the syncs' own latency.
func syncRun(ctx context.Context, o *options, d *dialer, r *Report) error {
	n := d.tgt.endpoints()
	r.Params.Pairs, r.Params.Rate, r.Params.Duration = o.pairs, o.rate, o.duration.String()
	r.Params.Users, r.Params.Convs = o.syncUsers, o.syncConvs
	syncers, err := d.dialMany(ctx, o.syncUsers, o.dialConc,
		func(i int) string { return fmt.Sprintf("%ssy%d", o.prefix, i) },
		func(i int) int { return i % n })
	if err != nil {
		return err
	}
	defer closeAll(syncers)
	res := &SyncResult{Users: o.syncUsers, Convs: o.syncConvs}
	r.Sync = res
	since, errs := setupConvs(ctx, o, syncers)
	res.SetupErrors = errs
	sessions, err := d.dialMany(ctx, 2*o.pairs, o.dialConc,
		func(i int) string { return fmt.Sprintf("%s%c%d", o.prefix, "sr"[i%2], i/2) },
		func(i int) int { return (i/2 + i%2) % n })
	if err != nil {
		return err
	}
	var lat hist
	var failed atomic.Int64
	var tr *traffic
	during := func(t *traffic, sendDone <-chan struct{}) error {
		select {
		case <-time.After(o.duration / 2):
		case <-sendDone:
			return nil
		}
		t.phase.Store(1)
		tr = t
		start := time.Now()
		var wg sync.WaitGroup
		for i, s := range syncers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				frame := syncFrame(since[i])
				for {
					at := time.Now()
					if err := s.write(ctx, frame); err != nil {
						return
					}
					select {
					case convs := <-s.synced:
						if convs == nil {
							// Refused: wait as asked before the next sync,
							// as clients do.
							failed.Add(1)
							select {
							case <-time.After(time.Duration(s.syncRetry.Load())):
							case <-sendDone:
								return
							}
						} else {
							lat.Record(time.Since(at))
						}
					case <-time.After(60 * time.Second): // the one in flight is waited for past the sending
						return
					}
					select {
					case <-sendDone:
						return
					default:
					}
				}
			}()
		}
		wg.Wait()
		res.Syncs = lat.Count()
		res.SyncErrors = int(failed.Load())
		res.SyncsPerSec = float64(lat.Count()) / time.Since(start).Seconds()
		return nil
	}
	for _, s := range syncers {
		s.synced = make(chan map[string]int64, 1)
	}
	traffic := func(t *traffic, done <-chan struct{}) error {
		// The syncers' frames count in the traffic's handler too (synced).
		for _, s := range syncers {
			s.setHandler(t.handle)
		}
		return during(t, done)
	}
	err = runTraffic(ctx, o, r, sessions, o.pairs, func(g, _ int) plan {
		return plan{from: sessions[2*g], to: sessions[2*g+1], toIdx: 2*g + 1, expect: 1}
	}, traffic)
	res.SyncLatency = lat.Summary()
	if tr != nil {
		res.BaselineDeliv, res.WithSyncsDeliv = tr.delPhase[0].Summary(), tr.delPhase[1].Summary()
	}
	return err
}

// setupConvs has each syncer send one message to each of -sync-convs
// users, and returns, per syncer, the conversations with their seq.
func setupConvs(ctx context.Context, o *options, syncers []*session) ([]map[string]int64, int) {
	since := make([]map[string]int64, len(syncers))
	var errs int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, s := range syncers {
		since[i] = map[string]int64{}
		acks := make(chan event, o.syncConvs)
		go s.run(func(_ *session, ev event) {
			if ev.kind == evAck || ev.kind == evError {
				select {
				case acks <- ev:
				default:
				}
			}
		})
		wg.Add(1)
		go func() {
			defer wg.Done()
			sb := s.tgt.(*switchboard)
			for k := range o.syncConvs {
				frame := fmt.Appendf(nil, `{"type":"send","cid":"%s.setup%d","to":"%spe%d-%d","body":"setup"}`, sb.run, k, o.prefix, i, k)
				if err := s.write(ctx, frame); err != nil {
					break
				}
			}
			for range o.syncConvs {
				select {
				case ev := <-acks:
					mu.Lock()
					if ev.kind == evAck {
						since[i][ev.conv] = ev.seq
					} else {
						errs++
					}
					mu.Unlock()
				case <-time.After(30 * time.Second):
					return
				}
			}
		}()
	}
	wg.Wait()
	return since, errs
}
