package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// plotReport draws the run's seconds into a PNG: delivery latency
// percentiles (and the ack p99) per second on a log scale above, messages
// sent, acknowledged and delivered per second below.
func plotReport(r *Report, path string) error {
	if len(r.Series) == 0 {
		return fmt.Errorf("nothing to plot: the %s scenario has no per-second series", r.Scenario)
	}
	lat := plot.New()
	lat.Title.Text = fmt.Sprintf("%s against %s: %.0f msg/s offered, latency per second", r.Scenario, r.Target, r.Params.Rate)
	lat.Y.Label.Text = "ms (log)"
	lat.Y.Scale = plot.LogScale{}
	lat.Y.Tick.Marker = plot.TickerFunc(ticks125)
	lat.Add(plotter.NewGrid())
	series := []struct {
		name string
		get  func(Second) (float64, bool)
		c    color.RGBA
		dash bool
	}{
		{"delivery p50", func(s Second) (float64, bool) { return s.Delivery.P50, s.Delivery.N > 0 }, color.RGBA{0x1f, 0x77, 0xb4, 255}, false},
		{"delivery p90", func(s Second) (float64, bool) { return s.Delivery.P90, s.Delivery.N > 0 }, color.RGBA{0x2c, 0xa0, 0x2c, 255}, false},
		{"delivery p99", func(s Second) (float64, bool) { return s.Delivery.P99, s.Delivery.N > 0 }, color.RGBA{0xff, 0x7f, 0x0e, 255}, false},
		{"delivery p99.9", func(s Second) (float64, bool) { return s.Delivery.P999, s.Delivery.N > 0 }, color.RGBA{0xd6, 0x27, 0x28, 255}, false},
		{"ack p99", func(s Second) (float64, bool) { return s.Ack.P99, s.Ack.N > 0 }, color.RGBA{0x7f, 0x7f, 0x7f, 255}, true},
	}
	for _, s := range series {
		var pts plotter.XYs
		for _, sec := range r.Series {
			if v, ok := s.get(sec); ok {
				pts = append(pts, plotter.XY{X: float64(sec.T), Y: max(v, 0.01)})
			}
		}
		if len(pts) == 0 {
			continue
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		l.Color = s.c
		l.Width = vg.Points(1.5)
		if s.dash {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		}
		lat.Add(l)
		lat.Legend.Add(s.name, l)
	}
	lat.Legend.Top = true
	lat.Legend.Left = true
	lat.Y.Max *= 6 // room for the legend above the lines

	thr := plot.New()
	thr.Title.Text = "throughput"
	thr.X.Label.Text = "seconds since the start"
	thr.Y.Label.Text = "per second"
	thr.Add(plotter.NewGrid())
	for _, s := range []struct {
		name string
		get  func(Second) int64
		c    color.RGBA
	}{
		{"sent", func(s Second) int64 { return s.Sent }, color.RGBA{0x7f, 0x7f, 0x7f, 255}},
		{"acknowledged", func(s Second) int64 { return s.Acked }, color.RGBA{0x1f, 0x77, 0xb4, 255}},
		{"delivered", func(s Second) int64 { return s.Delivered }, color.RGBA{0xff, 0x7f, 0x0e, 255}},
	} {
		pts := make(plotter.XYs, len(r.Series))
		for i, sec := range r.Series {
			pts[i] = plotter.XY{X: float64(sec.T), Y: float64(s.get(sec))}
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		l.Color = s.c
		l.Width = vg.Points(1.5)
		thr.Add(l)
		thr.Legend.Add(s.name, l)
	}
	thr.Legend.Top = true
	thr.Y.Min = 0
	lat.X.Min, thr.X.Min = 0, 0
	last := float64(r.Series[len(r.Series)-1].T)
	lat.X.Max, thr.X.Max = last, last

	img := vgimg.New(vg.Points(720), vg.Points(540))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadTop: vg.Points(4), PadBottom: vg.Points(4), PadX: vg.Points(6), PadY: vg.Points(10)}
	plots := [][]*plot.Plot{{lat}, {thr}}
	canvases := plot.Align(plots, tiles, dc)
	lat.Draw(canvases[0][0])
	thr.Draw(canvases[1][0])
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ticks125 labels a log axis at 1, 2 and 5 times the powers of ten.
func ticks125(lo, hi float64) []plot.Tick {
	var out []plot.Tick
	for p := math.Pow(10, math.Floor(math.Log10(lo))); p <= hi; p *= 10 {
		for _, m := range []float64{1, 2, 5} {
			if v := p * m; v >= lo && v <= hi {
				out = append(out, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'g', -1, 64)})
			}
		}
	}
	return out
}
