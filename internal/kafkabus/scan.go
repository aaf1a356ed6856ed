package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// Scan reads partition of topic from offset from up to (not including)
// offset to, outside any consumer group, in large fetches read ahead of
// handle: it is the bulk reader of a rebuild or a restore, where
// Replay's modest fetches would cost more than the work done per record.
// handle gets each record in order; Scan stops at its first error. The
// record's Key and Value stay valid after handle returns.
func Scan(ctx context.Context, cfg Config, topic string, partition int, from, to int64, handle func(Record) error) error {
	if err := cfg.setDefaults(); err != nil {
		return err
	}
	if from >= to {
		return nil
	}
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:       cfg.Brokers,
		Topic:         topic,
		Partition:     partition,
		Dialer:        &kafka.Dialer{Timeout: cfg.DialTimeout, ClientID: cfg.ClientID},
		MinBytes:      1,
		MaxBytes:      32 << 20,
		QueueCapacity: 8192,
		MaxWait:       250 * time.Millisecond,
	})
	defer r.Close()
	if err := r.SetOffset(from); err != nil {
		return fmt.Errorf("scan %s/%d: %w", topic, partition, err)
	}
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			return fmt.Errorf("scan %s/%d: %w", topic, partition, err)
		}
		if m.Offset >= to {
			return nil // a compacted topic may have no record at to-1
		}
		if err := handle(Record{Topic: m.Topic, Key: m.Key, Value: m.Value, Partition: m.Partition, Offset: m.Offset, Time: m.Time}); err != nil {
			return err
		}
		if m.Offset+1 >= to {
			return nil
		}
	}
}

// OffsetsAt returns, for each partition of topic, the offset of its first
// record written at or after t, or its end offset when there is none.
func (a *Admin) OffsetsAt(ctx context.Context, topic string, t time.Time) (map[int]int64, error) {
	end, err := a.EndOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	reqs := make([]kafka.OffsetRequest, 0, len(end))
	for p := range end {
		reqs = append(reqs, kafka.OffsetRequest{Partition: p, Timestamp: t.UnixMilli()})
	}
	res, err := a.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("offsets %s at %v: %w", topic, t, err)
	}
	out := make(map[int]int64, len(end))
	for p, e := range end {
		out[p] = e
	}
	for _, p := range res.Topics[topic] {
		if p.Error != nil && !errors.Is(p.Error, kafka.OffsetNotAvailable) {
			return nil, fmt.Errorf("offsets %s/%d at %v: %w", topic, p.Partition, t, p.Error)
		}
		for off := range p.Offsets { // one entry when a record was found
			if off >= 0 && off < out[p.Partition] {
				out[p.Partition] = off
			}
		}
	}
	return out, nil
}
