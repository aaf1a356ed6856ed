package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestTheMedianOfAnEvenCountIsTheMeanOfTheTwoMiddleValues(t *testing.T) {
	for _, tc := range []struct {
		vs   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{5}, 5},
		{[]float64{9, 1, 4}, 4},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{10, 1}, 5.5},
		{[]float64{7, 7, 1, 100, 7}, 7},
	} {
		in := slices.Clone(tc.vs)
		if got := median(tc.vs); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.vs, got, tc.want)
		}
		if !slices.Equal(in, tc.vs) {
			t.Errorf("median sorted its argument: %v", tc.vs)
		}
	}
}

// privateRun is a private run at rate with the given delivery p99 and lost count.
func privateRun(rate, p99 float64, lost int64) *Report {
	r := sampleReport()
	r.Params.Rate = rate
	r.Delivery.P99 = p99
	r.Lost = lost
	return r
}

func TestRunsOfTheSameScenarioTargetAndSetupAreOneGroup(t *testing.T) {
	alias := privateRun(2000, 1, 0)
	alias.Scenario = "dm" // a report from before the rename
	cf := privateRun(2000, 1, 0)
	cf.Target = "centrifugo"
	fewer := privateRun(2000, 1, 0)
	fewer.Params.Pairs = 20
	longer := privateRun(2000, 1, 0)
	longer.Params.Duration = "60s"
	idle := &Report{Scenario: "idle", Target: "switchboard", Params: Params{Endpoints: 1, Conns: 5000}, Idle: &IdleResult{SourceAddrs: 1}}
	connect := &Report{Scenario: "connect", Target: "switchboard", Params: Params{Endpoints: 1, Conns: 5000}, Idle: &IdleResult{SourceAddrs: 0}}
	spread := &Report{Scenario: "connect", Target: "switchboard", Params: Params{Endpoints: 1, Conns: 5000}, Idle: &IdleResult{SourceAddrs: 3}}
	reports := []*Report{privateRun(2000, 1, 0), privateRun(5000, 1, 0), cf, alias, fewer, idle, privateRun(2000, 1, 0), longer, connect, spread, privateRun(5000, 1, 0)}
	groups := groupRuns(reports)
	var got [][]int
	for _, g := range groups {
		got = append(got, g.idx)
		for k, i := range g.idx {
			if g.runs[k] != reports[i] {
				t.Errorf("group %v: run %d is not report %d", g.idx, k, i)
			}
		}
	}
	want := [][]int{{0, 3, 6}, {1, 10}, {2}, {4}, {5, 8}, {7}, {9}}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("groups %v, want %v", got, want)
	}
	if groups[0].key.scenario != "private" || groups[4].key.scenario != "connect" {
		t.Errorf("group scenarios %q, %q: want the canonical names", groups[0].key.scenario, groups[4].key.scenario)
	}
}

// row returns the cells of the markdown table row that starts with prefix.
func row(t *testing.T, md, prefix string) []string {
	t.Helper()
	var found []string
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(line, prefix) {
			if found != nil {
				t.Fatalf("two rows start with %q in\n%s", prefix, md)
			}
			cells := strings.Split(strings.Trim(line, "|"), "|")
			for _, c := range cells {
				found = append(found, strings.TrimSpace(c))
			}
		}
	}
	if found == nil {
		t.Fatalf("no row starts with %q in\n%s", prefix, md)
	}
	return found
}

// The columns of a traffic row.
const (
	colTarget = iota
	colSetup
	colRuns
	colOffered
	colAchieved
	colDeliveries
	colAcked
	colLost
	colDup
	colErrors
	colAck
	colDelivery
	colP99Range
	colCPU
)

