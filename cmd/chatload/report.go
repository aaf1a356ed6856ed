package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"
)

// Report is what one run measured; -json writes it as is.
type Report struct {
	Scenario string    `json:"scenario"`
	Target   string    `json:"target"`
	Date     time.Time `json:"date"`
	Machine  Machine   `json:"machine"`
	Params   Params    `json:"params"`

	DurationSec      float64 `json:"duration_s"`
	AchievedRate     float64 `json:"achieved_rate"` // messages sent per second
	AckedRate        float64 `json:"acked_rate"`
	DeliveriesPerSec float64 `json:"deliveries_per_s"`

	Sent               int            `json:"sent"`
	Acked              int            `json:"acked"`
	Unanswered         int            `json:"unanswered"` // neither acknowledged nor refused within the drain
	ExpectedDeliveries int64          `json:"expected_deliveries"`
	Delivered          int64          `json:"delivered"`
	Lost               int64          `json:"lost"`          // acknowledged, not delivered to a session that stayed connected
	ReceiverGone       int64          `json:"receiver_gone"` // acknowledged, not delivered, the receiver's connection dropped
	Duplicates         int64          `json:"duplicates"`
	OutOfOrder         int64          `json:"out_of_order"` // live deliveries behind a higher seq of their conversation (normal across senders of one room: clients order by seq)
	DroppedSessions    int            `json:"dropped_sessions"`
	Errors             map[string]int `json:"errors"`

	Ack      Latency `json:"ack_latency"`
	Delivery Latency `json:"delivery_latency"`
	SendLag  Latency `json:"send_lag"` // the load generator's own lateness against its schedule

	CPU   []CPUUse     `json:"cpu,omitempty"`
	Idle  *IdleResult  `json:"idle,omitempty"`
	Storm *StormResult `json:"storm,omitempty"`
	Sync  *SyncResult  `json:"sync,omitempty"`

	Series []Second `json:"series,omitempty"`
}

// Params are the settings of a run that the figures depend on.
type Params struct {
	Endpoints int     `json:"endpoints"`
	Users     int     `json:"users,omitempty"`
	Pairs     int     `json:"pairs,omitempty"`
	Receivers int     `json:"receivers,omitempty"`
	Senders   int     `json:"senders,omitempty"`
	Rate      float64 `json:"rate,omitempty"`
	Duration  string  `json:"duration,omitempty"`
	Public    float64 `json:"public_ratio,omitempty"`
	Conns     int     `json:"conns,omitempty"`
	Clients   int     `json:"clients,omitempty"`
	Convs     int     `json:"convs,omitempty"`
}

// Machine describes where the run happened.
type Machine struct {
	NProc    int    `json:"nproc"`
	CPUModel string `json:"cpu_model"`
	MemGiB   int    `json:"mem_gib"`
}

// machine reads the CPU model and memory from /proc.
func machine() Machine {
	m := Machine{NProc: runtime.NumCPU()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			m.MemGiB = (kb + 1<<19) >> 20
		}
	}
	return m
}

// Failed reports whether the run lost anything it should not have.
func (r *Report) Failed() bool {
	if r.Lost > 0 {
		return true
	}
	if r.Storm != nil && (r.Storm.Lost > 0 || r.Storm.NotBack > 0) {
		return true
	}
	return false
}

// writeJSON writes the report to path.
func (r *Report) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func fmtLat(l Latency) string {
	if l.N == 0 {
		return "n/a"
	}
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  p99.9 %s  max %s ms  (n=%d)",
		ms(l.P50), ms(l.P90), ms(l.P99), ms(l.P999), ms(l.Max), l.N)
}

// ms formats milliseconds with about three significant digits.
func ms(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// print writes the human-readable report.
func (r *Report) print(w io.Writer) {
	fmt.Fprintf(w, "%s against %s (%d endpoints), %s, %d CPUs (%s)\n", r.Scenario, r.Target, r.Params.Endpoints,
		r.Date.Format(time.DateTime), r.Machine.NProc, r.Machine.CPUModel)
	if r.Sent > 0 {
		fmt.Fprintf(w, "sent %d in %.1f s: offered %.0f msg/s, achieved %.0f msg/s, acknowledged %.0f msg/s, %.0f deliveries/s\n",
			r.Sent, r.DurationSec, r.Params.Rate, r.AchievedRate, r.AckedRate, r.DeliveriesPerSec)
		fmt.Fprintf(w, "acked %d, unanswered %d; deliveries expected %d, delivered %d, LOST %d, receiver gone %d, duplicates %d, behind a higher seq %d, dropped sessions %d\n",
			r.Acked, r.Unanswered, r.ExpectedDeliveries, r.Delivered, r.Lost, r.ReceiverGone, r.Duplicates, r.OutOfOrder, r.DroppedSessions)
		if len(r.Errors) > 0 {
			var parts []string
			for _, k := range sortedKeys(r.Errors) {
				parts = append(parts, fmt.Sprintf("%s %d", k, r.Errors[k]))
			}
			fmt.Fprintf(w, "errors: %s\n", strings.Join(parts, ", "))
			if r.Errors["rate_limited"] > 0 {
				fmt.Fprintln(w, "  (rate_limited: run the gateways with GATEWAY_MESSAGE_RATE=-1 for load tests)")
			}
		}
		fmt.Fprintf(w, "ack latency       %s\n", fmtLat(r.Ack))
		fmt.Fprintf(w, "delivery latency  %s\n", fmtLat(r.Delivery))
		if r.SendLag.P99 > 5 {
			fmt.Fprintf(w, "send lag          %s  (the load generator fell behind its schedule)\n", fmtLat(r.SendLag))
		}
	}
	if r.Idle != nil {
		r.Idle.print(w)
	}
	if r.Storm != nil {
		r.Storm.print(w)
	}
	if r.Sync != nil {
		r.Sync.print(w)
	}
	if len(r.CPU) > 0 {
		fmt.Fprintln(w, "CPU over the run:")
		for _, c := range r.CPU {
			fmt.Fprintf(w, "  %-14s %6.2f s  %5.1f %% of a core  %7.1f µs/msg  %7.2f µs/delivery  (pids %v)\n",
				c.Name, c.Seconds, c.PctCore, c.USPerMsg, c.USPerDelivery, c.PIDs)
		}
	}
}
