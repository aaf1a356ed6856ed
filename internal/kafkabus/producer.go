// Package kafkabus is Switchboard's Kafka layer: topic creation, the
// acknowledged producer and group consumers. It is the only package that
// imports kafka-go.
package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/protocol/produce"

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
	// BatchSize is the most records of one partition in one produce
	// request; more go in the next request. Default 10000.
	BatchSize int `default:"10000"`
	// BatchBytes bounds the records of one partition in one produce request
	// (below the broker's message.max.bytes, 1 MiB by default). Default
	// 1000000.
	BatchBytes int `default:"1000000"`
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
// (acks=all). It is safe for concurrent use.
//
// One Produce call is one request per partition leader, carrying every
// partition the call writes to: a group commit of many sends to several
// chat-log partitions and several gateways' topics costs the broker one
// request, not one per partition, and waits for no batching timer (the
// caller has batched already). Records of one partition in one call stay
// in order; so do the calls of one caller that waits for each.
type Producer struct {
	client    *kafka.Client
	transport *kafka.Transport
	balancer  kafka.Murmur2Balancer // same partitions as the Java client
	maxBytes  int                   // of one partition's records in one request
	maxCount  int

	mu       sync.Mutex
	layout   map[string]topicLayout // by topic, read at layoutAt
	layoutAt time.Time
	lines    map[int]*leaderLine // by leader id
}

// NewProducer returns a producer. It does not connect until first used.
func NewProducer(cfg Config) (*Producer, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	t := &kafka.Transport{
		Dial:        (&net.Dialer{Timeout: cfg.DialTimeout}).DialContext,
		DialTimeout: cfg.DialTimeout,
		MetadataTTL: cfg.MetadataTTL,
		ClientID:    cfg.ClientID,
	}
	return &Producer{
		client:    &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: t},
		transport: t,
		maxBytes:  cfg.BatchBytes,
		maxCount:  cfg.BatchSize,
	}, nil
}

// produceRetryMin and produceRetryMax bound the wait between attempts of
// a failed write; defaultProduceTimeout bounds a call whose context has
// no deadline.
const (
	produceRetryMin       = 20 * time.Millisecond
	produceRetryMax       = 500 * time.Millisecond
	defaultProduceTimeout = 10 * time.Second
)

// Produce writes recs and returns once every one is acknowledged by all
// in-sync replicas, or with an error. A write that fails for a reason
// that can pass (no leader yet, a topic created moments ago elsewhere and
// not in the producer's metadata yet, a broker restarting, too few
// replicas in sync) is retried until ctx ends (10 s when ctx has no
// deadline); one the broker refuses for good (a record too large) fails at
// once. On error some records may still have been written.
func (p *Producer) Produce(ctx context.Context, recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultProduceTimeout)
		defer cancel()
	}
	pending := recs
	wait := produceRetryMin
	for {
		failed, err := p.attempt(ctx, pending)
		if err == nil {
			return nil
		}
		var perm *permanentError
		if errors.As(err, &perm) {
			return fmt.Errorf("produce: %w", perm.err)
		}
		pending = failed
		p.forgetLayouts()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("produce: %w (%w)", err, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, produceRetryMax)
	}
}

// permanentError is a refusal that no retry can change.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }

// partitionRecords are the records of one partition in one request.
type partitionRecords struct {
	topic     string
	partition int
	recs      []Record
}

// attempt writes recs once: each leader's line takes its share at once,
// and the answers are awaited together. It returns the records not known
// to be written, and why.
func (p *Producer) attempt(ctx context.Context, recs []Record) ([]Record, error) {
	byLeader, err := p.place(ctx, recs)
	if err != nil {
		return recs, err
	}
	calls := make([]*leaderCall, 0, len(byLeader))
	for leader, parts := range byLeader {
		c := &leaderCall{ctx: ctx, parts: parts, done: make(chan struct{})}
		p.line(leader).add(c)
		calls = append(calls, c)
	}
	var failed []Record
	var firstErr error
	for _, c := range calls {
		left, err := c.wait()
		if err == nil {
			continue
		}
		failed = append(failed, left...)
		if _, perm := err.(*permanentError); perm || firstErr == nil {
			firstErr = err
		}
	}
	return failed, firstErr
}

