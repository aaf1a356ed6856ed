package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/internal/chat"
)

// Membership returns u's role in group conv; exists is false when the
// group does not exist (its members hash always holds the owner), role is
// "" when u is not a member. One round trip.
func (s *Store) Membership(ctx context.Context, conv chat.ConvID, u chat.UserID) (role chat.Role, exists bool, err error) {
	roles, ex, err := s.Memberships(ctx, []chat.ConvID{conv}, u)
	if err != nil {
		return "", false, fmt.Errorf("membership %s: %w", conv, err)
	}
	return roles[conv], ex[conv], nil
}

// Memberships is Membership of u for many groups in one round trip.
func (s *Store) Memberships(ctx context.Context, convs []chat.ConvID, u chat.UserID) (roles map[chat.ConvID]chat.Role, exists map[chat.ConvID]bool, err error) {
	pipe := s.rdb.Pipeline()
	gets := make([]*redis.StringCmd, len(convs))
	ns := make([]*redis.IntCmd, len(convs))
	for i, c := range convs {
		gets[i] = pipe.HGet(ctx, s.MembersKey(c), string(u))
		ns[i] = pipe.Exists(ctx, s.MembersKey(c))
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, nil, fmt.Errorf("memberships: %w", err)
	}
	roles, exists = make(map[chat.ConvID]chat.Role, len(convs)), make(map[chat.ConvID]bool, len(convs))
	for i, c := range convs {
		roles[c], exists[c] = chat.Role(gets[i].Val()), ns[i].Val() == 1
	}
	return roles, exists, nil
}

// MessageIndexKey is the hash that maps message ids to their conversation
// and seq: one hash per 1024 ms of ids (the first 8 characters of an id
// are its millisecond timestamp above 10 bits).
func (s *Store) MessageIndexKey(id string) string {
	return s.key("mid", id[:min(len(id), 8)])
}

// MessageIndexValue is the value of a message's entry: "<conv>|<seq>".
func MessageIndexValue(conv chat.ConvID, seq int64) string {
	return string(conv) + "|" + strconv.FormatInt(seq, 10)
}

// FindMessage returns the conversation and seq of message id; ok is false
// when no message with that id was materialized.
func (s *Store) FindMessage(ctx context.Context, id string) (conv chat.ConvID, seq int64, ok bool, err error) {
	v, err := s.rdb.HGet(ctx, s.MessageIndexKey(id), id).Result()
	if err == redis.Nil {
		return "", 0, false, nil
	}
	if err != nil {
		return "", 0, false, fmt.Errorf("find message %s: %w", id, err)
	}
	c, n, found := strings.Cut(v, "|")
	seq, perr := strconv.ParseInt(n, 10, 64)
	if !found || perr != nil {
		return "", 0, false, fmt.Errorf("find message %s: corrupt entry %q", id, v)
	}
	return chat.ConvID(c), seq, true, nil
}

// SearchUsers returns up to limit known user ids starting with prefix, in
// byte order.
func (s *Store) SearchUsers(ctx context.Context, prefix string, limit int) ([]chat.UserID, error) {
	ids, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{
		Key: s.cfg.Prefix + "usernames", ByLex: true,
		Start: "[" + prefix, Stop: "[" + prefix + "\xff", Count: int64(limit),
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("search users: %w", err)
	}
	out := make([]chat.UserID, len(ids))
	for i, id := range ids {
		out[i] = chat.UserID(id)
	}
	return out, nil
}

// Summary is what a conversation list shows of one conversation.
type Summary struct {
	Last   *chat.Message // the newest message, nil when none
	Unread int64         // others' messages in the window above u's read mark
}

// countUnread counts the messages of a conversation's window (KEYS[1]
// hist, KEYS[2] msg) above the read mark ARGV[1] whose JSON does not hold
// ARGV[2], the reader's "from" field: the reader's own messages are never
// unread. A user id needs no escaping in JSON, so the field appears
// verbatim (as encoding/json and cjson write it) and a body cannot forge
// it (its quotes are escaped).
var countUnread = redis.NewScript(`
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf')
local n = #ids
for a = 1, #ids, 500 do
  local vs = redis.call('HMGET', KEYS[2], unpack(ids, a, math.min(a + 499, #ids)))
  for _, v in ipairs(vs) do
    if v and string.find(v, ARGV[2], 1, true) then n = n - 1 end
  end
end
return n
`)

// Summaries returns, for u, the newest message of each conversation and
// how many messages of the Redis window (the newest HistoryWindow) lie
// above u's read mark, not counting u's own: the count saturates at the
// window. Two round trips; the count reads the bodies of the unread part
// of the window inside Redis.
func (s *Store) Summaries(ctx context.Context, u chat.UserID, convs []chat.ConvID) ([]Summary, error) {
	pipe := s.rdb.Pipeline()
	last := make([]*redis.StringSliceCmd, len(convs))
	marks := make([]*redis.StringCmd, len(convs))
	for i, c := range convs {
		last[i] = pipe.ZRange(ctx, s.ckey("hist", c), -1, -1)
		marks[i] = pipe.HGet(ctx, s.ckey("rcpt", c), string(u)+"|read")
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, fmt.Errorf("summaries: %w", err)
	}
	pipe = s.rdb.Pipeline()
	counts := make([]*redis.Cmd, len(convs)) // Eval: a pipeline cannot fall back from EVALSHA
	msgs := make([]*redis.SliceCmd, len(convs))
	for i, c := range convs {
		mark, _ := marks[i].Int64()
		counts[i] = countUnread.Eval(ctx, pipe, []string{s.ckey("hist", c), s.ckey("msg", c)},
			strconv.FormatInt(mark, 10), `"from":"`+string(u)+`"`)
		if ids := last[i].Val(); len(ids) == 1 {
			msgs[i] = pipe.HMGet(ctx, s.ckey("msg", c), ids[0])
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("summaries: %w", err)
	}
	out := make([]Summary, len(convs))
	for i := range convs {
		out[i].Unread, _ = counts[i].Int64()
		if msgs[i] == nil {
			continue
		}
		if v, ok := msgs[i].Val()[0].(string); ok {
			var m chat.Message
			if err := json.Unmarshal([]byte(v), &m); err == nil {
				out[i].Last = &m
			}
		}
	}
	return out, nil
}

// ErrBusy means a lock stayed taken for as long as the caller waited.
var ErrBusy = errors.New("busy: another change holds the lock")

// LockConversation serializes changes of one conversation across gateways
// (a Redis lock held at most ttl, waited for until ctx ends); release
// gives it back if it is still ours.
func (s *Store) LockConversation(ctx context.Context, conv chat.ConvID, ttl time.Duration) (release func(), err error) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	owner, key := hex.EncodeToString(b[:]), s.ckey("convlock", conv)
	for {
		ok, err := s.rdb.SetNX(ctx, key, owner, ttl).Result()
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", conv, err)
		}
		if ok {
			return func() { _ = releaseLock.Run(context.WithoutCancel(ctx), s.rdb, []string{key}, owner).Err() }, nil
		}
		select {
		case <-ctx.Done():
			return nil, ErrBusy
		case <-time.After(10 * time.Millisecond):
		}
	}
}
