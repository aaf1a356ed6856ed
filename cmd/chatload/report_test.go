package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func sampleReport() *Report {
	return &Report{Scenario: "private", Target: "switchboard", Date: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC),
		Machine: Machine{NProc: 2, CPUModel: "Test CPU", MemGiB: 24}, Params: Params{Endpoints: 2, Pairs: 50, Rate: 2000, Duration: "20s"},
		Sent: 40000, Acked: 40000, AckedRate: 2000, DeliveriesPerSec: 2000, Delivered: 40000, ExpectedDeliveries: 40000,
		Errors:   map[string]int{"unavailable": 2, "bad_request": 1},
		Ack:      Latency{N: 40000, P50: 3.1, P90: 4, P99: 9.5, P999: 20, Max: 31},
		Delivery: Latency{N: 40000, P50: 4.2, P90: 5, P99: 12.25, P999: 25, Max: 40},
		CPU:      []CPUUse{{Name: "gateway", Seconds: 4, USPerMsg: 100}, {Name: "redis", Seconds: 1, USPerMsg: 25}},
		Series:   []Second{{T: 0, Sent: 2000, Acked: 1990, Delivered: 1985}}}
}

func TestTheJSONReportHasTheDocumentedFieldNames(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.json")
	if err := sampleReport().writeJSON(path); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"scenario", "target", "date", "machine", "achieved_rate", "lost", "errors", "ack_latency", "delivery_latency", "cpu", "series"} {
		if _, ok := m[k]; !ok {
			t.Errorf("no %q in %s", k, b)
		}
	}
	d := m["delivery_latency"].(map[string]any)
	if d["p999_ms"] != 25.0 || d["p99_ms"] != 12.25 {
		t.Errorf("delivery_latency %v", d)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil || back.Delivery != sampleReport().Delivery || back.Errors["unavailable"] != 2 {
		t.Errorf("round trip: %+v, %v", back, err)
	}
}

func TestALossFailsTheRunAndNothingElseDoes(t *testing.T) {
	r := sampleReport()
	if r.Failed() {
		t.Error("a clean run failed")
	}
	r.Lost = 1
	if !r.Failed() {
		t.Error("a run with a loss passed")
	}
	r = sampleReport()
	r.Storm = &StormResult{NotBack: 3}
	if !r.Failed() {
		t.Error("a storm whose clients did not come back passed")
	}
}

func TestTheGeneratedSectionReplacesOnlyWhatIsBetweenTheMarkers(t *testing.T) {
	doc := "# Benchmarks\n\nhand-written\n\n" + beginMarker + "\nold figures\n" + endMarker + "\n\nafter\n"
	out := replaceSection(doc, "new figures\n")
	if !strings.Contains(out, "hand-written") || !strings.Contains(out, "after") || strings.Contains(out, "old figures") ||
		!strings.Contains(out, beginMarker+"\nnew figures\n"+endMarker) {
		t.Fatalf("replaced:\n%s", out)
	}
	out = replaceSection("# Benchmarks\n", "first\n")
	if !strings.HasSuffix(out, beginMarker+"\nfirst\n"+endMarker+"\n") {
		t.Fatalf("appended:\n%s", out)
	}
}

func TestTheMarkdownHasMachineFiguresAndPlots(t *testing.T) {
	cf := sampleReport()
	cf.Target = "centrifugo"
	md := renderMarkdown([]*Report{sampleReport(), cf}, []string{"docs/bench/dm.png", ""}, "abc123", "")
	for _, want := range []string{"2 CPUs (Test CPU)", "commit `abc123`", "2026-12-02", "| switchboard | 50 pairs",
		"| centrifugo |", "4.20 / 5.00 / 12.2 / 25.0 / 40.0", "bad_request 1, unavailable 2", "gateway 100, redis 25",
		"](docs/bench/dm.png)"} {
		if !strings.Contains(md, want) {
			t.Errorf("no %q in\n%s", want, md)
		}
	}
}

func TestThePlotIsAPNG(t *testing.T) {
	r := sampleReport()
	r.Series = append(r.Series, Second{T: 1, Sent: 2000, Acked: 2000, Delivered: 2000, Delivery: Latency{N: 1, P50: 3, P90: 4, P99: 8, P999: 9}})
	path := filepath.Join(t.TempDir(), "p.png")
	if err := plotReport(r, path); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if len(b) < 1000 || string(b[1:4]) != "PNG" {
		t.Fatalf("%d bytes, not a PNG", len(b))
	}
}
