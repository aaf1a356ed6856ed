// Package store holds the Redis views materialized from the Kafka log:
// per-conversation history, conversation lists and seq counters. Every
// write is idempotent, so replaying the log is harmless.
package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/rediskit"
	"github.com/switchboard-chat/switchboard/internal/route"
)

// Config configures a Store. Zero fields take the documented defaults.
type Config struct {
	// Prefix is prepended to every key; it must match the routing table's.
	// Default "sb:".
	Prefix string
	// HistoryWindow is how many recent messages per conversation are kept
	// in Redis. Older ones stay in Kafka. Default 1000.
	HistoryWindow int
}

// Store reads and writes the materialized views. Safe for concurrent use.
//
// Keys: hist:{<conv>} (zset id by seq), msg:{<conv>} (hash id → message
// JSON), seq:{<conv>} (the counter the send path increments; raised to the
// highest logged seq), convs:<user> (zset conv by last activity, ms). A
// conversation's keys share the hash tag {<conv>} (route.ConvKey), so its
// scripts run on one Redis Cluster slot; no script touches two
// conversations, a conversation and a user, or two users.
type Store struct {
	rdb redis.UniversalClient
	cfg Config
}

// New returns a Store on rdb.
func New(rdb redis.UniversalClient, cfg Config) *Store {
	if cfg.Prefix == "" {
		cfg.Prefix = "sb:"
	}
	if cfg.HistoryWindow <= 0 {
		cfg.HistoryWindow = 1000
	}
	return &Store{rdb: rdb, cfg: cfg}
}

func (s *Store) key(kind string, id string) string { return s.cfg.Prefix + kind + ":" + id }

// ckey is the key of kind for conversation c, tagged with it.
func (s *Store) ckey(kind string, c chat.ConvID) string { return route.ConvKey(s.cfg.Prefix, kind, c) }

// appliedKey is the hash of topic's partitions → the offset after the last
// record applied.
func (s *Store) appliedKey(topic string) string { return s.cfg.Prefix + "applied:{" + topic + "}" }

// Position is where a record sits in the log. Applying a record also
// records its position, so readers can tell how far the views have caught
// up with the log. The zero Position records nothing.
type Position struct {
	Topic     string
	Partition int
	Offset    int64
}

// raiseApplied is the Lua prelude of every apply script: it raises the
// applied offset of a partition (key: hash partition → next offset) unless
// the partition is "" (a record applied outside the log's order).
const raiseApplied = `
local function raise_applied(key, partition, next)
  if partition == '' then return end
  local cur = tonumber(redis.call('HGET', key, partition) or '-1')
  if tonumber(next) > cur then redis.call('HSET', key, partition, next) end
end
`

// newApplyScript returns a script whose body may call raise_applied.
func newApplyScript(body string) *redis.Script { return redis.NewScript(raiseApplied + body) }

// Apply materializes one chat-log record found at pos (the zero Position:
// applied outside the log's order, recording no position), as a Bulk of
// that one record writes it. Applying a record again changes nothing.
func (s *Store) Apply(ctx context.Context, lr *chat.LogRecord, pos Position) error {
	b := s.NewBulk(pos.Topic)
	b.Add(lr, pos.Partition, pos.Offset)
	if pos.Topic == "" {
		clear(b.applied)
		for _, cc := range b.convs {
			clear(cc.index)
		}
	}
	return b.Write(ctx)
}

// History returns up to limit messages of conv with seq > after, oldest
// first.
func (s *Store) History(ctx context.Context, conv chat.ConvID, after int64, limit int) ([]*chat.Message, error) {
	ids, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{
		Key: s.ckey("hist", conv), ByScore: true,
		Start: "(" + strconv.FormatInt(after, 10), Stop: "+inf", Count: int64(limit),
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("history %s: %w", conv, err)
	}
	return s.messages(ctx, conv, ids)
}

func (s *Store) messages(ctx context.Context, conv chat.ConvID, ids []string) ([]*chat.Message, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	vals, err := s.rdb.HMGet(ctx, s.ckey("msg", conv), ids...).Result()
	if err != nil {
		return nil, fmt.Errorf("messages %s: %w", conv, err)
	}
	out := make([]*chat.Message, 0, len(vals))
	for _, v := range vals {
		str, ok := v.(string)
		if !ok {
			continue // trimmed between the two reads
		}
		var m chat.Message
		if err := json.Unmarshal([]byte(str), &m); err != nil {
			return nil, fmt.Errorf("messages %s: %w", conv, err)
		}
		out = append(out, &m)
	}
	return out, nil
}

// Conversations returns the non-public conversations of u, most recently
// active first.
func (s *Store) Conversations(ctx context.Context, u chat.UserID) ([]chat.ConvID, error) {
	ids, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: s.key("convs", string(u)), Start: 0, Stop: -1, Rev: true}).Result()
	if err != nil {
		return nil, fmt.Errorf("conversations %s: %w", u, err)
	}
	out := make([]chat.ConvID, len(ids))
	for i, id := range ids {
		out[i] = chat.ConvID(id)
	}
	return out, nil
}

// posArgs returns the script arguments that record pos ("" when zero).
func posArgs(pos Position) (partition, next string) {
	if pos.Topic == "" {
		return "", "0"
	}
	return strconv.Itoa(pos.Partition), strconv.FormatInt(pos.Offset+1, 10)
}

