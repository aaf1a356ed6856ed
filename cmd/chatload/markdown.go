package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// The generated section of BENCHMARKS.md lies between these markers;
// `chatload markdown` rewrites only what is between them.
const (
	beginMarker = "<!-- bench:begin -->"
	endMarker   = "<!-- bench:end -->"
)

// markdownCmd: chatload markdown -o BENCHMARKS.md [-commit C] [-note TEXT] [-plot] run.json…
// renders the reports as tables into the generated section of the file,
// one row per scenario, target and setup with the medians of its runs.
func markdownCmd(args []string) error {
	fs := flag.NewFlagSet("chatload markdown", flag.ContinueOnError)
	out := fs.String("o", "BENCHMARKS.md", "the file whose generated section to rewrite")
	commit := fs.String("commit", "", "the commit measured")
	note := fs.String("note", "", "a paragraph placed under the heading")
	plot := fs.Bool("plot", false, "draw each row's plot from its median run, into the PNG beside that run's JSON report")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("markdown: no report files")
	}
	// relPNG is the PNG beside a JSON report, relative to the document.
	relPNG := func(p string) string {
		rel, err := filepath.Rel(filepath.Dir(*out), strings.TrimSuffix(p, ".json")+".png")
		if err != nil {
			return ""
		}
		return filepath.ToSlash(rel)
	}
	var reports []*Report
	var images []string
	for _, p := range fs.Args() {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var r Report
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		r.Scenario = canonicalScenario(r.Scenario) // reports written before the rename
		reports = append(reports, &r)
		img := ""
		if fileExists(strings.TrimSuffix(p, ".json") + ".png") {
			img = relPNG(p)
		}
		images = append(images, img)
	}
	if *plot {
		for _, g := range groupRuns(reports) {
			i := g.idx[g.medianRun()]
			if r := reports[i]; trafficScenario(g.key.scenario) && len(r.Series) > 0 {
				png := strings.TrimSuffix(fs.Arg(i), ".json") + ".png"
				if err := plotReport(r, png); err != nil {
					return fmt.Errorf("plot %s: %w", png, err)
				}
				images[i] = relPNG(fs.Arg(i))
			}
		}
	}
	section := renderMarkdown(reports, images, *commit, *note)
	old, err := os.ReadFile(*out)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	return os.WriteFile(*out, []byte(replaceSection(string(old), section)), 0o644)
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// replaceSection puts section between the markers of doc, or appends
// both at the end when doc has none.
func replaceSection(doc, section string) string {
	block := beginMarker + "\n" + section + endMarker
	i := strings.Index(doc, beginMarker)
	j := strings.Index(doc, endMarker)
	if i < 0 || j < i {
		return strings.TrimRight(doc, "\n") + "\n\n" + block + "\n"
	}
	return doc[:i] + block + doc[j+len(endMarker):]
}

func lat5(l Latency) string {
	if l.N == 0 {
		return "—"
	}
	return fmt.Sprintf("%s / %s / %s / %s / %s", ms(l.P50), ms(l.P90), ms(l.P99), ms(l.P999), ms(l.Max))
}

