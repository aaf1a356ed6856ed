// Package store holds the Redis views materialized from the Kafka log:
// per-conversation history, conversation lists and seq counters. Every
// write is idempotent, so replaying the log is harmless.
package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/internal/chat"
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
// Keys: hist:<conv> (zset id by seq), msg:<conv> (hash id → message JSON),
// seq:<conv> (the counter the send path increments; raised to the highest
// logged seq), convs:<user> (zset conv by last activity, ms).
type Store struct {
	rdb *redis.Client
	cfg Config
}

// New returns a Store on rdb.
func New(rdb *redis.Client, cfg Config) *Store {
	if cfg.Prefix == "" {
		cfg.Prefix = "sb:"
	}
	if cfg.HistoryWindow <= 0 {
		cfg.HistoryWindow = 1000
	}
	return &Store{rdb: rdb, cfg: cfg}
}

func (s *Store) key(kind string, id string) string { return s.cfg.Prefix + kind + ":" + id }

// applyMessage adds a message to its conversation's history once (keyed by
// id), trims the window, raises the seq counter and bumps the members'
// conversation lists.
var applyMessage = redis.NewScript(`
local added = redis.call('ZADD', KEYS[1], 'NX', ARGV[1], ARGV[2])
if added == 1 then
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
  local n = redis.call('ZCARD', KEYS[1])
  local cap = tonumber(ARGV[4])
  if n > cap then
    local old = redis.call('ZRANGE', KEYS[1], 0, n - cap - 1)
    redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - cap - 1)
    redis.call('HDEL', KEYS[2], unpack(old))
  end
end
local cur = tonumber(redis.call('GET', KEYS[3]) or '0')
if tonumber(ARGV[1]) > cur then redis.call('SET', KEYS[3], ARGV[1]) end
for i = 4, #KEYS do redis.call('ZADD', KEYS[i], 'GT', ARGV[5], ARGV[6]) end
return added
`)

// ApplyMessage materializes m. It reports whether m was new.
func (s *Store) ApplyMessage(ctx context.Context, m *chat.Message) (bool, error) {
	body, err := json.Marshal(m)
	if err != nil {
		return false, fmt.Errorf("apply %s: %w", m.ID, err)
	}
	conv := string(m.Conv)
	keys := []string{s.key("hist", conv), s.key("msg", conv), s.key("seq", conv)}
	if a, b, ok := m.Conv.Members(); ok {
		keys = append(keys, s.key("convs", string(a)))
		if b != a {
			keys = append(keys, s.key("convs", string(b)))
		}
	}
	n, err := applyMessage.Run(ctx, s.rdb, keys,
		m.Seq, m.ID, body, s.cfg.HistoryWindow, m.TS, conv).Int()
	if err != nil {
		return false, fmt.Errorf("apply %s: %w", m.ID, err)
	}
	return n == 1, nil
}

// History returns up to limit messages of conv with seq > after, oldest
// first.
func (s *Store) History(ctx context.Context, conv chat.ConvID, after int64, limit int) ([]*chat.Message, error) {
	ids, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{
		Key: s.key("hist", string(conv)), ByScore: true,
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
	vals, err := s.rdb.HMGet(ctx, s.key("msg", string(conv)), ids...).Result()
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
