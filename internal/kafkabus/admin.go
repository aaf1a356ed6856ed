package kafkabus

import (
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
}

func (s TopicSpec) config() kafka.TopicConfig {
	parts := s.Partitions
	if parts <= 0 {
		parts = 1
	}
	var entries []kafka.ConfigEntry
	add := func(k, v string) { entries = append(entries, kafka.ConfigEntry{ConfigName: k, ConfigValue: v}) }
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
	return kafka.TopicConfig{Topic: s.Name, NumPartitions: parts, ReplicationFactor: 1, ConfigEntries: entries}
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

// EnsureTopics creates the topics that do not exist yet. Existing topics
// are left as they are.
func (a *Admin) EnsureTopics(ctx context.Context, specs ...TopicSpec) error {
	req := &kafka.CreateTopicsRequest{}
	for _, s := range specs {
		req.Topics = append(req.Topics, s.config())
	}
	res, err := a.client.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	for name, terr := range res.Errors {
		if terr != nil && !errors.Is(terr, kafka.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", name, terr)
		}
	}
	return nil
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
