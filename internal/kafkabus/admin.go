package kafkabus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// TopicSpec describes a topic to create.
type TopicSpec struct {
	Name       string
	Partitions int // default 1
	// Retention is how long records are kept; 0 keeps them forever.
	Retention time.Duration
	// Segment is how often a segment is rolled; Kafka deletes (and
	// compacts) only closed segments, so it is capped at Retention.
	// Default: Retention/4, or Kafka's default when records are kept
	// forever or compacted.
	Segment time.Duration
	// Compact makes the topic compacted instead of time-retained.
	Compact bool
	// ReplicationFactor and MinInsyncReplicas override the Admin's
	// (Config.ReplicationFactor, Config.MinInsyncReplicas) for this topic;
	// 0 takes the Admin's.
	ReplicationFactor int
	MinInsyncReplicas int
}

// config is the CreateTopics entry for s with rf replicas, of which minISR
// must hold a record before an acks=all write of it succeeds.
func (s TopicSpec) config(rf, minISR int) kafka.TopicConfig {
	parts := s.Partitions
	if parts <= 0 {
		parts = 1
	}
	var entries []kafka.ConfigEntry
	add := func(k, v string) { entries = append(entries, kafka.ConfigEntry{ConfigName: k, ConfigValue: v}) }
	add("min.insync.replicas", strconv.Itoa(minISR))
	switch {
	case s.Compact:
		add("cleanup.policy", "compact")
		if s.Segment > 0 { // only closed segments are compacted
			add("segment.ms", strconv.FormatInt(s.Segment.Milliseconds(), 10))
		}
	case s.Retention > 0:
		add("cleanup.policy", "delete")
		add("retention.ms", strconv.FormatInt(s.Retention.Milliseconds(), 10))
		seg := s.Segment
		if seg <= 0 || seg > s.Retention {
			seg = s.Retention / 4
		}
		add("segment.ms", strconv.FormatInt(max(seg.Milliseconds(), 1), 10))
	default:
		add("cleanup.policy", "delete")
		add("retention.ms", "-1")
	}
	return kafka.TopicConfig{Topic: s.Name, NumPartitions: parts, ReplicationFactor: rf, ConfigEntries: entries}
}

// Replication defaults: what "auto" (0) resolves to, capped by the brokers
// in the cluster.
const (
	DefaultReplicationFactor = 3
	DefaultMinInsyncReplicas = 2
)

// replication resolves a replication factor and min.insync.replicas, 0
// meaning auto: rf = min(3, brokers), minISR = min(2, rf). brokers is the
// number of brokers the cluster reports now (only needed for an auto rf).
func replication(rf, minISR, brokers int) (int, int, error) {
	if rf <= 0 {
		rf = min(DefaultReplicationFactor, max(brokers, 1))
	}
	if minISR <= 0 {
		minISR = min(DefaultMinInsyncReplicas, rf)
	}
	if minISR > rf {
		return 0, 0, fmt.Errorf("min.insync.replicas %d exceeds the replication factor %d: every acks=all write would fail", minISR, rf)
	}
	return rf, minISR, nil
}

// Admin runs administrative requests against the cluster.
type Admin struct {
	cfg       Config
	client    *kafka.Client
	transport *kafka.Transport
}

// NewAdmin returns an Admin.
func NewAdmin(cfg Config) (*Admin, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	t := &kafka.Transport{DialTimeout: cfg.DialTimeout, ClientID: cfg.ClientID}
	return &Admin{cfg: cfg, transport: t, client: &kafka.Client{
		Addr:      kafka.TCP(cfg.Brokers...),
		Timeout:   10 * time.Second,
		Transport: t,
	}}, nil
}

// Close closes the admin's connections.
func (a *Admin) Close() { a.transport.CloseIdleConnections() }

// Ping dials each broker in turn and succeeds when one answers an
// ApiVersions request. It never uses cached state.
func (a *Admin) Ping(ctx context.Context) error {
	var errs []error
	for _, addr := range a.cfg.Brokers {
		dctx, cancel := context.WithTimeout(ctx, a.cfg.DialTimeout)
		conn, err := (&kafka.Dialer{Timeout: a.cfg.DialTimeout, ClientID: a.cfg.ClientID}).DialContext(dctx, "tcp", addr)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("broker %s: %w", addr, err))
			continue
		}
		deadline := time.Now().Add(a.cfg.DialTimeout)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		_ = conn.SetDeadline(deadline)
		_, err = conn.ApiVersions()
		_ = conn.Close()
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("broker %s: %w", addr, err))
	}
	return errors.Join(errs...)
}

// EnsureTopics creates the topics that do not exist yet, with the
// replication of their spec or else the Admin's (Config.ReplicationFactor,
// Config.MinInsyncReplicas; auto counts the brokers the cluster reports
// now). Existing topics are left as they are, their replication included.
func (a *Admin) EnsureTopics(ctx context.Context, specs ...TopicSpec) error {
	if len(specs) == 0 {
		return nil
	}
	brokers := 0
	for _, s := range specs {
		if cmp.Or(s.ReplicationFactor, a.cfg.ReplicationFactor) <= 0 {
			n, err := a.brokerCount(ctx, s.Name)
			if err != nil {
				return err
			}
			brokers = n
			break
		}
	}
	req := &kafka.CreateTopicsRequest{}
	for _, s := range specs {
		rf, minISR, err := replication(cmp.Or(s.ReplicationFactor, a.cfg.ReplicationFactor),
			cmp.Or(s.MinInsyncReplicas, a.cfg.MinInsyncReplicas), brokers)
		if err != nil {
			return fmt.Errorf("create topic %s: %w", s.Name, err)
		}
		req.Topics = append(req.Topics, s.config(rf, minISR))
	}
	res, err := a.client.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	for name, terr := range res.Errors {
		switch {
		case terr == nil || errors.Is(terr, kafka.TopicAlreadyExists):
		case errors.Is(terr, kafka.InvalidReplicationFactor):
			return fmt.Errorf("create topic %s: %w (KAFKA_REPLICATION_FACTOR is more than the brokers that are up?)", name, terr)
		default:
			return fmt.Errorf("create topic %s: %w", name, terr)
		}
	}
	return nil
}