// leaderLine carries the writes to one leader: one request in flight at a
// time, and the writes that arrive meanwhile go together in the next one.
// An idle producer writes a call at once; a busy one writes, per round
// trip, everything that arrived during the last (no timer either way).
type leaderLine struct {
	write   func([]*leaderCall) // answers every call it is given
	mu      sync.Mutex
	busy    bool
	waiting []*leaderCall
}

// leaderCall is one Produce call's records for one leader.
type leaderCall struct {
	ctx   context.Context
	parts []*partitionRecords
	left  []Record // not known to be written
	err   error
	done  chan struct{}
}

func (p *Producer) line(leader int) *leaderLine {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.lines[leader]
	if l == nil {
		if p.lines == nil {
			p.lines = map[int]*leaderLine{}
		}
		l = &leaderLine{write: p.writeCalls}
		p.lines[leader] = l
	}
	return l
}

// wait returns the records of c not known to be written, and why, once
// its line answered it or its context ended.
func (c *leaderCall) wait() ([]Record, error) {
	select {
	case <-c.done:
		return c.left, c.err
	case <-c.ctx.Done():
		// The request that took them may still write them.
		var all []Record
		for _, pr := range c.parts {
			all = append(all, pr.recs...)
		}
		return all, c.ctx.Err()
	}
}

// add queues call, starting the line's writer if none runs.
func (l *leaderLine) add(call *leaderCall) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.waiting = append(l.waiting, call)
	if !l.busy {
		l.busy = true
		go l.drain()
	}
}

// drain writes the line's waiting calls, all of them in one write, until
// none is waiting.
func (l *leaderLine) drain() {
	for {
		l.mu.Lock()
		calls := l.waiting
		l.waiting = nil
		if len(calls) == 0 {
			l.busy = false
			l.mu.Unlock()
			return
		}
		l.mu.Unlock()
		l.write(calls)
	}
}

// writeCalls writes the records of calls in one series of requests,
// partition by partition in call order, and answers each call with what
// of its own records was not written.
func (p *Producer) writeCalls(calls []*leaderCall) {
	type span struct{ part, from, to int } // a call's records in merged
	var merged []*partitionRecords
	index := map[tpKey]int{}
	spans := make([][]span, len(calls))
	var deadline time.Time
	live := calls[:0:0]
	for _, c := range calls {
		if c.ctx.Err() != nil {
			continue // gone: its caller answered itself
		}
		live = append(live, c)
		if dl, ok := c.ctx.Deadline(); ok && dl.After(deadline) {
			deadline = dl
		}
	}
	for ci, c := range live {
		for _, pr := range c.parts {
			k := tpKey{pr.topic, pr.partition}
			mi, ok := index[k]
			if !ok {
				mi = len(merged)
				index[k] = mi
				merged = append(merged, &partitionRecords{topic: pr.topic, partition: pr.partition})
			}
			from := len(merged[mi].recs)
			merged[mi].recs = append(merged[mi].recs, pr.recs...)
			spans[ci] = append(spans[ci], span{mi, from, len(merged[mi].recs)})
		}
	}
	if len(live) > 0 {
		if deadline.IsZero() {
			deadline = time.Now().Add(defaultProduceTimeout)
		}
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		next, errs := p.writeRounds(ctx, merged)
		cancel()
		for ci, c := range live {
			for _, sp := range spans[ci] {
				if next[sp.part] >= sp.to {
					continue
				}
				c.left = append(c.left, merged[sp.part].recs[max(next[sp.part], sp.from):sp.to]...)
				if _, perm := errs[sp.part].(*permanentError); perm || c.err == nil {
					c.err = errs[sp.part]
				}
			}
		}
	}
	for _, c := range calls {
		close(c.done)
	}
}

