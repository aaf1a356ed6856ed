//go:build integration

package kafkabus_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/switchboard-chat/switchboard/internal/kafkabus"
	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// newTopics creates fresh topics (name → partitions) and drops them at
// the end of the test.
func newTopics(t *testing.T, admin *kafkabus.Admin, parts map[string]int) map[string]string {
	t.Helper()
	names := map[string]string{}
	var specs []kafkabus.TopicSpec
	var all []string
	for base, n := range parts {
		name := fmt.Sprintf("producer-test-%s-%d", base, time.Now().UnixNano())
		names[base] = name
		specs = append(specs, kafkabus.TopicSpec{Name: name, Partitions: n})
		all = append(all, name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := admin.EnsureTopics(ctx, specs...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.DeleteTopics(context.Background(), all...) })
	return names
}

func newAdmin(t *testing.T) *kafkabus.Admin {
	t.Helper()
	admin, err := kafkabus.NewAdmin(kafkabus.Config{Brokers: []string{testkit.KafkaAddr()}, ClientID: "producer-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	return admin
}

// readAll reads every record of topic, by partition.
func readAll(t *testing.T, admin *kafkabus.Admin, topic string) map[int][]kafkabus.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := admin.EndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int][]kafkabus.Record{}
	for p, end := range ends {
		if end == 0 {
			continue
		}
		err := kafkabus.Scan(ctx, kafkabus.Config{Brokers: []string{testkit.KafkaAddr()}}, topic, p, 0, end, func(r kafkabus.Record) error {
			out[p] = append(out[p], r)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestOneProduceWritesEveryPartitionInOrder: records for two topics and
// many keys, in one call split into several requests per partition
// (BatchSize 7), land each in the partition the murmur2 balancer names
// for its key (as the Java client and kafka-go's Writer place them), in
// the order given, each once.
func TestOneProduceWritesEveryPartitionInOrder(t *testing.T) {
	admin := newAdmin(t)
	topics := newTopics(t, admin, map[string]int{"log": 4, "gw": 1})
	p, err := kafkabus.NewProducer(kafkabus.Config{Brokers: []string{testkit.KafkaAddr()}, ClientID: "producer-test", BatchSize: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	var recs []kafkabus.Record
	for i := range 300 {
		key := fmt.Sprintf("conv-%d", i%23)
		recs = append(recs, kafkabus.Record{Topic: topics["log"], Key: []byte(key), Value: []byte(fmt.Sprintf("%s/%03d", key, i))})
		if i%3 == 0 {
			recs = append(recs, kafkabus.Record{Topic: topics["gw"], Key: []byte(key), Value: []byte(fmt.Sprintf("copy/%03d", i))})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Produce(ctx, recs); err != nil {
		t.Fatal(err)
	}

	var balancer kafka.Murmur2Balancer
	got := readAll(t, admin, topics["log"])
	total := 0
	last := map[string]string{}
	for part, rs := range got {
		for _, r := range rs {
			total++
			if want := balancer.Balance(kafka.Message{Key: r.Key}, 0, 1, 2, 3); want != part {
				t.Errorf("%s in partition %d, murmur2 names %d", r.Key, part, want)
			}
			if prev, v := last[string(r.Key)], string(r.Value); prev >= v {
				t.Errorf("%s after %s: out of order or repeated", v, prev)
			}
			last[string(r.Key)] = string(r.Value)
		}
	}
	if total != 300 {
		t.Errorf("chat log holds %d records, want 300", total)
	}
	if len(got) != 4 {
		t.Errorf("records in %d partitions, want all 4 (23 keys)", len(got))
	}
	copies := readAll(t, admin, topics["gw"])[0]
	if len(copies) != 100 {
		t.Fatalf("gateway topic holds %d records, want 100", len(copies))
	}
	for i := 1; i < len(copies); i++ {
		if string(copies[i-1].Value) >= string(copies[i].Value) {
			t.Fatalf("copy %s after %s", copies[i].Value, copies[i-1].Value)
		}
	}
}

// TestARecordTheBrokerRefusesFailsAtOnce: a record above the broker's
// message.max.bytes is refused for good, so Produce returns the broker's
// answer instead of retrying until its context ends; the other records of
// the call that the broker accepted stay written.
func TestARecordTheBrokerRefusesFailsAtOnce(t *testing.T) {
	admin := newAdmin(t)
	topics := newTopics(t, admin, map[string]int{"big": 1, "ok": 1})
	p, err := kafkabus.NewProducer(kafkabus.Config{Brokers: []string{testkit.KafkaAddr()}, ClientID: "producer-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = p.Produce(ctx, []kafkabus.Record{
		{Topic: topics["ok"], Key: []byte("a"), Value: []byte("fine")},
		{Topic: topics["big"], Key: []byte("a"), Value: []byte(strings.Repeat("x", 2<<20))},
	})
	if !errors.Is(err, kafka.MessageSizeTooLarge) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the broker's MessageSizeTooLarge without waiting for the deadline", err)
	}
	if ok := readAll(t, admin, topics["ok"])[0]; len(ok) != 1 || string(ok[0].Value) != "fine" {
		t.Fatalf("the accepted record: %v", ok)
	}
}

// TestAProduceToATopicNotYetCreatedWaitsForIt: a gateway's topic created
// after the write began (a new gateway) is written once the producer's
// metadata shows it, within the call.
func TestAProduceToATopicNotYetCreatedWaitsForIt(t *testing.T) {
	admin := newAdmin(t)
	p, err := kafkabus.NewProducer(kafkabus.Config{Brokers: []string{testkit.KafkaAddr()}, ClientID: "producer-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	name := fmt.Sprintf("producer-test-late-%d", time.Now().UnixNano())
	t.Cleanup(func() { _ = admin.DeleteTopics(context.Background(), name) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The producer's metadata is loaded (by a write elsewhere) before the
	// topic exists.
	other := newTopics(t, admin, map[string]int{"other": 1})["other"]
	if err := p.Produce(ctx, []kafkabus.Record{{Topic: other, Key: []byte("k"), Value: []byte("v")}}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Produce(ctx, []kafkabus.Record{{Topic: name, Key: []byte("k"), Value: []byte("v")}}) }()
	if err := admin.EnsureTopics(ctx, kafkabus.TopicSpec{Name: name}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, admin, name)[0]; len(got) != 1 || string(got[0].Value) != "v" {
		t.Fatalf("records %v, want the one written", got)
	}
}

// TestConcurrentProducesToOnePartitionStayWholeAndInOrder: calls that
// meet on one leader are written together, and each call's records to a
// partition land once, next to each other, in the order given.
func TestConcurrentProducesToOnePartitionStayWholeAndInOrder(t *testing.T) {
	admin := newAdmin(t)
	topic := newTopics(t, admin, map[string]int{"one": 1})["one"]
	p, err := kafkabus.NewProducer(kafkabus.Config{Brokers: []string{testkit.KafkaAddr()}, ClientID: "producer-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const callers, each = 40, 5
	errs := make(chan error, callers)
	for g := range callers {
		go func() {
			var recs []kafkabus.Record
			for j := range each {
				recs = append(recs, kafkabus.Record{Topic: topic, Key: []byte("k"), Value: []byte(fmt.Sprintf("%02d/%d", g, j))})
			}
			errs <- p.Produce(ctx, recs)
		}()
	}
	for range callers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	got := readAll(t, admin, topic)[0]
	if len(got) != callers*each {
		t.Fatalf("%d records, want %d", len(got), callers*each)
	}
	seen := map[string]bool{}
	for i := 0; i < len(got); i += each {
		g := string(got[i].Value[:2])
		if seen[g] {
			t.Fatalf("caller %s's records are split", g)
		}
		seen[g] = true
		for j := range each {
			if want := fmt.Sprintf("%s/%d", g, j); string(got[i+j].Value) != want {
				t.Fatalf("record %d is %s, want %s: a call's records are not together and in order", i+j, got[i+j].Value, want)
			}
		}
	}
}