// Applied returns, per partition of topic, the offset after the last record
// applied to the views.
func (s *Store) Applied(ctx context.Context, topic string) (map[int]int64, error) {
	vals, err := s.rdb.HGetAll(ctx, s.appliedKey(topic)).Result()
	if err != nil {
		return nil, fmt.Errorf("applied %s: %w", topic, err)
	}
	out := make(map[int]int64, len(vals))
	for k, v := range vals {
		p, err1 := strconv.Atoi(k)
		o, err2 := strconv.ParseInt(v, 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("applied %s: corrupt entry %q=%q", topic, k, v)
		}
		out[p] = o
	}
	return out, nil
}

// Recent returns the last n messages of conv, oldest first.
func (s *Store) Recent(ctx context.Context, conv chat.ConvID, n int) ([]*chat.Message, error) {
	ids, err := s.rdb.ZRange(ctx, s.ckey("hist", conv), int64(-n), -1).Result()
	if err != nil {
		return nil, fmt.Errorf("recent %s: %w", conv, err)
	}
	return s.messages(ctx, conv, ids)
}

// Latest returns the highest seq materialized for conv (0 when none).
func (s *Store) Latest(ctx context.Context, conv chat.ConvID) (int64, error) {
	tops, err := s.LatestMany(ctx, []chat.ConvID{conv})
	return tops[conv], err
}

// markApplied raises the applied offset of one partition.
var markApplied = newApplyScript(`
raise_applied(KEYS[1], ARGV[1], ARGV[2])
return 1
`)

// MarkApplied records that the record at pos needs nothing materialized
// (an unknown or undecodable record), so readers waiting for the views to
// reach it do not wait in vain.
func (s *Store) MarkApplied(ctx context.Context, pos Position) error {
	part, next := posArgs(pos)
	if part == "" {
		return nil
	}
	if err := markApplied.Run(ctx, s.rdb, []string{s.appliedKey(pos.Topic)}, part, next).Err(); err != nil {
		return fmt.Errorf("mark applied %s/%d: %w", pos.Topic, pos.Partition, err)
	}
	return nil
}

// viewKinds are the key kinds FlushViews deletes: everything materialized
// from the log except the seq counters, which the send path needs and a
// replay only raises.
var viewKinds = []string{"hist", "msg", "convs", "rcpt", "applied", "trim", "user", "users", "conv", "conversations", "idx", "del",
	"members", "unlist", "usernames", "mid"}

// FlushViews deletes every materialized view (not the seq counters), for a
// rebuild from the log. It scans, so it is for maintenance only. It returns
// how many keys it deleted.
func (s *Store) FlushViews(ctx context.Context) (int, error) {
	deleted := 0
	for _, kind := range viewKinds {
		if err := s.rdb.Del(ctx, s.cfg.Prefix+kind).Err(); err != nil { // the kinds that are one key
			return deleted, fmt.Errorf("flush views: %w", err)
		}
		n, err := rediskit.DeleteMatching(ctx, s.rdb, s.cfg.Prefix+kind+":*")
		deleted += n
		if err != nil {
			return deleted, fmt.Errorf("flush views: %w", err)
		}
	}
	return deleted, nil
}

// Peers returns the users u shares a direct conversation with.
func (s *Store) Peers(ctx context.Context, u chat.UserID) ([]chat.UserID, error) {
	convs, err := s.Conversations(ctx, u)
	if err != nil {
		return nil, err
	}
	var out []chat.UserID
	for _, conv := range convs {
		if p, ok := conv.Peer(u); ok && p != u {
			out = append(out, p)
		}
	}
	return out, nil
}

// releaseLock deletes a lock only if it is still ours.
var releaseLock = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// LockRebuild waits until no other rebuild runs (a lock in Redis, held at
// most ttl) and takes the lock; release gives it back.
func (s *Store) LockRebuild(ctx context.Context, ttl time.Duration) (release func(), err error) {
	l, err := s.AcquireRebuild(ctx, ttl)
	if err != nil {
		return nil, err
	}
	return l.Release, nil
}

// Trimmed returns the highest seq of conv that fell out of the window (0
// when nothing did): messages up to it are only in the log.
func (s *Store) Trimmed(ctx context.Context, conv chat.ConvID) (int64, error) {
	n, err := s.rdb.Get(ctx, s.ckey("trim", conv)).Int64()
	if err != nil && err != redis.Nil {
		return 0, fmt.Errorf("trimmed %s: %w", conv, err)
	}
	return n, nil
}

// LatestMany is Latest for many conversations in one round trip.
func (s *Store) LatestMany(ctx context.Context, convs []chat.ConvID) (map[chat.ConvID]int64, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.ZSliceCmd, len(convs))
	for i, c := range convs {
		cmds[i] = pipe.ZRangeWithScores(ctx, s.ckey("hist", c), -1, -1)
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, fmt.Errorf("latest: %w", err)
	}
	out := make(map[chat.ConvID]int64, len(convs))
	for i, c := range convs {
		if zs := cmds[i].Val(); len(zs) > 0 {
			out[c] = int64(zs[0].Score)
		} else {
			out[c] = 0
		}
	}
	return out, nil
}
