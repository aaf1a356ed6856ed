//go:build integration

// Package brokerloss tests Switchboard's Kafka layer against a 3-broker
// cluster that loses brokers under load: it starts the cluster with
// deploy/kafka/kafka.sh (KAFKA_NODES=3) on free ports, creates a topic
// through kafkabus.Admin with replication factor 3 and min.insync.replicas
// 2, and produces with kafkabus.Producer (acks=all) while it SIGKILLs
// brokers.
package brokerloss

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/internal/kafkabus"
)

const (
	produceTimeout = 5 * time.Second // the gateways' KAFKA_PRODUCE_TIMEOUT
	workers        = 8               // concurrent senders
	partitions     = 4               // as chat-log
)

// cluster is a 3-node Kafka of this test.
type cluster struct {
	t       *testing.T
	root    string
	env     []string
	brokers []string // node n at brokers[n-1]
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	port := freePortRun(t, 6)
	dir, err := os.MkdirTemp("", "switchboard-brokerloss-")
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, root: root, env: []string{
		"KAFKA_NODES=3",
		"KAFKA_PORT=" + strconv.Itoa(port),
		"KAFKA_CONTROLLER_PORT=" + strconv.Itoa(port+1),
		"KAFKA_STATE_DIR=" + dir,
		"KAFKA_CACHE_DIR=" + filepath.Join(root, ".cache", "kafka"),
		"KAFKA_START_TIMEOUT=150",
	}}
	for n := range 3 {
		c.brokers = append(c.brokers, "127.0.0.1:"+strconv.Itoa(port+2*n))
	}
	t.Cleanup(func() {
		if out, err := c.script("stop"); err != nil {
			t.Errorf("kafka.sh stop: %v\n%s", err, out)
		}
		if t.Failed() {
			for n := 1; n <= 3; n++ {
				log, _ := os.ReadFile(filepath.Join(dir, "cluster-3", fmt.Sprintf("node-%d", n), "server.log"))
				t.Logf("node %d server.log (tail):\n%s", n, tail(string(log), 30))
			}
		}
		_ = os.RemoveAll(dir)
	})
	start := time.Now()
	c.must("start")
	t.Logf("3 brokers %s ready in %v", strings.Join(c.brokers, ","), time.Since(start).Round(time.Millisecond))
	return c
}

