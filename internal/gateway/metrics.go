package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the gateway's Prometheus collectors. Every label is bounded.
type metrics struct {
	connections    prometheus.Gauge
	connects       *prometheus.CounterVec // result
	disconnects    *prometheus.CounterVec // reason
	framesIn       *prometheus.CounterVec // type
	framesOut      prometheus.Counter
	sends          *prometheus.CounterVec // result
	drops          *prometheus.CounterVec // reason
	produceLatency prometheus.Histogram
	redisLatency   prometheus.Histogram
	deliverLatency prometheus.Histogram
	consumed       prometheus.Counter
	syncs          *prometheus.CounterVec // result
	forwarded      prometheus.Counter
	historyPages   prometheus.Histogram
	acceptRefused  prometheus.Counter     // over the per-address cap
	acceptErrors   prometheus.Counter     // accepts failed for lack of descriptors
	limited        *prometheus.CounterVec // what: send, typing, sessions
}

func newMetrics(reg prometheus.Registerer, lag func() float64) *metrics {
	latency := func(name, help string) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "switchboard", Subsystem: "gateway", Name: name, Help: help,
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5},
		})
	}
	m := &metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "switchboard", Subsystem: "gateway",
			Name: "connections", Help: "Open WebSocket connections."}),
		connects: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "gateway",
			Name: "connects_total", Help: "WebSocket connection attempts by result."}, []string{"result"}),
		disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "gateway",
			Name: "disconnects_total", Help: "Closed connections by reason."}, []string{"reason"}),
		framesIn: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "gateway",
			Name: "frames_in_total", Help: "Client frames by type (invalid: rejected)."}, []string{"type"}),
		framesOut: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "gateway",
			Name: "frames_out_total", Help: "Frames written to clients."}),
		sends: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "gateway",
			Name: "sends_total", Help: "Send requests by result."}, []string{"result"}),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "gateway",
			Name: "drops_total", Help: "Frames or records not delivered, by reason."}, []string{"reason"}),
		produceLatency: latency("produce_seconds", "Kafka produce latency of one send batch (acks=all)."),
		redisLatency:   latency("redis_seconds", "Redis round trip of one send batch."),
		deliverLatency: latency("delivery_seconds", "End-to-end latency from accept to enqueue on the recipient's gateway."),
		historyPages:   latency("history_page_seconds", "Time to read one history page (window or log)."),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "gateway",
			Name: "syncs_total", Help: "Syncs and history requests by result (ok, stale: the views lagged past SyncWait, rebuilding: refused while the views are rebuilt, failed)."}, []string{"result"}),
		forwarded: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "gateway",
			Name: "forwarded_total", Help: "Copies re-routed once to the gateway their recipient moved to."}),
		consumed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "gateway",
			Name: "consumed_total", Help: "Records consumed from this gateway's topic."}),
	}
	m.acceptRefused = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "gateway",
		Name: "accept_refused_total", Help: "TCP connections closed at accept: their address had GATEWAY_MAX_CONNS_PER_IP open."})
	m.acceptErrors = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "gateway",
		Name: "accept_errors_total", Help: "Accepts that failed for lack of descriptors (EMFILE and the like) and were retried after a backoff."})
	m.limited = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "gateway",
		Name: "limited_total", Help: "Requests refused by an abuse limit (send: message rate, sync: sync budget, typing: typing frames, sessions: sessions per user)."}, []string{"what"})
	reg.MustRegister(m.acceptRefused, m.acceptErrors, m.limited)
	reg.MustRegister(m.connections, m.connects, m.disconnects, m.framesIn, m.framesOut, m.sends, m.drops,
		m.produceLatency, m.redisLatency, m.deliverLatency, m.consumed, m.syncs, m.forwarded, m.historyPages,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "switchboard", Subsystem: "gateway",
			Name: "consumer_lag", Help: "Records behind the end of this gateway's topic."}, lag))
	return m
}