// brokerCount returns how many brokers the cluster reports (the live,
// registered ones), asking about topic to keep the answer small.
func (a *Admin) brokerCount(ctx context.Context, topic string) (int, error) {
	res, err := a.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, fmt.Errorf("metadata: %w", err)
	}
	if len(res.Brokers) == 0 {
		return 0, errors.New("metadata: the cluster reports no brokers")
	}
	return len(res.Brokers), nil
}

// DeleteTopics deletes the named topics; a topic that does not exist is
// not an error.
func (a *Admin) DeleteTopics(ctx context.Context, names ...string) error {
	res, err := a.client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: names})
	if err != nil {
		return fmt.Errorf("delete topics: %w", err)
	}
	for name, terr := range res.Errors {
		if terr != nil && !errors.Is(terr, kafka.UnknownTopicOrPartition) {
			return fmt.Errorf("delete topic %s: %w", name, terr)
		}
	}
	return nil
}

// TopicExists reports whether the topic exists.
func (a *Admin) TopicExists(ctx context.Context, name string) (bool, error) {
	res, err := a.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{name}})
	if err != nil {
		return false, fmt.Errorf("metadata %s: %w", name, err)
	}
	for _, t := range res.Topics {
		if t.Name == name {
			return t.Error == nil, nil
		}
	}
	return false, nil
}

// Partition is where one partition of a topic lives, by broker id.
type Partition struct {
	ID       int
	Leader   int // 0 while it has none (broker ids start at 1 here)
	Replicas []int
	ISR      []int // the replicas in sync with the leader
}

// Partitions describes the partitions of topic as the cluster reports
// them now.
func (a *Admin) Partitions(ctx context.Context, topic string) ([]Partition, error) {
	res, err := a.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("metadata %s: %w", topic, err)
	}
	ids := func(bs []kafka.Broker) []int {
		out := make([]int, len(bs))
		for i, b := range bs {
			out[i] = b.ID
		}
		return out
	}
	for _, t := range res.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error != nil {
			return nil, fmt.Errorf("metadata %s: %w", topic, t.Error)
		}
		out := make([]Partition, len(t.Partitions))
		for i, p := range t.Partitions {
			out[i] = Partition{ID: p.ID, Leader: p.Leader.ID, Replicas: ids(p.Replicas), ISR: ids(p.Isr)}
		}
		return out, nil
	}
	return nil, fmt.Errorf("metadata %s: %w", topic, kafka.UnknownTopicOrPartition)
}

// EndOffsets returns, for each partition of topic, the offset the next
// record will get (the high watermark).
func (a *Admin) EndOffsets(ctx context.Context, topic string) (map[int]int64, error) {
	return a.offsets(ctx, topic, kafka.LastOffset)
}

// FirstOffsets returns, for each partition of topic, the offset of its
// oldest retained record.
func (a *Admin) FirstOffsets(ctx context.Context, topic string) (map[int]int64, error) {
	return a.offsets(ctx, topic, kafka.FirstOffset)
}

// offsets lists each partition's first or last offset (which is
// kafka.FirstOffset or kafka.LastOffset), retrying the transient errors of a
// topic created moments ago (no leader yet) for up to about 5s or until ctx
// ends.
func (a *Admin) offsets(ctx context.Context, topic string, which int64) (map[int]int64, error) {
	for attempt := 1; ; attempt++ {
		out, err := a.offsetsOnce(ctx, topic, which)
		var kerr kafka.Error
		if err == nil || attempt == 100 || !errors.As(err, &kerr) || !(kerr.Temporary() || kerr == kafka.UnknownTopicOrPartition) {
			return out, err
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (%w)", err, ctx.Err())
		case <-t.C:
		}
	}
}

func (a *Admin) offsetsOnce(ctx context.Context, topic string, which int64) (map[int]int64, error) {
	meta, err := a.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("metadata %s: %w", topic, err)
	}
	var reqs []kafka.OffsetRequest
	for _, t := range meta.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error != nil {
			return nil, fmt.Errorf("metadata %s: %w", topic, t.Error)
		}
		for _, p := range t.Partitions {
			reqs = append(reqs, kafka.OffsetRequest{Partition: p.ID, Timestamp: which})
		}
	}
	if len(reqs) == 0 {
		return nil, fmt.Errorf("offsets %s: %w", topic, kafka.UnknownTopicOrPartition)
	}
	res, err := a.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("offsets %s: %w", topic, err)
	}
	out := make(map[int]int64, len(reqs))
	for _, p := range res.Topics[topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("offsets %s/%d: %w", topic, p.Partition, p.Error)
		}
		if which == kafka.FirstOffset {
			out[p.Partition] = p.FirstOffset
		} else {
			out[p.Partition] = p.LastOffset
		}
	}
	return out, nil
}