func (c *cluster) script(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(c.root, "deploy", "kafka", "kafka.sh"), args...)
	cmd.Env = append(os.Environ(), c.env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *cluster) must(args ...string) {
	c.t.Helper()
	if out, err := c.script(args...); err != nil {
		c.t.Fatalf("kafka.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// freePortRun finds a port p with p..p+n-1 all free on loopback.
func freePortRun(t *testing.T, n int) int {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		base := ln.Addr().(*net.TCPAddr).Port
		held := []net.Listener{ln}
		ok := base+n < 65536
		for p := base + 1; ok && p < base+n; p++ {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				ok = false
				break
			}
			held = append(held, l)
		}
		for _, l := range held {
			l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatalf("no run of %d free ports found", n)
	return 0
}

// attempt is one Produce call.
type attempt struct {
	value      string
	start, end time.Time
	err        error
}

// load sends one record per call from workers goroutines until stopped
// and keeps every attempt.
type load struct {
	mu       sync.Mutex
	attempts []attempt
	stop     context.CancelFunc
	wg       sync.WaitGroup
}

func startLoad(p *kafkabus.Producer, topic string) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{stop: cancel}
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				v := fmt.Sprintf("w%d-%d", w, i)
				pctx, cancel := context.WithTimeout(ctx, produceTimeout)
				a := attempt{value: v, start: time.Now()}
				a.err = p.Produce(pctx, []kafkabus.Record{{Topic: topic, Key: []byte(v), Value: []byte(v)}})
				a.end = time.Now()
				cancel()
				if ctx.Err() != nil && a.err != nil {
					return // stopped, not answered by Kafka
				}
				l.mu.Lock()
				l.attempts = append(l.attempts, a)
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *load) halt() { l.stop(); l.wg.Wait() }

// snapshot returns the attempts answered so far.
func (l *load) snapshot() []attempt {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.attempts)
}

// await polls cond every 50ms until it holds or limit passes.
func await(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// acksSince counts acknowledged attempts that started at or after t0.
func (l *load) acksSince(t0 time.Time) int {
	n := 0
	for _, a := range l.snapshot() {
		if a.err == nil && !a.start.Before(t0) {
			n++
		}
	}
	return n
}

// longestGap is the longest time within [from, to] without an
// acknowledgement, and the sends answered with an error meanwhile.
func longestGap(as []attempt, from, to time.Time) (gap time.Duration, failed int) {
	var acks []time.Time
	for _, a := range as {
		if a.end.Before(from) || a.end.After(to) {
			continue
		}
		if a.err != nil {
			failed++
			continue
		}
		acks = append(acks, a.end)
	}
	slices.SortFunc(acks, func(a, b time.Time) int { return a.Compare(b) })
	prev := from
	for _, at := range append(acks, to) {
		gap = max(gap, at.Sub(prev))
		prev = at
	}
	return gap, failed
}

func TestBrokerLossUnderLoad(t *testing.T) {
	c := startCluster(t)
	cfg := kafkabus.Config{Brokers: c.brokers, ClientID: "brokerloss", ReplicationFactor: 3, MinInsyncReplicas: 2}
	admin, err := kafkabus.NewAdmin(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx := context.Background()
	const topic = "brokerloss-log"
	if err := admin.EnsureTopics(ctx, kafkabus.TopicSpec{Name: topic, Partitions: partitions}); err != nil {
		t.Fatal(err)
	}
	var parts []kafkabus.Partition
	await(t, "every partition has a leader and 3 replicas in sync", 30*time.Second, func() bool {
		parts, err = admin.Partitions(ctx, topic)
		if err != nil || len(parts) != partitions {
			return false
		}
		for _, p := range parts {
			if p.Leader == 0 || len(p.Replicas) != 3 || len(p.ISR) != 3 {
				return false
			}
		}
		return true
	})
	t.Logf("topic %s: %+v", topic, parts)

	// The node that leads partition 0 dies first, so that some partition
	// needs a new leader; the second is another of the survivors.
	first := parts[0].Leader
	second := 1 + first%3

	producer, err := kafkabus.NewProducer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l := startLoad(producer, topic)
	defer func() { l.halt(); producer.Close() }()

	t0 := time.Now()
	await(t, "500 sends acknowledged by the whole cluster", 60*time.Second, func() bool { return l.acksSince(t0) >= 500 })
	warm := time.Since(t0)
	t.Logf("warm-up: 500 acks in %v (%.0f acks/s)", warm.Round(time.Millisecond), 500/warm.Seconds())

	// One broker lost: sends keep being acknowledged, perhaps after an
	// election.
	c.must("kill", strconv.Itoa(first))
	killed1 := time.Now()
	await(t, "200 sends started after the first kill acknowledged", 60*time.Second, func() bool { return l.acksSince(killed1) >= 200 })
	recovered1 := time.Now()
	gap1, failed1 := longestGap(l.snapshot(), killed1, recovered1)
	var firstAck time.Duration = -1
	for _, a := range l.snapshot() {
		if a.err == nil && !a.start.Before(killed1) && (firstAck < 0 || a.end.Sub(killed1) < firstAck) {
			firstAck = a.end.Sub(killed1)
		}
	}
	t.Logf("node %d killed: first ack of a send started after it %v later; longest time without an ack %v; %d sends answered an error meanwhile; 200 acks in %v",
		first, firstAck.Round(time.Millisecond), gap1.Round(time.Millisecond), failed1, recovered1.Sub(killed1).Round(time.Millisecond))
	await(t, "the two survivors hold every partition's leadership", 30*time.Second, func() bool {
		ps, err := admin.Partitions(ctx, topic)
		if err != nil {
			return false
		}
		for _, p := range ps {
			if p.Leader == 0 || p.Leader == first || slices.Contains(p.ISR, first) {
				return false
			}
		}
		return true
	})

	// Two brokers lost: below min.insync.replicas and without a controller
	// quorum. No send may be acknowledged; each is answered within the
	// produce timeout.
	c.must("kill", strconv.Itoa(second))
	killed2 := time.Now()
	await(t, "every worker answered twice with both brokers down", 60*time.Second, func() bool {
		n := 0
		for _, a := range l.snapshot() {
			if !a.start.Before(killed2) {
				n++
			}
		}
		return n >= 2*workers
	})
	restarting := time.Now()
	// One returns.
	c.must("start", strconv.Itoa(second))
	back := time.Now()
	down := l.snapshot()
	var refused, falseAcks int
	var slowest time.Duration
	for _, a := range down {
		if a.start.Before(killed2) || !a.start.Before(restarting) {
			continue
		}
		if a.err == nil {
			if !a.end.Before(restarting) {
				// In flight when the broker was restarted: acknowledged once
				// two replicas were in sync again, which is correct.
				continue
			}
			falseAcks++
			t.Errorf("send %s started %v after the second kill was acknowledged with only one broker up", a.value, a.start.Sub(killed2))
			continue
		}
		refused++
		slowest = max(slowest, a.end.Sub(a.start))
	}
	if refused == 0 {
		t.Fatal("no send was answered while two brokers were down")
	}
	if slowest > produceTimeout+time.Second {
		t.Errorf("a refused send took %v to answer; want it within the produce timeout %v", slowest, produceTimeout)
	}
	t.Logf("node %d killed too: %d sends started meanwhile were all refused (slowest answer %v), %d acknowledged; node %d back in %v",
		second, refused, slowest.Round(time.Millisecond), falseAcks, second, back.Sub(restarting).Round(time.Millisecond))
	await(t, "200 sends started after a broker returned acknowledged", 90*time.Second, func() bool { return l.acksSince(back) >= 200 })
	var again time.Duration = -1
	for _, a := range l.snapshot() {
		if a.err == nil && !a.start.Before(back) && (again < 0 || a.end.Sub(back) < again) {
			again = a.end.Sub(back)
		}
	}
	t.Logf("node %d ready: first ack %v later (%v after the second kill)", second, again.Round(time.Millisecond), (back.Sub(killed2) + again).Round(time.Millisecond))
	l.halt()

	// Nothing acknowledged is lost: read the whole topic back, the dead
	// node first in the bootstrap list.
	acked := map[string]bool{}
	total := 0
	for _, a := range l.snapshot() {
		total++
		if a.err == nil {
			acked[a.value] = true
		}
	}
	readCfg := cfg
	readCfg.Brokers = append([]string{c.brokers[first-1]}, c.brokers...)
	ends, err := admin.EndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for p, end := range ends {
		err := kafkabus.Scan(ctx, readCfg, topic, p, 0, end, func(r kafkabus.Record) error {
			seen[string(r.Value)]++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var lost []string
	dups := 0
	for v := range acked {
		switch n := seen[v]; {
		case n == 0:
			lost = append(lost, v)
		case n > 1:
			dups++
		}
	}
	unacked := 0
	for v := range seen {
		if !acked[v] {
			unacked++
		}
	}
	if len(lost) > 0 {
		slices.Sort(lost)
		t.Errorf("%d of %d acknowledged records are not in the log, e.g. %v", len(lost), len(acked), lost[:min(len(lost), 10)])
	}
	t.Logf("read back: %d sends, %d acknowledged, all %d in the log (%d lost); %d held twice (producer retries); %d records of refused sends also landed",
		total, len(acked), len(acked)-len(lost), len(lost), dups, unacked)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