// topicLayout is a topic's partitions, sorted, and their leaders.
type topicLayout struct {
	ids     []int
	leaders map[int]int
}

// layoutTTL is how long the producer uses a topic's layout before reading
// it again from the transport's metadata cache (itself refreshed every
// MetadataTTL); a failed write drops it at once.
const layoutTTL = 250 * time.Millisecond

// layouts returns the layout of each topic, from the producer's cache or
// the transport's metadata.
func (p *Producer) layouts(ctx context.Context, topics []string) (map[string]topicLayout, error) {
	p.mu.Lock()
	fresh := time.Since(p.layoutAt) < layoutTTL
	out := make(map[string]topicLayout, len(topics))
	var missing []string
	for _, t := range topics {
		if l, ok := p.layout[t]; ok && fresh {
			out[t] = l
		} else {
			missing = append(missing, t)
		}
	}
	p.mu.Unlock()
	if len(missing) == 0 {
		return out, nil
	}
	// Served from the transport's metadata cache, not a round trip.
	md, err := p.client.Metadata(ctx, &kafka.MetadataRequest{Topics: missing})
	if err != nil {
		return nil, err
	}
	for _, t := range md.Topics {
		if t.Error != nil {
			return nil, fmt.Errorf("topic %s: %w", t.Name, t.Error)
		}
		l := topicLayout{leaders: make(map[int]int, len(t.Partitions))}
		for _, part := range t.Partitions {
			l.ids = append(l.ids, part.ID)
			l.leaders[part.ID] = part.Leader.ID
		}
		slices.Sort(l.ids)
		out[t.Name] = l
	}
	p.mu.Lock()
	if !fresh || p.layout == nil {
		p.layout, p.layoutAt = map[string]topicLayout{}, time.Now()
	}
	for _, t := range missing {
		if l, ok := out[t]; ok {
			p.layout[t] = l
		}
	}
	p.mu.Unlock()
	return out, nil
}

// forgetLayouts makes the next write read the metadata again.
func (p *Producer) forgetLayouts() {
	p.mu.Lock()
	p.layout = nil
	p.mu.Unlock()
}

// place finds each record's partition (murmur2 of its key over the
// topic's partitions) and groups the partitions by leader.
func (p *Producer) place(ctx context.Context, recs []Record) (map[int][]*partitionRecords, error) {
	var topics []string
	for _, r := range recs {
		if !slices.Contains(topics, r.Topic) {
			topics = append(topics, r.Topic)
		}
	}
	layouts, err := p.layouts(ctx, topics)
	if err != nil {
		return nil, err
	}
	parts := map[tpKey]*partitionRecords{}
	byLeader := map[int][]*partitionRecords{}
	for _, r := range recs {
		l, ok := layouts[r.Topic]
		if !ok || len(l.ids) == 0 {
			return nil, fmt.Errorf("topic %s: %w", r.Topic, kafka.UnknownTopicOrPartition)
		}
		id := p.balancer.Balance(kafka.Message{Key: r.Key}, l.ids...)
		k := tpKey{r.Topic, id}
		pr := parts[k]
		if pr == nil {
			pr = &partitionRecords{topic: r.Topic, partition: id}
			parts[k] = pr
			leader := l.leaders[id]
			byLeader[leader] = append(byLeader[leader], pr)
		}
		pr.recs = append(pr.recs, r)
	}
	return byLeader, nil
}

