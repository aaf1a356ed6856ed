package router

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"html/template"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	_ "embed"

	dto "github.com/prometheus/client_model/go"

	"github.com/switchboard-chat/switchboard/internal/admin"
	"github.com/switchboard-chat/switchboard/internal/audit"
	"github.com/switchboard-chat/switchboard/internal/chat"
)

// The ops page: a read-only snapshot for operators where no Kafka UI is
// deployed. Everything is gathered per request, cheaply: the gateway
// registry and the info each gateway announces with its heartbeat (Redis),
// topics, end offsets and group offsets (Kafka metadata requests), the
// router's own rebuild gauges, and the newest audit records. The rates are
// end-offset deltas between two views of the page (chat-log for messages,
// the gateways' topics for deliveries), so they need no scraping.

// OpsView is the ops page's data, also served as /ops.json.
type OpsView struct {
	At          time.Time    `json:"at"`
	Version     string       `json:"version"`
	Gateways    []OpsGateway `json:"gateways"`
	Topics      []OpsTopic   `json:"topics"`
	Rates       OpsRates     `json:"rates"`
	SlowDrops   int64        `json:"slow_consumer_drops"` // over the live gateways, since each started
	Rebuild     OpsRebuild   `json:"rebuild"`
	Audit       []OpsAudit   `json:"audit"`
	Unprotected bool         `json:"unprotected"` // no ADMIN_TOKEN: served on loopback only
	Errors      []string     `json:"errors,omitempty"`
}

// OpsGateway is one registered gateway.
type OpsGateway struct {
	ID            chat.ServerID `json:"id"`
	Live          bool          `json:"live"`
	Connections   int64         `json:"connections"`
	Sessions      int64         `json:"sessions"`
	LeaseAge      float64       `json:"lease_age_s"` // since the last heartbeat
	Version       string        `json:"version"`
	AdminAddr     string        `json:"admin_addr"`
	Uptime        float64       `json:"uptime_s"`
	SlowConsumers int64         `json:"slow_consumers"`
}

// OpsTopic is one Switchboard topic.
type OpsTopic struct {
	Name       string         `json:"name"`
	Role       string         `json:"role"`
	Group      string         `json:"group,omitempty"` // its consumer group, if any
	End        int64          `json:"end"`             // sum of the partitions' end offsets
	Lag        int64          `json:"lag"`
	Partitions []OpsPartition `json:"partitions"`
	Error      string         `json:"error,omitempty"`
}

// OpsPartition is one partition of a topic.
type OpsPartition struct {
	ID        int   `json:"id"`
	Leader    int   `json:"leader"`
	Replicas  int   `json:"replicas"`
	ISR       int   `json:"isr"`
	End       int64 `json:"end"`
	Committed int64 `json:"committed"` // -1: the group never committed here
	Lag       int64 `json:"lag"`
}

// OpsRates are per-second rates over the time since the previous view.
type OpsRates struct {
	Known      bool    `json:"known"` // false on the first view
	Window     float64 `json:"window_s"`
	Messages   float64 `json:"messages_per_s"`   // chat-log records
	Deliveries float64 `json:"deliveries_per_s"` // records into the gateways' topics
}

// OpsRebuild is the current or last rebuild.
type OpsRebuild struct {
	Progress float64 `json:"progress"` // 0 to 1
	Records  int     `json:"records"`  // of the last finished rebuild
	Took     string  `json:"took,omitempty"`
}

// OpsAudit is one audit record.
type OpsAudit struct {
	audit.Record
	At string `json:"at"`
}

// opsRates keeps the previous view's totals. Safe for concurrent use.
type opsRates struct {
	mu         sync.Mutex
	at         time.Time
	msgs, dels int64
	last       OpsRates
}

// update returns the rates since the previous sample at least a second
// old, and keeps this one.
func (o *opsRates) update(now time.Time, msgs, dels int64) OpsRates {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.at.IsZero() && now.Sub(o.at) < time.Second {
		return o.last
	}
	if !o.at.IsZero() {
		w := now.Sub(o.at).Seconds()
		o.last = OpsRates{Known: true, Window: w, Messages: float64(msgs-o.msgs) / w, Deliveries: float64(dels-o.dels) / w}
	}
	o.at, o.msgs, o.dels = now, msgs, dels
	return o.last
}

const opsAuditRecords = 20

