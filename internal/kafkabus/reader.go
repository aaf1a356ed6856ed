package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// ReaderConfig configures a Reader.
type ReaderConfig struct {
	// Topic is the topic read. Required.
	Topic string
	// IdlePerPartition is how many idle connections to a partition's
	// leader are kept for reuse. Default 2.
	IdlePerPartition int
	// FetchBytes is the most bytes one fetch asks for. Default 1 MiB.
	FetchBytes int
	// MaxGap is the most records a read walks past between two offsets it
	// wants before it seeks instead. Default 512.
	MaxGap int64
}

// Reader reads the records at given offsets of one topic, outside any
// consumer group: the random access that history older than the Redis
// window needs. It keeps a few connections per partition leader. Safe for
// concurrent use.
type Reader struct {
	cfg    Config
	rc     ReaderConfig
	dialer *kafka.Dialer

	mu   sync.Mutex
	idle map[int][]*kafka.Conn
}

// NewReader returns a Reader of rc.Topic.
func NewReader(cfg Config, rc ReaderConfig) (*Reader, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if rc.Topic == "" {
		return nil, errors.New("kafka reader: a topic is required")
	}
	if rc.IdlePerPartition <= 0 {
		rc.IdlePerPartition = 2
	}
	if rc.FetchBytes <= 0 {
		rc.FetchBytes = 1 << 20
	}
	if rc.MaxGap <= 0 {
		rc.MaxGap = 512
	}
	return &Reader{
		cfg: cfg, rc: rc, idle: make(map[int][]*kafka.Conn),
		dialer: &kafka.Dialer{Timeout: cfg.DialTimeout, ClientID: cfg.ClientID},
	}, nil
}

// ErrOutOfRange means an offset is no longer (or not yet) in the log.
var ErrOutOfRange = errors.New("offset out of range")

// ReadAt returns the records of partition at offsets (any order, no
// duplicates needed), in offset order. An offset with no record (compacted
// away) is skipped. Offsets close together are read in one fetch; a gap
// wider than MaxGap is crossed by seeking, so the cost is bounded by the
// number of offsets, not by the distance between them. An offset below
// the partition's first retained offset fails with ErrOutOfRange.
func (r *Reader) ReadAt(ctx context.Context, partition int, offsets []int64) ([]Record, error) {
	if len(offsets) == 0 {
		return nil, nil
	}
	want := slices.Clone(offsets)
	slices.Sort(want)
	want = slices.Compact(want)
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		var conn *kafka.Conn
		if conn, err = r.conn(ctx, partition); err != nil {
			return nil, err
		}
		var out []Record
		if out, err = r.readAt(ctx, conn, want); err == nil {
			r.release(partition, conn)
			return out, nil
		}
		conn.Close()
		if errors.Is(err, kafka.OffsetOutOfRange) {
			return nil, fmt.Errorf("read %s/%d: %w", r.rc.Topic, partition, ErrOutOfRange)
		}
		// A pooled connection may be stale (the leader moved, the broker
		// restarted): drop the idle ones and try once more on a new one.
		r.dropIdle(partition)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("read %s/%d: %w", r.rc.Topic, partition, err)
}

// dropIdle closes the idle connections to a partition.
func (r *Reader) dropIdle(partition int) {
	r.mu.Lock()
	idle := r.idle[partition]
	delete(r.idle, partition)
	r.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
}

func (r *Reader) readAt(ctx context.Context, conn *kafka.Conn, want []int64) ([]Record, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(10 * time.Second)
	}
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, err
	}
	out := make([]Record, 0, len(want))
	for i := 0; i < len(want); {
		if _, err := conn.Seek(want[i], kafka.SeekAbsolute|kafka.SeekDontCheck); err != nil {
			return nil, err
		}
		batch := conn.ReadBatchWith(kafka.ReadBatchConfig{MinBytes: 1, MaxBytes: r.rc.FetchBytes, MaxWait: 100 * time.Millisecond})
		progressed := false
		for i < len(want) {
			m, err := batch.ReadMessage()
			if err != nil {
				break // the end of this fetch (or its error, from Close)
			}
			progressed = true
			for i < len(want) && want[i] < m.Offset {
				i++ // compacted away, or never a record
			}
			if i == len(want) {
				break
			}
			if want[i] == m.Offset {
				out = append(out, record(m))
				i++
			}
			if i < len(want) && want[i]-m.Offset > r.rc.MaxGap {
				break // seek rather than walk
			}
		}
		if err := batch.Close(); err != nil && !errors.Is(err, kafka.RequestTimedOut) {
			return nil, err
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !progressed {
			// Nothing at or after want[i] in this fetch: past the end.
			return nil, fmt.Errorf("offset %d: %w", want[i], kafka.OffsetOutOfRange)
		}
	}
	return out, nil
}

// FirstOffset returns the partition's first retained offset.
func (r *Reader) FirstOffset(ctx context.Context, partition int) (int64, error) {
	conn, err := r.conn(ctx, partition)
	if err != nil {
		return 0, err
	}
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	} else {
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	}
	first, err := conn.ReadFirstOffset()
	if err != nil {
		conn.Close()
		return 0, fmt.Errorf("first offset %s/%d: %w", r.rc.Topic, partition, err)
	}
	r.release(partition, conn)
	return first, nil
}

// conn takes an idle connection to the partition's leader or dials one.
func (r *Reader) conn(ctx context.Context, partition int) (*kafka.Conn, error) {
	r.mu.Lock()
	if n := len(r.idle[partition]); n > 0 {
		c := r.idle[partition][n-1]
		r.idle[partition] = r.idle[partition][:n-1]
		r.mu.Unlock()
		return c, nil
	}
	r.mu.Unlock()
	var errs []error
	for _, addr := range r.cfg.Brokers {
		c, err := r.dialer.DialLeader(ctx, "tcp", addr, r.rc.Topic, partition)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("dial leader of %s/%d: %w", r.rc.Topic, partition, errors.Join(errs...))
}

// release keeps conn for reuse, or closes it when enough are idle.
func (r *Reader) release(partition int, c *kafka.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.idle == nil || len(r.idle[partition]) >= r.rc.IdlePerPartition {
		c.Close()
		return
	}
	r.idle[partition] = append(r.idle[partition], c)
}

// Close closes the idle connections; connections in use close when their
// read ends.
func (r *Reader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, cs := range r.idle {
		for _, c := range cs {
			c.Close()
		}
	}
	r.idle = nil
	return nil
}
