package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/segmentio/kafka-go"
)

// Scan reads partition of topic from offset from up to (not including)
// offset to, outside any consumer group, in large fetches made ahead of
// handle by a goroutine of its own: the bulk reader of a rebuild or a
// restore, where Replay's fetches would cost more than the work done per
// record. handle gets each record in order; Scan stops at its first error.
// The record's Key and Value stay valid after handle returns.
func Scan(ctx context.Context, cfg Config, topic string, partition int, from, to int64, handle func(Record) error) error {
	if err := cfg.setDefaults(); err != nil {
		return err
	}
	if from >= to {
		return nil
	}
	dialer := &kafka.Dialer{Timeout: cfg.DialTimeout, ClientID: cfg.ClientID}
	conn, err := dialLeader(ctx, dialer, cfg.Brokers, topic, partition)
	if err != nil {
		return fmt.Errorf("scan %s/%d: %w", topic, partition, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan []Record, 4)
	var readErr error
	go func() {
		defer close(batches)
		defer conn.Close()
		readErr = fetchBatches(ctx, conn, topic, partition, from, to, batches)
	}()
	for recs := range batches {
		for _, rec := range recs {
			if err := handle(rec); err != nil {
				cancel()
				for range batches { // let the reader exit
				}
				return err
			}
		}
	}
	if readErr != nil {
		return fmt.Errorf("scan %s/%d: %w", topic, partition, readErr)
	}
	return nil
}

// fetchBatches fetches [from, to) on conn and sends the records in
// batches, until ctx ends.
func fetchBatches(ctx context.Context, conn *kafka.Conn, topic string, partition int, from, to int64, out chan<- []Record) error {
	if _, err := conn.Seek(from, kafka.SeekAbsolute); err != nil {
		return err
	}
	empty := 0
	for off := from; off < to; {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		batch := conn.ReadBatchWith(kafka.ReadBatchConfig{MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 250 * time.Millisecond})
		recs := make([]Record, 0, 4096)
		for {
			m, err := batch.ReadMessage()
			if err != nil {
				break
			}
			if m.Offset >= to {
				break
			}
			recs = append(recs, Record{Topic: topic, Key: m.Key, Value: m.Value, Partition: partition, Offset: m.Offset, Time: m.Time})
			off = m.Offset + 1
		}
		hw := batch.HighWaterMark()
		if err := batch.Close(); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if len(recs) > 0 {
			select {
			case out <- recs:
			case <-ctx.Done():
				return ctx.Err()
			}
			empty = 0
		} else if hw <= off {
			return nil // the partition ends before to (compacted, or truncated)
		} else if empty++; empty == 10 {
			return fmt.Errorf("no records at offset %d below the high watermark %d", off, hw)
		}
	}
	return nil
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

// dialLeader connects to the partition's leader, asking each broker in
// turn where it is: any one that is up will do.
func dialLeader(ctx context.Context, d *kafka.Dialer, brokers []string, topic string, partition int) (*kafka.Conn, error) {
	var errs []error
	for _, addr := range brokers {
		c, err := d.DialLeader(ctx, "tcp", addr, topic, partition)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}
