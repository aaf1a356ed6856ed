package deploy

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const dashboardFile = "grafana/dashboards/switchboard.json"

type dashboard struct {
	UID    string  `json:"uid"`
	Title  string  `json:"title"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos *struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// Series that Prometheus itself adds for every target.
var prometheusSeries = map[string]bool{"up": true, "scrape_duration_seconds": true, "scrape_samples_scraped": true}

// Labels Prometheus attaches to every scraped series (target labels).
var targetLabels = map[string]bool{"instance": true, "job": true, "cluster": true}

var (
	promString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	promRange    = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	promMatchers = regexp.MustCompile(`\{([^}]*)\}`)
	promIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promKeywords = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true,
		"group_right": true, "bool": true, "offset": true, "and": true, "or": true, "unless": true, "atan2": true,
		"inf": true, "nan": true}
)

// promRefs returns the series names and label names a PromQL expression
// uses. It is a tokenizer, not a parser: enough for dashboard queries
// (functions are identifiers followed by "(", label names sit in by(…)
// and {…}).
func promRefs(expr string) (series, labels []string) {
	e := promString.ReplaceAllString(expr, `""`)
	e = promRange.ReplaceAllString(e, "")
	for _, m := range promGrouping.FindAllStringSubmatch(e, -1) {
		labels = append(labels, promIdent.FindAllString(m[2], -1)...)
	}
	e = promGrouping.ReplaceAllString(e, " ")
	for _, m := range promMatchers.FindAllStringSubmatch(e, -1) {
		for _, part := range strings.Split(m[1], ",") {
			if name := promIdent.FindString(part); name != "" {
				labels = append(labels, name)
			}
		}
	}
	e = promMatchers.ReplaceAllString(e, " ")
	for _, loc := range promIdent.FindAllStringIndex(e, -1) {
		word := e[loc[0]:loc[1]]
		rest := strings.TrimLeft(e[loc[1]:], " \t\n")
		if promKeywords[strings.ToLower(word)] || strings.HasPrefix(rest, "(") || strings.HasPrefix(word, "$") {
			continue
		}
		if loc[0] > 0 && (e[loc[0]-1] == '$' || (e[loc[0]-1] >= '0' && e[loc[0]-1] <= '9') || e[loc[0]-1] == '.') {
			continue // $__rate_interval, 1e3, 0.99
		}
		series = append(series, word)
	}
	return series, labels
}

func TestPromRefsReadsSeriesAndLabels(t *testing.T) {
	series, labels := promRefs(`histogram_quantile(0.99, sum by (le, instance) (rate(a_b_bucket{reason="x{y}"}[$__rate_interval]))) / on(job) c_total`)
	if !slices.Equal(series, []string{"a_b_bucket", "c_total"}) || !slices.Equal(labels, []string{"le", "instance", "job", "reason"}) {
		t.Fatalf("series %v labels %v", series, labels)
	}
}

func TestTheDashboardQueriesOnlyMetricsTheProductRegisters(t *testing.T) {
	d := readDashboard(t)
	known := registeredMetrics(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("the dashboard needs a uid and a title")
	}
	ids := map[int]bool{}
	queries := 0
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos == nil || p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: missing or bad gridPos", p.Title)
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		if p.Datasource == nil || p.Datasource.UID != datasourceUID(t) {
			t.Errorf("panel %q: datasource must be the provisioned one (uid %q)", p.Title, datasourceUID(t))
		}
		for _, target := range p.Targets {
			queries++
			series, labels := promRefs(target.Expr)
			if len(series) == 0 {
				t.Errorf("panel %q %s: no series in %q", p.Title, target.RefID, target.Expr)
			}
			for _, s := range series {
				m, ok := known[s]
				switch {
				case prometheusSeries[s]:
				case !ok:
					t.Errorf("panel %q %s: %s is not a metric the product registers", p.Title, target.RefID, s)
				default:
					for _, l := range labels {
						if !targetLabels[l] && !slices.Contains(m.labels, l) && !otherSeriesHasLabel(series, known, l) {
							t.Errorf("panel %q %s: %s has no label %q (it has %v; %s)", p.Title, target.RefID, s, l, m.labels, m.where)
						}
					}
				}
			}
		}
	}
	t.Logf("%d panels, %d queries, %d registered series", len(d.Panels), queries, len(known))
}

func otherSeriesHasLabel(series []string, known map[string]metric, label string) bool {
	for _, s := range series {
		if slices.Contains(known[s].labels, label) {
			return true
		}
	}
	return false
}

// The list: what an operator must see on the dashboard.
func TestTheDashboardShowsWhatOperatorsNeed(t *testing.T) {
	d := readDashboard(t)
	var all []string
	for _, p := range d.Panels {
		for _, target := range p.Targets {
			all = append(all, strings.Join(strings.Fields(target.Expr), " "))
		}
	}
	exprs := strings.Join(all, "\n")
	for what, want := range map[string]*regexp.Regexp{
		"connections":               regexp.MustCompile(`switchboard_gateway_connections\b`),
		"sends by result":           regexp.MustCompile(`by \(result\) \(rate\(switchboard_gateway_sends_total`),
		"end-to-end latency p50":    regexp.MustCompile(`histogram_quantile\(0\.5, sum by \(le\) \(rate\(switchboard_gateway_delivery_seconds_bucket`),
		"end-to-end latency p99":    regexp.MustCompile(`histogram_quantile\(0\.99, sum by \(le\) \(rate\(switchboard_gateway_delivery_seconds_bucket`),
		"gateway consumer lag":      regexp.MustCompile(`switchboard_gateway_consumer_lag\b`),
		"router consumer lag":       regexp.MustCompile(`switchboard_router_consumer_lag\b`),
		"slow-consumer disconnects": regexp.MustCompile(`switchboard_gateway_disconnects_total\{reason="slow_consumer"\}`),
		"drops":                     regexp.MustCompile(`switchboard_gateway_drops_total\b`),
		"rebuild progress":          regexp.MustCompile(`switchboard_router_rebuild_progress_ratio\b`),
		"rebuild rate":              regexp.MustCompile(`rate\(switchboard_router_rebuild_records_total`),
	} {
		if !want.MatchString(exprs) {
			t.Errorf("no panel shows %s (want a query matching %s)", what, want)
		}
	}
}

// datasourceUID is the uid of the provisioned Prometheus data source.
func datasourceUID(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile("grafana/provisioning/datasources/prometheus.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Datasources []struct {
			UID, Type, URL string
		} `yaml:"datasources"`
	}
	if err := yaml.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Datasources) != 1 || f.Datasources[0].Type != "prometheus" || f.Datasources[0].UID == "" {
		t.Fatalf("want one prometheus data source with a uid, got %+v", f.Datasources)
	}
	return f.Datasources[0].UID
}
