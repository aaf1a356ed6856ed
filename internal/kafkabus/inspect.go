package kafkabus

import (
	"context"
	"fmt"
	"sort"

	"github.com/segmentio/kafka-go"
)

// GroupOffsets returns the offsets consumer group has committed on each
// partition of topic; a partition it never committed is absent.
func (a *Admin) GroupOffsets(ctx context.Context, group, topic string, partitions []int) (map[int]int64, error) {
	res, err := a.client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: partitions}})
	if err != nil {
		return nil, fmt.Errorf("offset fetch %s %s: %w", group, topic, err)
	}
	if res.Error != nil {
		return nil, fmt.Errorf("offset fetch %s %s: %w", group, topic, res.Error)
	}
	out := make(map[int]int64, len(partitions))
	for _, p := range res.Topics[topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("offset fetch %s %s/%d: %w", group, topic, p.Partition, p.Error)
		}
		if p.CommittedOffset >= 0 {
			out[p.Partition] = p.CommittedOffset
		}
	}
	return out, nil
}

// Tail returns up to n of the newest records of each partition of topic,
// newest first across partitions (by record time).
func (a *Admin) Tail(ctx context.Context, topic string, n int) ([]Record, error) {
	first, err := a.FirstOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	end, err := a.EndOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	var out []Record
	for p, e := range end {
		from := max(first[p], e-int64(n))
		err := Scan(ctx, a.cfg, topic, p, from, e, func(r Record) error {
			out = append(out, r)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Time.After(out[j].Time) })
	return out[:min(n, len(out))], nil
}
