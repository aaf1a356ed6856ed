package store

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/internal/chat"
)

// IndexBlock is how many consecutive seqs one index hash covers.
const IndexBlock = 64

// The seq index says where each message of a conversation sits in
// chat-log, so that history older than the Redis window is read from the
// log at a bounded cost per page:
//
//	idx:<conv>:<block>  hash, block = seq / IndexBlock;
//	                    field: seq (decimal), value: "<partition>:<offset>"
//
// It is written with HSETNX (the first copy of a message in the log wins;
// a retried send writes the same message again later), never trimmed, and
// rebuilt from the log like every other view. A block holds at most 64
// fields, so Redis keeps it as a listpack: about 20 bytes per message.
//
//	del:<conv>          set of the ids of deleted messages
//
// A delete record only blanks the body of a message still in the window;
// the set marks the older ones, which are read from the log with their
// body and must come back as tombstones.

// IndexKey returns the key of the index block holding seq of conv.
func (s *Store) IndexKey(conv chat.ConvID, seq int64) string {
	return s.ckey("idx", conv) + ":" + strconv.FormatInt(seq/IndexBlock, 10)
}

// DeletedKey returns the key of the set of deleted message ids of conv.
func (s *Store) DeletedKey(conv chat.ConvID) string { return s.ckey("del", conv) }

// IndexValue is the index value of a message at partition/offset.
func IndexValue(partition int, offset int64) string {
	return strconv.Itoa(partition) + ":" + strconv.FormatInt(offset, 10)
}

// LogPos is where one message of a conversation sits in chat-log.
type LogPos struct {
	Seq       int64
	Partition int
	Offset    int64
}

// Locate returns the log positions of the messages of conv whose seq is in
// [from, to], in seq order, reading the index blocks that cover the range
// in one round trip. A range of n seqs touches at most n/64+2 blocks; a
// caller bounds n (a history page). Seqs that were never logged (a failed
// send leaves a gap) are simply absent.
func (s *Store) Locate(ctx context.Context, conv chat.ConvID, from, to int64) ([]LogPos, error) {
	if from < 1 {
		from = 1
	}
	if to < from {
		return nil, nil
	}
	pipe := s.rdb.Pipeline()
	var cmds []*redis.MapStringStringCmd
	for b := from / IndexBlock; b <= to/IndexBlock; b++ {
		cmds = append(cmds, pipe.HGetAll(ctx, s.IndexKey(conv, b*IndexBlock)))
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, fmt.Errorf("locate %s: %w", conv, err)
	}
	var out []LogPos
	for _, c := range cmds {
		for field, val := range c.Val() {
			seq, err := strconv.ParseInt(field, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("locate %s: corrupt index field %q", conv, field)
			}
			if seq < from || seq > to {
				continue
			}
			p, o, ok := strings.Cut(val, ":")
			part, err1 := strconv.Atoi(p)
			off, err2 := strconv.ParseInt(o, 10, 64)
			if !ok || err1 != nil || err2 != nil {
				return nil, fmt.Errorf("locate %s: corrupt index value %q", conv, val)
			}
			out = append(out, LogPos{Seq: seq, Partition: part, Offset: off})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out, nil
}

// Deleted reports, for each id, whether conv's message with that id was
// deleted.
func (s *Store) Deleted(ctx context.Context, conv chat.ConvID, ids []string) ([]bool, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	out, err := s.rdb.SMIsMember(ctx, s.DeletedKey(conv), args...).Result()
	if err != nil {
		return nil, fmt.Errorf("deleted %s: %w", conv, err)
	}
	return out, nil
}

// Rebuilding reports whether a rebuild is running: until it ends, the
// views may lack part of the log.
func (s *Store) Rebuilding(ctx context.Context) (bool, error) {
	n, err := s.rdb.Exists(ctx, s.cfg.Prefix+"rebuilding").Result()
	if err != nil {
		return false, fmt.Errorf("rebuilding: %w", err)
	}
	return n == 1, nil
}

// Before returns up to limit messages of conv that the window holds with
// seq < before, newest first.
func (s *Store) Before(ctx context.Context, conv chat.ConvID, before int64, limit int) ([]*chat.Message, error) {
	ids, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{
		Key: s.ckey("hist", conv), ByScore: true, Rev: true,
		Start: "(" + strconv.FormatInt(before, 10), Stop: "-inf", Count: int64(limit),
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("history %s: %w", conv, err)
	}
	return s.messages(ctx, conv, ids)
}