func TestATrafficRowHasTheMediansOfItsRunsAndTheSumsOfTheirLosses(t *testing.T) {
	a, b, c := privateRun(2000, 30, 0), privateRun(2000, 10, 2), privateRun(2000, 20, 0)
	a.AckedRate, b.AckedRate, c.AckedRate = 1990, 1900, 1999
	a.DeliveriesPerSec, b.DeliveriesPerSec, c.DeliveriesPerSec = 1980, 1998, 1950
	a.Acked, b.Acked, c.Acked = 40000, 39000, 39990
	a.Duplicates, b.Duplicates, c.Duplicates = 1, 0, 3
	a.Errors = nil
	c.Errors = map[string]int{"unavailable": 5, "timeout": 1}
	a.Delivery = Latency{N: 1, P50: 5, P90: 8, P99: 30, P999: 40, Max: 90}
	b.Delivery = Latency{N: 1, P50: 3, P90: 9, P99: 10, P999: 60, Max: 50}
	c.Delivery = Latency{N: 1, P50: 4, P90: 7, P99: 20, P999: 50, Max: 70}
	a.Ack = Latency{N: 1, P50: 1, P90: 2, P99: 3, P999: 4, Max: 5}
	b.Ack = Latency{N: 1, P50: 3, P90: 6, P99: 9, P999: 12, Max: 15}
	c.Ack = Latency{N: 1, P50: 2, P90: 4, P99: 6, P999: 8, Max: 10}
	a.CPU = []CPUUse{{Name: "gateway", USPerMsg: 300}, {Name: "redis", USPerMsg: 50}}
	b.CPU = []CPUUse{{Name: "gateway", USPerMsg: 100}, {Name: "redis", USPerMsg: 70}}
	c.CPU = []CPUUse{{Name: "gateway", USPerMsg: 200}, {Name: "redis", USPerMsg: 60}, {Name: "kafka", USPerMsg: 9}}
	other := privateRun(5000, 99, 0)
	md := renderMarkdown([]*Report{a, other, b, c}, make([]string, 4), "", "")

	got := row(t, md, "| switchboard | 50 pairs, 2 endpoints, 20s | 3 |")
	for col, want := range map[int]string{
		colOffered:    "2000",
		colAchieved:   "1990",
		colDeliveries: "1980",
		colAcked:      "118990",
		colLost:       "2",
		colDup:        "4",
		colErrors:     "bad_request 1, timeout 1, unavailable 7",
		colAck:        "2.00 / 4.00 / 6.00 / 8.00 / 10.0",
		colDelivery:   "4.00 / 8.00 / 20.0 / 50.0 / 70.0",
		colP99Range:   "10.0–30.0",
		colCPU:        "gateway 200, redis 60, kafka 9",
	} {
		if got[col] != want {
			t.Errorf("column %d: %q, want %q", col, got[col], want)
		}
	}
	single := row(t, md, "| switchboard | 50 pairs, 2 endpoints, 20s | 1 |")
	if single[colOffered] != "5000" || single[colDelivery] != "4.20 / 5.00 / 99.0 / 25.0 / 40.0" || single[colP99Range] != "—" {
		t.Errorf("the single run's row: %q", single)
	}
	if !strings.Contains(md, "Figures are medians of 1 to 3 runs") || !strings.Contains(md, "mean of the two middle values") {
		t.Errorf("the text does not say what the figures are:\n%s", md)
	}
}

func TestAnEvenNumberOfRunsTakesTheMeanOfTheMiddleTwo(t *testing.T) {
	a, b := privateRun(2000, 10, 0), privateRun(2000, 30, 0)
	a.AckedRate, b.AckedRate = 1000, 2000
	md := renderMarkdown([]*Report{a, b}, []string{"a.png", "b.png"}, "", "")
	got := row(t, md, "| switchboard |")
	if got[colRuns] != "2" || got[colAchieved] != "1500" || got[colDelivery] != "4.20 / 5.00 / 20.0 / 25.0 / 40.0" || got[colP99Range] != "10.0–30.0" {
		t.Errorf("row %q", got)
	}
	if !strings.Contains(md, "Figures are medians of 2 runs") {
		t.Errorf("no count in\n%s", md)
	}
	// The plot is the lower middle run's: a (p99 10), not b.
	if !strings.Contains(md, "the median run of 2](a.png)") || strings.Contains(md, "b.png") {
		t.Errorf("plots:\n%s", md)
	}
}