// opsView gathers the page's data; what fails is named in Errors.
func (r *Router) opsView(ctx context.Context) OpsView {
	now := time.Now()
	v := OpsView{At: now, Version: admin.Version(), Unprotected: r.cfg.AdminToken == ""}
	fail := func(what string, err error) { v.Errors = append(v.Errors, what+": "+err.Error()) }
	gws, err := r.table.Gateways(ctx)
	if err != nil {
		fail("gateways", err)
	}
	lease := r.table.Lease()
	topics := []OpsTopic{
		{Name: r.cfg.ChatLogTopic, Role: "log of record", Group: r.cfg.GroupID},
		{Name: r.cfg.ChatStateTopic, Role: "users and conversations (compacted)", Group: r.cfg.GroupID},
		{Name: r.cfg.CheckpointTopic, Role: "seq checkpoints (compacted)"},
		{Name: r.cfg.AuditTopic, Role: "audit"},
	}
	for _, g := range gws {
		og := OpsGateway{ID: g.ID, Live: g.Live, Connections: g.Info.Connections, Sessions: g.Sessions,
			LeaseAge: now.Sub(g.LeaseExpires.Add(-lease)).Seconds(), Version: g.Info.Version,
			AdminAddr: g.Info.AdminAddr, SlowConsumers: g.Info.SlowConsumers}
		if !g.Info.Started.IsZero() {
			og.Uptime = now.Sub(g.Info.Started).Seconds()
		}
		if g.Live {
			v.SlowDrops += g.Info.SlowConsumers
		}
		v.Gateways = append(v.Gateways, og)
		topics = append(topics, OpsTopic{Name: g.ID.Topic(), Role: "deliveries to " + string(g.ID), Group: "ws-server-group-" + string(g.ID)})
	}
	var msgs, dels int64
	for i := range topics {
		r.opsTopic(ctx, &topics[i])
		switch {
		case topics[i].Name == r.cfg.ChatLogTopic:
			msgs = topics[i].End
		case strings.HasPrefix(topics[i].Role, "deliveries"):
			dels += topics[i].End
		}
	}
	v.Topics = topics
	v.Rates = r.ops.update(now, msgs, dels)
	var m dto.Metric
	_ = r.rebuildProgress.Write(&m)
	v.Rebuild.Progress = m.GetGauge().GetValue()
	if st := r.lastRebuild.Load(); st != nil {
		v.Rebuild.Records, v.Rebuild.Took = st.Records, st.Took.Round(time.Millisecond).String()
	}
	recs, err := r.admin.Tail(ctx, r.cfg.AuditTopic, opsAuditRecords)
	if err != nil {
		fail("audit", err)
	}
	for _, rec := range recs {
		var a OpsAudit
		if json.Unmarshal(rec.Value, &a.Record) != nil {
			continue
		}
		a.At = time.UnixMilli(a.TS).UTC().Format("2006-01-02 15:04:05")
		v.Audit = append(v.Audit, a)
	}
	return v
}

// opsTopic fills t's partitions, offsets and lag.
func (r *Router) opsTopic(ctx context.Context, t *OpsTopic) {
	parts, err := r.admin.Partitions(ctx, t.Name)
	if err != nil {
		t.Error = err.Error()
		return
	}
	end, err := r.admin.EndOffsets(ctx, t.Name)
	if err != nil {
		t.Error = err.Error()
		return
	}
	var committed map[int]int64
	if t.Group != "" {
		ids := make([]int, len(parts))
		for i, p := range parts {
			ids[i] = p.ID
		}
		if committed, err = r.admin.GroupOffsets(ctx, t.Group, t.Name, ids); err != nil {
			t.Error = err.Error()
		}
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].ID < parts[j].ID })
	for _, p := range parts {
		op := OpsPartition{ID: p.ID, Leader: p.Leader, Replicas: len(p.Replicas), ISR: len(p.ISR), End: end[p.ID], Committed: -1}
		if c, ok := committed[p.ID]; ok {
			op.Committed, op.Lag = c, max(0, end[p.ID]-c)
		} else if t.Group != "" {
			op.Lag = end[p.ID]
		}
		t.End += op.End
		t.Lag += op.Lag
		t.Partitions = append(t.Partitions, op)
	}
}

// opsAuth admits a request with the admin token (Authorization: Bearer or
// ?token=); with no token configured, only on a loopback admin address.
func (r *Router) opsAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Referrer-Policy", "no-referrer")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("X-Frame-Options", "DENY")
		want := r.cfg.AdminToken
		if want == "" {
			if !r.adminSrv.Loopback() {
				http.Error(w, "the ops page needs ADMIN_TOKEN when ADMIN_ADDR is not loopback", http.StatusForbidden)
				return
			}
			next.ServeHTTP(w, req)
			return
		}
		got := req.URL.Query().Get("token")
		if h := req.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
			got = strings.TrimPrefix(h, "Bearer ")
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="switchboard ops"`)
			http.Error(w, "unauthorized: the ops page needs the admin token (Authorization: Bearer or ?token=)", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, req)
	})
}

func (r *Router) serveOpsJSON(w http.ResponseWriter, req *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(r.opsView(req.Context()))
}

//go:embed ops.html
var opsHTML string

var opsPage = template.Must(template.New("ops").Funcs(template.FuncMap{
	"pct":   func(f float64) string { return fmtFloat(f*100) + "%" },
	"num":   fmtFloat,
	"secs":  func(f float64) string { return (time.Duration(f * float64(time.Second))).Round(time.Second).String() },
	"short": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
}).Parse(opsHTML))

func fmtFloat(f float64) string {
	b, _ := json.Marshal(float64(int64(f*10+0.5)) / 10)
	return string(b)
}

func (r *Router) serveOps(w http.ResponseWriter, req *http.Request) {
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	n := base64.StdEncoding.EncodeToString(nonce[:])
	// No script, no external asset: one inline style block, by nonce.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'nonce-"+n+"'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = opsPage.Execute(w, struct {
		OpsView
		Nonce string
	}{r.opsView(req.Context()), n})
}
