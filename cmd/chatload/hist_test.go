package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestEveryValueFallsInABucketWhoseMiddleIsWithinOnePercent(t *testing.T) {
	for _, v := range []uint64{0, 1, 127, 128, 129, 255, 256, 257, 1000, 4321, 1 << 20, 123456789} {
		mid := bucketMid(bucketOf(v))
		if v < histSub && mid != float64(v) {
			t.Errorf("value %d: bucket middle %v, want exact", v, mid)
		}
		if rel := math.Abs(mid-float64(v)) / math.Max(float64(v), 1); rel > 0.01 {
			t.Errorf("value %d: bucket middle %v, off by %.2f %%", v, mid, rel*100)
		}
	}
}

func TestBucketsAreMonotonic(t *testing.T) {
	prev := -1
	for v := uint64(0); v < 1<<16; v++ {
		b := bucketOf(v)
		if b < prev || b > prev+1 {
			t.Fatalf("value %d: bucket %d after %d", v, b, prev)
		}
		prev = b
	}
}

func TestQuantilesMatchTheExactOnesWithinOnePercent(t *testing.T) {
	var h hist
	var exact []float64
	r := rand.New(rand.NewPCG(1, 2))
	for range 100_000 {
		d := time.Duration(r.ExpFloat64() * float64(5*time.Millisecond))
		h.Record(d)
		exact = append(exact, float64(d.Microseconds())/1000)
	}
	slices.Sort(exact)
	for _, q := range []float64{.5, .9, .99, .999} {
		want := exact[int(q*float64(len(exact))+0.5)-1]
		got := h.Quantile(q)
		if math.Abs(got-want)/want > 0.01 {
			t.Errorf("q%v: %v ms, exact %v ms", q, got, want)
		}
	}
	if s := h.Summary(); s.Max != exact[len(exact)-1] || s.N != 100_000 {
		t.Errorf("summary %+v: want max %v and n 100000", s, exact[len(exact)-1])
	}
}

func TestAnEmptyHistogramReportsZeros(t *testing.T) {
	var h hist
	if s := h.Summary(); s != (Latency{}) {
		t.Errorf("summary of nothing: %+v", s)
	}
}

func TestASingleValueIsEveryQuantile(t *testing.T) {
	var h hist
	h.Record(3 * time.Millisecond)
	s := h.Summary()
	for _, v := range []float64{s.P50, s.P99, s.P999, s.Max} {
		if math.Abs(v-3) > 0.03 {
			t.Errorf("summary %+v: want 3 ms everywhere", s)
		}
	}
}