func TestTheMedianRunIsTheMiddleOneByItsKeyFigure(t *testing.T) {
	for _, tc := range []struct {
		p99s []float64
		want int
	}{
		{[]float64{5}, 0},
		{[]float64{30, 10, 20}, 2},
		{[]float64{10, 30, 20}, 2},
		{[]float64{40, 10, 30, 20}, 3}, // the lower of 20 and 30
		{[]float64{7, 7, 7}, 1},
	} {
		g := &runGroup{}
		for _, p := range tc.p99s {
			g.runs = append(g.runs, privateRun(2000, p, 0))
		}
		if got := g.medianRun(); got != tc.want {
			t.Errorf("%v: run %d, want %d", tc.p99s, got, tc.want)
		}
	}
	g := &runGroup{runs: []*Report{
		{Idle: &IdleResult{KiBPerConn: 9}}, {Idle: &IdleResult{KiBPerConn: 7}}, {Idle: &IdleResult{KiBPerConn: 8}},
	}}
	if got := g.medianRun(); got != 2 {
		t.Errorf("connect: run %d, want 2 (8 KiB)", got)
	}
}

func TestOnlyTheMedianRunsPlotIsShownWhenItHasOne(t *testing.T) {
	reports := []*Report{privateRun(2000, 30, 0), privateRun(2000, 10, 0), privateRun(2000, 20, 0)}
	md := renderMarkdown(reports, []string{"r1.png", "r2.png", "r3.png"}, "", "")
	if !strings.Contains(md, "![private, switchboard, 2000 msg/s, the median run of 3](r3.png)") || strings.Contains(md, "r1.png") || strings.Contains(md, "r2.png") {
		t.Errorf("plots:\n%s", md)
	}
	md = renderMarkdown(reports, []string{"", "r2.png", ""}, "", "")
	if !strings.Contains(md, "![private, switchboard, 2000 msg/s, run 2 of 3](r2.png)") {
		t.Errorf("without the median run's plot:\n%s", md)
	}
}

func TestASingleRunRendersAsBefore(t *testing.T) {
	md := renderMarkdown([]*Report{sampleReport()}, []string{"docs/bench/p.png"}, "", "")
	got := row(t, md, "| switchboard |")
	if got[colRuns] != "1" || got[colAcked] != "40000" || got[colDelivery] != "4.20 / 5.00 / 12.2 / 25.0 / 40.0" || got[colP99Range] != "—" {
		t.Errorf("row %q", got)
	}
	if !strings.Contains(md, "Each row is one run") || strings.Contains(md, "medians") {
		t.Errorf("text for one run:\n%s", md)
	}
	if !strings.Contains(md, "![private, switchboard, 2000 msg/s](docs/bench/p.png)") {
		t.Errorf("plot:\n%s", md)
	}
}

func TestConnectAndStormRowsAreMediansWithRangesAndSums(t *testing.T) {
	idle := func(name string, kib, rate float64) *Report {
		return &Report{Scenario: name, Target: "switchboard", Params: Params{Endpoints: 1, Conns: 5000},
			Idle: &IdleResult{Conns: 5000, SourceAddrs: 1, ConnectPerSec: rate, RSSBeforeMiB: 60, RSSAfterMiB: 60 + kib*5000/1024, KiBPerConn: kib}}
	}
	storm := func(synced float64, notBack int, lost int64) *Report {
		return &Report{Scenario: "storm", Target: "switchboard", Params: Params{Endpoints: 2, Clients: 2000, Senders: 10, Rate: 200, Duration: "20s"},
			Storm: &StormResult{Clients: 2000, Senders: 10, DropAfterSec: 6, ReconnectSec: synced / 2, SyncedSec: synced, NotBack: notBack, Lost: lost, SentDuringGap: 100,
				SyncRetries: int64(notBack) + 2}}
	}
	md := renderMarkdown([]*Report{idle("connect", 9.9, 2000), storm(2.36, 0, 0), idle("idle", 7.5, 3000), storm(3.1, 4, 0), idle("connect", 8.0, 2500), storm(1.9, 0, 1)},
		make([]string, 6), "", "")
	got := row(t, md, "| switchboard (1 endpoints) |")
	if want := []string{"switchboard (1 endpoints)", "5000", "1", "3", "2500", "60.0 → 99.1", "8.0", "7.5–9.9"}; !slices.Equal(got, want) {
		t.Errorf("connect row %q, want %q", got, want)
	}
	got = row(t, md, "| 2000 |")
	if want := []string{"2000", "10, 200", "3", "6.0 s", "1.18 s", "2.36 s", "1.90–3.10 s", "4", "300", "1", "10"}; !slices.Equal(got, want) {
		t.Errorf("storm row %q, want %q", got, want)
	}
	if strings.Count(md, "### Idle connections") != 1 || strings.Count(md, "### Reconnect storm") != 1 {
		t.Errorf("sections:\n%s", md)
	}
}

