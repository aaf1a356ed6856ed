package kafkabus

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// Replay reads partition of topic from offset from up to (not including)
// offset to, outside any consumer group, passing each record to handle in
// order. It stops at the first error of handle or of the read.
func Replay(ctx context.Context, cfg Config, topic string, partition int, from, to int64, handle func(context.Context, Record) error) error {
	if err := cfg.setDefaults(); err != nil {
		return err
	}
	if from >= to {
		return nil
	}
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:   cfg.Brokers,
		Topic:     topic,
		Partition: partition,
		Dialer:    &kafka.Dialer{Timeout: cfg.DialTimeout, ClientID: cfg.ClientID},
		MinBytes:  1,
		MaxBytes:  10 << 20,
		// Close waits for the fetch in flight; a short long-poll keeps the
		// end of each partition from costing kafka-go's default 10s.
		MaxWait: 250 * time.Millisecond,
	})
	defer r.Close()
	if err := r.SetOffset(from); err != nil {
		return fmt.Errorf("replay %s/%d: %w", topic, partition, err)
	}
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			return fmt.Errorf("replay %s/%d: %w", topic, partition, err)
		}
		if err := handle(ctx, record(m)); err != nil {
			return err
		}
		if m.Offset+1 >= to {
			return nil
		}
	}
}
