package main

import (
	"sync/atomic"
	"time"
)

// series holds per-second counts and latency histograms over a run, by
// the second (since the run's start) in which each event was observed.
// The last bucket takes everything later. Safe for concurrent use.
type series struct {
	secs []second
}

type second struct {
	sent, acked, delivered atomic.Int64
	ack, del               hist
}

func newSeries(n int) *series { return &series{secs: make([]second, max(n, 1))} }

func (s *series) at(ns int64) *second {
	i := min(max(int(ns/int64(time.Second)), 0), len(s.secs)-1)
	return &s.secs[i]
}

func (s *series) sent(ns int64) { s.at(ns).sent.Add(1) }

func (s *series) ack(ns int64, lat time.Duration) {
	b := s.at(ns)
	b.acked.Add(1)
	b.ack.Record(lat)
}

func (s *series) deliver(ns int64, lat time.Duration) {
	b := s.at(ns)
	b.delivered.Add(1)
	b.del.Record(lat)
}

// Second is one second of a run in the report.
type Second struct {
	T         int     `json:"t"`
	Sent      int64   `json:"sent"`
	Acked     int64   `json:"acked"`
	Delivered int64   `json:"delivered"`
	Ack       Latency `json:"ack"`
	Delivery  Latency `json:"delivery"`
}

// seconds returns the buckets up to the last one that saw anything.
func (s *series) seconds(any bool) []Second {
	if !any {
		return nil
	}
	last := -1
	for i := range s.secs {
		b := &s.secs[i]
		if b.sent.Load()+b.acked.Load()+b.delivered.Load() > 0 {
			last = i
		}
	}
	out := make([]Second, 0, last+1)
	for i := 0; i <= last; i++ {
		b := &s.secs[i]
		out = append(out, Second{T: i, Sent: b.sent.Load(), Acked: b.acked.Load(), Delivered: b.delivered.Load(),
			Ack: b.ack.Summary(), Delivery: b.del.Summary()})
	}
	return out
}
