package main

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// histSub is the number of buckets per doubling (2^7): a recorded value is
// reported within 1/128 (0.8 %) of what it was.
const (
	histSubBits = 7
	histSub     = 1 << histSubBits
	histBuckets = 40 * histSub // up to 2^40 µs, far beyond any run
)

// hist is a log-linear histogram of durations in microseconds: exact below
// 128 µs, then 128 buckets per doubling. Safe for concurrent use; Record
// takes no lock.
type hist struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	max    atomic.Int64 // µs
}

// bucketOf maps a value in µs to its bucket.
func bucketOf(v uint64) int {
	if v < histSub {
		return int(v)
	}
	e := bits.Len64(v) - histSubBits // ≥ 1
	i := e<<histSubBits + int(v>>uint(e-1)) - histSub
	return min(i, histBuckets-1)
}

// bucketMid is the value reported for bucket i: its lower bound for the
// exact range, the middle of its range above.
func bucketMid(i int) float64 {
	if i < histSub {
		return float64(i)
	}
	e := i >> histSubBits
	lo := uint64(i-e<<histSubBits+histSub) << uint(e-1)
	width := uint64(1) << uint(e-1)
	return float64(lo) + float64(width-1)/2
}

// Record adds one duration (negative ones count as zero).
func (h *hist) Record(d time.Duration) {
	us := max(d.Microseconds(), 0)
	h.counts[bucketOf(uint64(us))].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if us <= m || h.max.CompareAndSwap(m, us) {
			return
		}
	}
}

// Count is the number of recorded values.
func (h *hist) Count() uint64 { return h.n.Load() }

// Quantile returns the q-quantile (0 < q ≤ 1) in milliseconds, 0 when empty:
// the value below which a fraction q of the recorded values lie (nearest
// rank), never above the recorded maximum.
func (h *hist) Quantile(q float64) float64 {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.5)
	rank = min(max(rank, 1), n)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			return min(bucketMid(i), float64(h.max.Load())) / 1000
		}
	}
	return float64(h.max.Load()) / 1000
}

// Summary is the latency summary of a histogram, in milliseconds.
func (h *hist) Summary() Latency {
	return Latency{
		N:    h.Count(),
		P50:  h.Quantile(.50),
		P90:  h.Quantile(.90),
		P99:  h.Quantile(.99),
		P999: h.Quantile(.999),
		Max:  float64(h.max.Load()) / 1000,
	}
}

// Latency is a latency distribution in milliseconds.
type Latency struct {
	N    uint64  `json:"n"`
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
	Max  float64 `json:"max_ms"`
}