func TestTheSyncLineHasTheMediansOfItsRuns(t *testing.T) {
	sync := func(syncs uint64, errs int, p50 float64) *Report {
		r := sampleReport()
		r.Scenario, r.Params.Pairs, r.Params.Users, r.Params.Convs = "sync", 20, 16, 1000
		r.Sync = &SyncResult{Users: 16, Convs: 1000, Syncs: syncs, SyncsPerSec: float64(syncs) / 10, SyncErrors: errs,
			SyncLatency: Latency{N: 1, P50: p50, P90: p50, P99: p50, P999: p50, Max: p50}}
		return r
	}
	md := renderMarkdown([]*Report{sync(700, 0, 200), sync(900, 2, 100), sync(800, 1, 300)}, make([]string, 3), "", "")
	want := "Syncs (medians of 3 runs): 16 users × 1000 conversations, 800 syncs answered per run (80/s), 3 answered by an error (sum); sync latency 200 / 200 / 200 / 200 / 200 ms"
	if !strings.Contains(md, want) {
		t.Errorf("no %q in\n%s", want, md)
	}
}

func TestMarkdownDrawsOnlyTheMedianRunsPlot(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	for i, p99 := range []float64{30, 10, 20} {
		r := privateRun(2000, p99, 0)
		r.Series = []Second{{T: 0, Sent: 10, Acked: 10, Delivered: 10, Delivery: Latency{N: 10, P50: 1, P90: 2, P99: p99, P999: p99, Max: p99}},
			{T: 1, Sent: 10, Acked: 10, Delivered: 10, Delivery: Latency{N: 10, P50: 1, P90: 2, P99: p99, P999: p99, Max: p99}}}
		p := filepath.Join(dir, "bench", "private-"+string(rune('1'+i))+".json")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := r.writeJSON(p); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	doc := filepath.Join(dir, "BENCHMARKS.md")
	if err := markdownCmd(append([]string{"-o", doc, "-plot"}, paths...)); err != nil {
		t.Fatal(err)
	}
	pngs, _ := filepath.Glob(filepath.Join(dir, "bench", "*.png"))
	if len(pngs) != 1 || filepath.Base(pngs[0]) != "private-3.png" {
		t.Fatalf("plots %v, want only private-3.png (p99 20, the median)", pngs)
	}
	b, _ := os.ReadFile(doc)
	if !strings.Contains(string(b), "](bench/private-3.png)") {
		t.Errorf("the document does not show it:\n%s", b)
	}
	// An old report names its scenario dm: it is the same row.
	var r Report
	old, _ := os.ReadFile(paths[0])
	if err := json.Unmarshal(old, &r); err != nil {
		t.Fatal(err)
	}
	r.Scenario = "dm"
	if err := r.writeJSON(paths[0]); err != nil {
		t.Fatal(err)
	}
	if err := markdownCmd(append([]string{"-o", doc}, paths...)); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(doc)
	if strings.Count(string(b), "| switchboard |") != 1 || !strings.Contains(string(b), "| switchboard | 50 pairs, 2 endpoints, 20s | 3 |") {
		t.Errorf("an alias split the row:\n%s", b)
	}
}