// writeRounds writes the partitions of one leader, round by round, until
// every record is written or a round fails. It returns, per partition, the
// index of its first record not written and, for those not all written,
// why.
func (p *Producer) writeRounds(ctx context.Context, parts []*partitionRecords) ([]int, []error) {
	next := make([]int, len(parts))
	errs := make([]error, len(parts))
	for {
		req := &produce.Request{Acks: int16(kafka.RequireAll), Timeout: requestTimeoutMS(ctx)}
		var sent []int // the parts in this request
		var ends []int
		for i, pr := range parts {
			if next[i] == len(pr.recs) {
				continue
			}
			end := p.roundEnd(pr.recs, next[i])
			records := make([]protocol.Record, 0, end-next[i])
			now := time.Now()
			for _, r := range pr.recs[next[i]:end] {
				records = append(records, protocol.Record{Time: now, Key: protocol.NewBytes(r.Key), Value: protocol.NewBytes(r.Value)})
			}
			req.Topics = appendPartition(req.Topics, pr.topic, produce.RequestPartition{
				Partition: int32(pr.partition),
				RecordSet: protocol.RecordSet{Version: 2, Records: protocol.NewRecordReader(records...)},
			})
			sent = append(sent, i)
			ends = append(ends, end)
		}
		if len(sent) == 0 {
			return next, errs
		}
		res, err := p.transport.RoundTrip(ctx, p.client.Addr, req)
		var codes map[tpKey]error
		if err == nil {
			codes, err = partitionErrors(res)
		}
		failed := false
		for j, i := range sent {
			pr := parts[i]
			perr := err
			if perr == nil {
				var answered bool
				perr, answered = codes[tpKey{pr.topic, pr.partition}]
				if !answered {
					perr = fmt.Errorf("%s[%d]: no answer in the produce response", pr.topic, pr.partition)
				}
			}
			if perr == nil {
				next[i] = ends[j]
				continue
			}
			var kerr kafka.Error
			if errors.As(perr, &kerr) && !kerr.Temporary() {
				perr = &permanentError{fmt.Errorf("%s[%d]: %w", pr.topic, pr.partition, perr)}
			}
			errs[i] = perr
			failed = true
		}
		if failed {
			for i, pr := range parts {
				if next[i] < len(pr.recs) && errs[i] == nil {
					errs[i] = errors.New("not written: another partition's write failed first")
				}
			}
			return next, errs
		}
	}
}

// roundEnd is the end of the records of one partition that go in one
// request from start: at most maxCount, and at most maxBytes unless that
// is a single record (the broker judges it).
func (p *Producer) roundEnd(recs []Record, start int) int {
	size := 0
	end := start
	for end < len(recs) && end-start < p.maxCount {
		size += len(recs[end].Key) + len(recs[end].Value) + recordOverhead
		if size > p.maxBytes && end > start {
			break
		}
		end++
	}
	return end
}

// recordOverhead approximates a record's framing in a batch.
const recordOverhead = 24

type tpKey struct {
	topic     string
	partition int
}

func appendPartition(topics []produce.RequestTopic, topic string, part produce.RequestPartition) []produce.RequestTopic {
	for i := range topics {
		if topics[i].Topic == topic {
			topics[i].Partitions = append(topics[i].Partitions, part)
			return topics
		}
	}
	return append(topics, produce.RequestTopic{Topic: topic, Partitions: []produce.RequestPartition{part}})
}

// partitionErrors reads a produce response: for each partition it
// answers, its error (nil when written).
func partitionErrors(m protocol.Message) (map[tpKey]error, error) {
	res, ok := m.(*produce.Response)
	if !ok {
		return nil, fmt.Errorf("unexpected produce response %T", m)
	}
	errs := map[tpKey]error{}
	for _, t := range res.Topics {
		for _, part := range t.Partitions {
			var err error
			if part.ErrorCode != 0 {
				err = kafka.Error(part.ErrorCode)
				if part.ErrorMessage != "" {
					err = fmt.Errorf("%w: %s", err, part.ErrorMessage)
				}
			}
			errs[tpKey{t.Topic, int(part.Partition)}] = err
		}
	}
	return errs, nil
}

// requestTimeoutMS is how long the broker may wait for the in-sync
// replicas: what is left of ctx.
func requestTimeoutMS(ctx context.Context) int32 {
	d := defaultProduceTimeout
	if dl, ok := ctx.Deadline(); ok {
		d = time.Until(dl)
	}
	return int32(min(max(d, time.Millisecond), 30*time.Second).Milliseconds())
}

// Close closes the producer's connections. Nothing is buffered: every
// Produce has returned its answer.
func (p *Producer) Close() error {
	p.transport.CloseIdleConnections()
	return nil
}
