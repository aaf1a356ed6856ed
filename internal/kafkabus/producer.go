// Package kafkabus is Switchboard's Kafka layer: topic creation, the
// acknowledged producer and group consumers. It is the only package that
// imports kafka-go.
package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/switchboard-chat/switchboard/internal/config/setting"
)

// Config holds the broker connection settings shared by producers,
// consumers and admin calls. Zero fields take the documented defaults.
type Config struct {
	// Brokers are host:port bootstrap addresses. Required.
	Brokers []string
	// ClientID names this process to the brokers. Default "switchboard".
	ClientID string `default:"switchboard"`
	// DialTimeout bounds a connection attempt. Default 5s.
	DialTimeout time.Duration `default:"5s"`
	// BatchTimeout is how long the producer waits to fill a batch before
	// sending it. kafka-go's own default (1s) would add a second to every
	// send. Default 2ms.
	BatchTimeout time.Duration `key:"kafka.batch_timeout" default:"2ms"`
	// BatchSize is the most records in one batch per partition. Default 500.
	BatchSize int `default:"500"`
	// MetadataTTL bounds how stale the producer's view of the topics may
	// be; a new gateway's topic becomes writable within it. Default 1s.
	MetadataTTL time.Duration `default:"1s"`
	// ReplicationFactor is how many brokers hold each partition of the
	// topics an Admin creates. 0 (auto): min(3, the brokers the cluster
	// reports when the topic is created), so 1 on a single broker.
	ReplicationFactor int `key:"kafka.replication_factor" default:"auto"`
	// MinInsyncReplicas is the created topics' min.insync.replicas: the
	// replicas that must hold a record before an acks=all write succeeds;
	// with fewer in sync, writes fail rather than succeed under-replicated.
	// 0 (auto): min(2, the replication factor).
	MinInsyncReplicas int `key:"kafka.min_insync_replicas" default:"auto"`
}

func (c *Config) setDefaults() error {
	if len(c.Brokers) == 0 {
		return errors.New("kafka: no brokers configured")
	}
	setting.Fill(c)
	return nil
}

// Record is one Kafka record to produce, or one consumed.
type Record struct {
	Topic     string
	Key       []byte
	Value     []byte
	Partition int
	Offset    int64
	Time      time.Time
}

// Producer writes records and waits until all in-sync replicas have them
// (acks=all). It is safe for concurrent use; concurrent calls are batched
// together per partition.
type Producer struct {
	w         *kafka.Writer
	transport *kafka.Transport
}

// NewProducer returns a producer. It does not connect until first used.
func NewProducer(cfg Config) (*Producer, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	w := &kafka.Writer{
		Addr:                   kafka.TCP(cfg.Brokers...),
		Balancer:               &kafka.Murmur2Balancer{}, // same partitions as the Java client
		RequiredAcks:           kafka.RequireAll,
		BatchTimeout:           cfg.BatchTimeout,
		BatchSize:              cfg.BatchSize,
		MaxAttempts:            3,
		WriteBackoffMin:        50 * time.Millisecond,
		WriteBackoffMax:        500 * time.Millisecond,
		AllowAutoTopicCreation: false,
	}
	t := &kafka.Transport{
		Dial:        (&net.Dialer{Timeout: cfg.DialTimeout}).DialContext,
		DialTimeout: cfg.DialTimeout,
		MetadataTTL: cfg.MetadataTTL,
		ClientID:    cfg.ClientID,
	}
	w.Transport = t
	return &Producer{w: w, transport: t}, nil
}

// Produce writes recs in one call and returns once every one is
// acknowledged by all in-sync replicas, or with an error once ctx is done.
// A record for a topic the producer does not know yet (created moments
// ago elsewhere) is retried until its metadata arrives or ctx ends. On
// error some records may still have been written.
func (p *Producer) Produce(ctx context.Context, recs []Record) error {
	msgs := make([]kafka.Message, len(recs))
	for i, r := range recs {
		msgs[i] = kafka.Message{Topic: r.Topic, Key: r.Key, Value: r.Value}
	}
	for {
		err := p.w.WriteMessages(ctx, msgs...)
		if err == nil {
			return nil
		}
		if !errors.Is(err, kafka.UnknownTopicOrPartition) {
			return fmt.Errorf("produce: %w", err)
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("produce: %w (%w)", err, ctx.Err())
		case <-t.C:
		}
	}
}

// Close flushes pending records and closes the producer and its
// connections.
func (p *Producer) Close() error {
	err := p.w.Close()
	p.transport.CloseIdleConnections()
	return err
}
