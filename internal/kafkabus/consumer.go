package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
)

// ConsumerConfig configures a group consumer of one topic.
type ConsumerConfig struct {
	Topic string // this topic, or
	// Topics are several topics consumed by one member of the group.
	Topics  []string
	GroupID string // required
	// CommitInterval batches offset commits; they run in the background
	// and on Close. Default 500ms.
	CommitInterval time.Duration
	// SessionTimeout is the group session timeout: after a broker restart
	// the consumer rejoins as a new member and the broker may wait this long
	// for the old one. Default 6s (brokers' default minimum).
	SessionTimeout time.Duration
	// MaxWait bounds a fetch's long poll. Default 500ms.
	MaxWait time.Duration
	// MinBytes is how much a fetch waits for (at most MaxWait) before the
	// broker answers it. Default 1: answered as soon as a record arrives.
	MinBytes int
}

// Consumer reads one topic as a member of a consumer group. A new group
// starts at the earliest offset; a returning one resumes from its
// committed offsets.
type Consumer struct {
	r     *kafka.Reader
	lag   atomic.Int64
	lagAt time.Time // owned by Run
}

// NewConsumer returns a consumer; it joins the group on first fetch.
func NewConsumer(cfg Config, cc ConsumerConfig) (*Consumer, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if (cc.Topic == "") == (len(cc.Topics) == 0) || cc.GroupID == "" {
		return nil, errors.New("kafka consumer: a group id and either a topic or topics are required")
	}
	if cc.CommitInterval <= 0 {
		cc.CommitInterval = 500 * time.Millisecond
	}
	if cc.SessionTimeout <= 0 {
		cc.SessionTimeout = 6 * time.Second
	}
	if cc.MaxWait <= 0 {
		cc.MaxWait = 500 * time.Millisecond
	}
	cc.MinBytes = max(cc.MinBytes, 1)
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:           cfg.Brokers,
		GroupID:           cc.GroupID,
		Topic:             cc.Topic,
		GroupTopics:       cc.Topics,
		Dialer:            &kafka.Dialer{Timeout: cfg.DialTimeout, ClientID: cfg.ClientID},
		MinBytes:          cc.MinBytes,
		MaxBytes:          10 << 20,
		MaxWait:           cc.MaxWait,
		CommitInterval:    cc.CommitInterval,
		SessionTimeout:    cc.SessionTimeout,
		HeartbeatInterval: cc.SessionTimeout / 5,
		RebalanceTimeout:  cc.SessionTimeout,
		StartOffset:       kafka.FirstOffset,
		JoinGroupBackoff:  500 * time.Millisecond, // kafka-go's 5s would add to every rejoin
		ReadBackoffMin:    50 * time.Millisecond,
		ReadBackoffMax:    time.Second,
	})
	return &Consumer{r: r}, nil
}

// Run fetches records and passes each to handle, in order, until ctx is
// done. A record is committed (in the background, batched) once handle
// returns nil. When handle fails, Run returns its error without committing
// that record; the consumer must then be closed, and a new one resumes from
// the committed offset. Run returns nil when ctx ends.
func (c *Consumer) Run(ctx context.Context, handle func(context.Context, Record) error) error {
	return c.RunBatch(ctx, 1, 0, func(ctx context.Context, recs []Record) error { return handle(ctx, recs[0]) })
}

// RunBatch is Run for a handler that takes records in batches: it blocks
// for one record, then takes the records that arrive within linger of it,
// up to max, and passes them to handle in fetch order (the order of each
// partition). The batch is committed once handle returns nil; when handle
// fails, nothing of the batch is committed (as Run). A batch grows with
// the load: a lone record waits at most linger.
func (c *Consumer) RunBatch(ctx context.Context, max int, linger time.Duration, handle func(context.Context, []Record) error) error {
	msgs := make([]kafka.Message, 0, max)
	recs := make([]Record, 0, max)
	for {
		m, err := c.r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("consume: %w", err)
		}
		msgs = append(msgs[:0], m)
		if max > 1 {
			lctx, cancel := context.WithTimeout(ctx, linger)
			for len(msgs) < max {
				m, err := c.r.FetchMessage(lctx)
				if err != nil {
					break // linger over (or ctx done: the batch is still handled)
				}
				msgs = append(msgs, m)
			}
			cancel()
		}
		c.sampleLag()
		recs = recs[:0]
		for _, m := range msgs {
			recs = append(recs, record(m))
		}
		if err := handle(ctx, recs); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			last := msgs[len(msgs)-1]
			return fmt.Errorf("handle %d record(s) ending at %s/%d@%d: %w", len(msgs), last.Topic, last.Partition, last.Offset, err)
		}
		if err := c.r.CommitMessages(ctx, msgs...); err != nil && ctx.Err() == nil {
			return fmt.Errorf("commit: %w", err)
		}
	}
}

func record(m kafka.Message) Record {
	return Record{Topic: m.Topic, Key: m.Key, Value: m.Value, Partition: m.Partition, Offset: m.Offset, Time: m.Time}
}

func (c *Consumer) sampleLag() {
	if now := time.Now(); now.Sub(c.lagAt) > time.Second {
		c.lagAt = now // Stats is too costly to call per record
		c.lag.Store(c.r.Stats().Lag)
	}
}

// Serve runs Run until ctx is done, restarting it after an error with a
// capped backoff; onError (optional) hears of each error first.
func (c *Consumer) Serve(ctx context.Context, handle func(context.Context, Record) error, onError func(error)) {
	c.serve(ctx, func() error { return c.Run(ctx, handle) }, onError)
}

// ServeBatch is Serve for RunBatch.
func (c *Consumer) ServeBatch(ctx context.Context, max int, linger time.Duration, handle func(context.Context, []Record) error, onError func(error)) {
	c.serve(ctx, func() error { return c.RunBatch(ctx, max, linger, handle) }, onError)
}

func (c *Consumer) serve(ctx context.Context, run func() error, onError func(error)) {
	backoff := 100 * time.Millisecond
	for {
		err := run()
		if ctx.Err() != nil {
			return
		}
		if onError != nil {
			onError(err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// Lag returns the consumer's lag in records, sampled at most once a second.
// Safe to call from any goroutine.
func (c *Consumer) Lag() int64 { return c.lag.Load() }

// Close commits pending offsets, leaves the group and closes the consumer.
func (c *Consumer) Close() error { return c.r.Close() }