func errorsCell(m map[string]int) string {
	if len(m) == 0 {
		return "0"
	}
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func cpuCell(cs []CPUUse, perDelivery bool) string {
	if len(cs) == 0 {
		return "—"
	}
	var parts []string
	for _, c := range cs {
		v, f := c.USPerMsg, "%s %.0f"
		if perDelivery {
			v, f = c.USPerDelivery, "%s %.2f"
		}
		parts = append(parts, fmt.Sprintf(f, c.Name, v))
	}
	return strings.Join(parts, ", ")
}

// groupKey is what makes runs one row: the same scenario, target and
// setup (every parameter the figures depend on).
type groupKey struct {
	scenario    string // canonical
	target      string
	params      Params
	sourceAddrs int // connect: the loopback addresses the connections came from
}

// runGroup is the runs of one row, in the order they were given.
type runGroup struct {
	key  groupKey
	idx  []int // the runs' positions among all the reports
	runs []*Report
}

// groupRuns groups the reports by scenario (an alias counting as its
// canonical name), target and setup, in the order each group first
// appears.
func groupRuns(reports []*Report) []*runGroup {
	var groups []*runGroup
	byKey := map[groupKey]*runGroup{}
	for i, r := range reports {
		k := groupKey{scenario: canonicalScenario(r.Scenario), target: r.Target, params: r.Params}
		if r.Idle != nil {
			k.sourceAddrs = max(r.Idle.SourceAddrs, 1)
		}
		g := byKey[k]
		if g == nil {
			g = &runGroup{key: k}
			byKey[k] = g
			groups = append(groups, g)
		}
		g.idx = append(g.idx, i)
		g.runs = append(g.runs, r)
	}
	return groups
}

// median is the middle of vs once sorted; for an even count, the mean of
// the two middle values; 0 for none.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(vs))
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// values is f of every run of the group that has the figure (ok).
func (g *runGroup) values(f func(*Report) (v float64, ok bool)) []float64 {
	var vs []float64
	for _, r := range g.runs {
		if v, ok := f(r); ok {
			vs = append(vs, v)
		}
	}
	return vs
}

// median is the median of a figure every run has.
func (g *runGroup) median(f func(*Report) float64) float64 {
	return median(g.values(func(r *Report) (float64, bool) { return f(r), true }))
}

// keyFigure is the figure a row's median run is chosen by: KiB per
// connection for connect, the time until all were synced for storm, the
// delivery p99 for the others.
func keyFigure(r *Report) float64 {
	switch {
	case r.Idle != nil:
		return r.Idle.KiBPerConn
	case r.Storm != nil:
		return r.Storm.SyncedSec
	}
	return r.Delivery.P99
}

// medianRun is the position in g.runs of the run whose key figure is the
// median: the middle one once sorted, the lower of the two middle ones
// for an even count (ties keep the order of the runs).
func (g *runGroup) medianRun() int {
	order := make([]int, len(g.runs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(keyFigure(g.runs[a]), keyFigure(g.runs[b])) })
	return order[(len(order)-1)/2]
}

// medianLatency takes the median of each percentile on its own, over the
// runs that measured any; N is their total.
func medianLatency(runs []*Report, f func(*Report) Latency) Latency {
	var ls []Latency
	var out Latency
	for _, r := range runs {
		if l := f(r); l.N > 0 {
			ls = append(ls, l)
			out.N += l.N
		}
	}
	pick := func(p func(Latency) float64) float64 {
		vs := make([]float64, len(ls))
		for i, l := range ls {
			vs[i] = p(l)
		}
		return median(vs)
	}
	out.P50 = pick(func(l Latency) float64 { return l.P50 })
	out.P90 = pick(func(l Latency) float64 { return l.P90 })
	out.P99 = pick(func(l Latency) float64 { return l.P99 })
	out.P999 = pick(func(l Latency) float64 { return l.P999 })
	out.Max = pick(func(l Latency) float64 { return l.Max })
	return out
}

// medianCPU is, per component (in the order they first appear), the
// median of its µs per message and per delivery over the runs that
// measured it.
func medianCPU(runs []*Report) []CPUUse {
	var names []string
	perMsg, perDeliv := map[string][]float64{}, map[string][]float64{}
	for _, r := range runs {
		for _, c := range r.CPU {
			if _, seen := perMsg[c.Name]; !seen {
				names = append(names, c.Name)
			}
			perMsg[c.Name] = append(perMsg[c.Name], c.USPerMsg)
			perDeliv[c.Name] = append(perDeliv[c.Name], c.USPerDelivery)
		}
	}
	out := make([]CPUUse, 0, len(names))
	for _, n := range names {
		out = append(out, CPUUse{Name: n, USPerMsg: median(perMsg[n]), USPerDelivery: median(perDeliv[n])})
	}
	return out
}

// sumErrors adds up the errors of the runs by code.
func sumErrors(runs []*Report) map[string]int {
	m := map[string]int{}
	for _, r := range runs {
		for k, v := range r.Errors {
			m[k] += v
		}
	}
	return m
}

// sum adds up a count over the runs.
func sum[T int | int64 | uint64](runs []*Report, f func(*Report) T) T {
	var t T
	for _, r := range runs {
		t += f(r)
	}
	return t
}

// rangeCell is "lowest–highest" of the runs' values, "—" when there are
// fewer than two.
func rangeCell(vs []float64, format func(float64) string) string {
	if len(vs) < 2 {
		return "—"
	}
	return format(slices.Min(vs)) + "–" + format(slices.Max(vs))
}

func trafficScenario(sc string) bool {
	return sc == "private" || sc == "mixed" || sc == "public" || sc == "sync"
}

// runsSummary is the paragraph on how a row's figures come from its runs.
func runsSummary(groups []*runGroup) string {
	lo, hi := len(groups[0].runs), len(groups[0].runs)
	for _, g := range groups {
		lo, hi = min(lo, len(g.runs)), max(hi, len(g.runs))
	}
	if hi == 1 {
		return "Each row is one run; the columns marked (sum) are its counts.\n\n"
	}
	n := fmt.Sprintf("%d runs", hi)
	if lo != hi {
		n = fmt.Sprintf("%d to %d runs (the runs column)", lo, hi)
	}
	return "Figures are medians of " + n + " of the same scenario, target and setup, taken figure by figure (so one row's p50 and p99 may come from different runs); " +
		"for an even number of runs the median is the mean of the two middle values. " +
		"The range columns give the lowest and highest value among a row's runs. " +
		"The columns marked (sum) add up all the runs of a row, so a loss or an error in any run shows. " +
		"A row's plot is of its median run by delivery p99 (for an even number, the lower of the two middle ones).\n\n"
}

// renderMarkdown renders the reports: one row per group of runs (same
// scenario, target and setup) with the medians of their figures, the
// groups under their scenario in the order they first appear, with the
// machine and date of the first report.
func renderMarkdown(reports []*Report, images []string, commit, note string) string {
	var b strings.Builder
	if len(reports) == 0 {
		return ""
	}
	first := reports[0]
	fmt.Fprintf(&b, "## Generated by `make bench`\n\n")
	fmt.Fprintf(&b, "%s; %d CPUs (%s), %d GiB", first.Date.Format("2006-01-02 15:04 UTC"), first.Machine.NProc,
		first.Machine.CPUModel, first.Machine.MemGiB)
	if commit != "" {
		fmt.Fprintf(&b, "; commit `%s`", commit)
	}
	b.WriteString(". Everything — Kafka, Redis, the router, the gateways, Centrifugo and the load generator — shares these cores, so the figures are a floor and vary between runs. Do not edit this section by hand: `make bench` rewrites it.\n\n")
	groups := groupRuns(reports)
	b.WriteString(runsSummary(groups))
	if note != "" {
		b.WriteString(note + "\n\n")
	}
	var order []string
	byScenario := map[string][]*runGroup{}
	for _, g := range groups {
		sc := g.key.scenario
		if _, ok := byScenario[sc]; !ok {
			order = append(order, sc)
		}
		byScenario[sc] = append(byScenario[sc], g)
	}
	for _, sc := range order {
		gs := byScenario[sc]
		switch {
		case trafficScenario(sc):
			renderTraffic(&b, sc, gs)
		case sc == "connect":
			renderConnect(&b, gs)
		case sc == "storm":
			renderStorm(&b, gs)
		default:
			continue
		}
		for _, g := range gs {
			if img, alt := g.image(images); img != "" {
				fmt.Fprintf(&b, "![%s, %s, %.0f msg/s%s](%s)\n", sc, g.key.target, g.key.params.Rate, alt, img)
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

// image is the plot shown for the row: its median run's, else the first
// of its runs that has one, with words saying which run it is.
func (g *runGroup) image(images []string) (img, which string) {
	m := g.medianRun()
	pick := func(i int) (string, string) {
		switch {
		case len(g.runs) == 1:
			return images[g.idx[i]], ""
		case i == m:
			return images[g.idx[i]], fmt.Sprintf(", the median run of %d", len(g.runs))
		}
		return images[g.idx[i]], fmt.Sprintf(", run %d of %d", i+1, len(g.runs))
	}
	if images[g.idx[m]] != "" {
		return pick(m)
	}
	for i := range g.runs {
		if images[g.idx[i]] != "" {
			return pick(i)
		}
	}
	return "", ""
}

func renderTraffic(b *strings.Builder, sc string, gs []*runGroup) {
	perDelivery := sc == "public"
	unit := "µs/msg"
	if perDelivery {
		unit = "µs/delivery"
	}
	fmt.Fprintf(b, "### %s\n\n", scenarioTitle(sc))
	fmt.Fprintf(b, "| target | setup | runs | offered msg/s | achieved msg/s | deliveries/s | acked (sum) | lost (sum) | dup (sum) | errors (sum) | ack p50 / p90 / p99 / p99.9 / max ms | delivery p50 / p90 / p99 / p99.9 / max ms | delivery p99 range ms | CPU %s |\n", unit)
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, g := range gs {
		p99s := g.values(func(r *Report) (float64, bool) { return r.Delivery.P99, r.Delivery.N > 0 })
		fmt.Fprintf(b, "| %s | %s | %d | %.0f | %.0f | %.0f | %d | %d | %d | %s | %s | %s | %s | %s |\n",
			g.key.target, setup(sc, g.key.params), len(g.runs), g.key.params.Rate,
			g.median(func(r *Report) float64 { return r.AckedRate }),
			g.median(func(r *Report) float64 { return r.DeliveriesPerSec }),
			sum(g.runs, func(r *Report) int { return r.Acked }),
			sum(g.runs, func(r *Report) int64 { return r.Lost }),
			sum(g.runs, func(r *Report) int64 { return r.Duplicates }),
			errorsCell(sumErrors(g.runs)),
			lat5(medianLatency(g.runs, func(r *Report) Latency { return r.Ack })),
			lat5(medianLatency(g.runs, func(r *Report) Latency { return r.Delivery })),
			rangeCell(p99s, ms), cpuCell(medianCPU(g.runs), perDelivery))
	}
	b.WriteString("\n")
	for _, g := range gs {
		var syncs []*Report
		for _, r := range g.runs {
			if r.Sync != nil {
				syncs = append(syncs, r)
			}
		}
		if len(syncs) == 0 {
			continue
		}
		s := syncs[0].Sync
		med := func(f func(*SyncResult) float64) float64 {
			vs := make([]float64, len(syncs))
			for i, r := range syncs {
				vs[i] = f(r.Sync)
			}
			return median(vs)
		}
		lat := func(f func(*SyncResult) Latency) string {
			return lat5(medianLatency(syncs, func(r *Report) Latency { return f(r.Sync) }))
		}
		fmt.Fprintf(b, "Syncs (%s): %d users × %d conversations, %.0f syncs answered per run (%.0f/s), %d answered by an error (sum); sync latency %s ms; the others' delivery latency before the syncs %s ms, while they ran %s ms.\n\n",
			runsWord(len(syncs)), s.Users, s.Convs, med(func(s *SyncResult) float64 { return float64(s.Syncs) }),
			med(func(s *SyncResult) float64 { return s.SyncsPerSec }), sum(syncs, func(r *Report) int { return r.Sync.SyncErrors }),
			lat(func(s *SyncResult) Latency { return s.SyncLatency }), lat(func(s *SyncResult) Latency { return s.BaselineDeliv }),
			lat(func(s *SyncResult) Latency { return s.WithSyncsDeliv }))
	}
}

// runsWord says how many runs a median line is over.
func runsWord(n int) string {
	if n == 1 {
		return "one run"
	}
	return fmt.Sprintf("medians of %d runs", n)
}

func renderConnect(b *strings.Builder, gs []*runGroup) {
	b.WriteString("### Idle connections\n\n| target | connections | source addresses | runs | connect rate /s | RSS before → after MiB | KiB per connection | KiB per connection range |\n|---|---|---|---|---|---|---|---|\n")
	for _, g := range gs {
		idle := func(f func(*IdleResult) float64) []float64 {
			return g.values(func(r *Report) (float64, bool) {
				if r.Idle == nil {
					return 0, false
				}
				return f(r.Idle), true
			})
		}
		kib := idle(func(r *IdleResult) float64 { return r.KiBPerConn })
		if len(kib) == 0 {
			continue
		}
		fmt.Fprintf(b, "| %s (%d endpoints) | %d | %d | %d | %.0f | %.1f → %.1f | %.1f | %s |\n", g.key.target, g.key.params.Endpoints,
			g.key.params.Conns, g.key.sourceAddrs, len(kib), median(idle(func(r *IdleResult) float64 { return r.ConnectPerSec })),
			median(idle(func(r *IdleResult) float64 { return r.RSSBeforeMiB })), median(idle(func(r *IdleResult) float64 { return r.RSSAfterMiB })),
			median(kib), rangeCell(kib, func(v float64) string { return fmt.Sprintf("%.1f", v) }))
	}
	b.WriteString("\n")
}

func renderStorm(b *strings.Builder, gs []*runGroup) {
	b.WriteString("### Reconnect storm\n\n| clients | senders, offered msg/s | runs | dropped at | all reconnected after | all synced after | all synced range | not back (sum) | sent while down (sum) | lost (sum) | syncs retried (sum) |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, g := range gs {
		var runs []*Report
		for _, r := range g.runs {
			if r.Storm != nil {
				runs = append(runs, r)
			}
		}
		if len(runs) == 0 {
			continue
		}
		sg := &runGroup{key: g.key, runs: runs}
		med := func(f func(*StormResult) float64) float64 {
			return sg.median(func(r *Report) float64 { return f(r.Storm) })
		}
		synced := sg.values(func(r *Report) (float64, bool) { return r.Storm.SyncedSec, true })
		syncedRange := rangeCell(synced, func(v float64) string { return fmt.Sprintf("%.2f", v) })
		if len(synced) > 1 {
			syncedRange += " s"
		}
		fmt.Fprintf(b, "| %d | %d, %.0f | %d | %.1f s | %.2f s | %.2f s | %s | %d | %d | %d | %d |\n", runs[0].Storm.Clients, runs[0].Storm.Senders,
			g.key.params.Rate, len(runs), med(func(s *StormResult) float64 { return s.DropAfterSec }),
			med(func(s *StormResult) float64 { return s.ReconnectSec }), median(synced),
			syncedRange,
			sum(runs, func(r *Report) int { return r.Storm.NotBack }), sum(runs, func(r *Report) int64 { return r.Storm.SentDuringGap }),
			sum(runs, func(r *Report) int64 { return r.Storm.Lost }), sum(runs, func(r *Report) int64 { return r.Storm.SyncRetries }))
	}
	b.WriteString("\n")
}

func scenarioTitle(sc string) string {
	switch sc {
	case "private":
		return "Direct messages (sender → receiver pairs across gateways)"
	case "public":
		return "Public room fan-out"
	case "sync":
		return "Syncs of many conversations beside direct messages"
	}
	return "Mixed traffic"
}

func setup(sc string, p Params) string {
	switch sc {
	case "private", "sync":
		return fmt.Sprintf("%d pairs, %d endpoints, %s", p.Pairs, p.Endpoints, p.Duration)
	case "public":
		return fmt.Sprintf("%d senders → %d receivers, %d endpoints, %s", p.Senders, p.Receivers, p.Endpoints, p.Duration)
	}
	return fmt.Sprintf("%d users, %.0f %% public, %d endpoints, %s", p.Users, p.Public*100, p.Endpoints, p.Duration)
}
