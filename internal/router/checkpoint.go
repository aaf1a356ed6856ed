package router

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/kafkabus"
)

// The checkpoint topic (compacted, one partition) is what the seq counters
// come back from after a Redis loss, together with the chat-log tail
// after it:
//
//	key seq:<conv>       value: the highest seq of conv in chat-log (decimal)
//	key log:<partition>  value: the chat-log offset up to which (exclusive)
//	                     every message's seq is covered by the seq: records
//
// A checkpoint writes the seq: records of the conversations whose seq rose
// since the last one, and only once they are acknowledged the log:
// records. A reader takes the highest value of each seq: key and the
// last log: record of each partition.

// checkpointSegment is how often the checkpoint topic rolls a segment:
// only closed segments are compacted, and a restore reads the whole topic,
// so it holds about one record per conversation plus this much of
// checkpoints.
const checkpointSegment = 10 * time.Minute

// checkpoint is what the checkpoint topic says.
type checkpoint struct {
	seqs    map[chat.ConvID]int64
	covered map[int]int64
	next    int64 // offset after the last checkpoint record read
}

func newCheckpoint() *checkpoint {
	return &checkpoint{seqs: map[chat.ConvID]int64{}, covered: map[int]int64{}}
}

// read adds the checkpoint records from cp.next up to the topic's end.
func (r *Router) readCheckpoint(ctx context.Context, cp *checkpoint) error {
	first, end, err := r.span(ctx, r.cfg.CheckpointTopic)
	if err != nil {
		return err
	}
	cp.next = max(cp.next, first[0])
	err = kafkabus.Scan(ctx, r.kafka, r.cfg.CheckpointTopic, 0, cp.next, end[0], func(rec kafkabus.Record) error {
		kind, id, _ := strings.Cut(string(rec.Key), ":")
		n, err := strconv.ParseInt(string(rec.Value), 10, 64)
		if err != nil {
			r.log.Warn("checkpoint: undecodable record", "offset", rec.Offset, "key", string(rec.Key))
			return nil
		}
		switch kind {
		case "seq":
			cp.seqs[chat.ConvID(id)] = max(cp.seqs[chat.ConvID(id)], n)
		case "log":
			if p, err := strconv.Atoi(id); err == nil {
				cp.covered[p] = n
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read checkpoint: %w", err)
	}
	cp.next = max(cp.next, end[0])
	return nil
}

// seqOf returns the conversation and seq of a chat-log message record
// (ok false for other records).
func seqOf(value []byte) (conv chat.ConvID, seq int64, ok bool) {
	lr, err := decodeLogRecord(value)
	if err != nil || lr.Type != chat.TypeMessage {
		return "", 0, false
	}
	return lr.Message.Conv, lr.Message.Seq, true
}

// checkpointer writes checkpoints every CheckpointInterval. It reads
// chat-log itself (outside the consumer group, from where the checkpoint
// topic says the last checkpoint ended) and the checkpoint topic (to
// learn what other routers wrote): it writes a seq only above what the
// topic holds, and a covered offset only past the topic's.
type checkpointer struct {
	r     *Router
	topic *checkpoint           // what the checkpoint topic holds
	seqs  map[chat.ConvID]int64 // highest seq read from chat-log
	pos   map[int]int64         // chat-log offset read up to
}

func (r *Router) checkpointLoop(ctx context.Context) {
	c := &checkpointer{r: r}
	every(ctx, r.cfg.CheckpointInterval, true, func() bool {
		if err := c.write(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("checkpoint failed; retrying on the next", "err", err)
			c.topic = nil // start over from the topic
		}
		return true
	})
}

// write reads chat-log from where it stopped and writes one checkpoint.
func (c *checkpointer) write(ctx context.Context) error {
	r := c.r
	if c.topic == nil {
		c.topic, c.seqs, c.pos = newCheckpoint(), map[chat.ConvID]int64{}, map[int]int64{}
	}
	fresh := c.topic.next == 0
	if err := r.readCheckpoint(ctx, c.topic); err != nil {
		return err
	}
	if fresh { // resume where the topic's checkpoint ends
		for conv, seq := range c.topic.seqs {
			c.seqs[conv] = seq
		}
		for p, o := range c.topic.covered {
			c.pos[p] = o
		}
	}
	first, end, err := r.span(ctx, r.cfg.ChatLogTopic)
	if err != nil {
		return err
	}
	for p, e := range end {
		from := max(c.pos[p], first[p])
		err := kafkabus.Scan(ctx, r.kafka, r.cfg.ChatLogTopic, p, from, e, func(rec kafkabus.Record) error {
			if conv, seq, ok := seqOf(rec.Value); ok && seq > c.seqs[conv] {
				c.seqs[conv] = seq
			}
			return nil
		})
		if err != nil {
			return err
		}
		c.pos[p] = max(from, e)
	}
	var recs []kafkabus.Record
	for conv, seq := range c.seqs {
		if seq > c.topic.seqs[conv] {
			recs = append(recs, kafkabus.Record{Topic: r.cfg.CheckpointTopic, Key: []byte("seq:" + string(conv)), Value: []byte(strconv.FormatInt(seq, 10))})
		}
	}
	// The seqs first: a covered offset must never be in the topic without
	// them (a produce that fails part-way may have written some records).
	if len(recs) > 0 {
		if err := r.producer.Produce(ctx, recs); err != nil {
			return err
		}
	}
	var covs []kafkabus.Record
	for p, o := range c.pos {
		if cur, ok := c.topic.covered[p]; !ok || o > cur {
			covs = append(covs, kafkabus.Record{Topic: r.cfg.CheckpointTopic, Key: []byte("log:" + strconv.Itoa(p)), Value: []byte(strconv.FormatInt(o, 10))})
		}
	}
	if len(covs) > 0 {
		if err := r.producer.Produce(ctx, covs); err != nil {
			return err
		}
	}
	r.checkpoints.Inc() // the next write reads these records back from the topic
	return nil
}
