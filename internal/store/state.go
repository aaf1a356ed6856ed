package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/switchboard-chat/switchboard/internal/chat"
)

// applyEntity keeps the earliest created_at of an entity (KEYS[1] hash,
// KEYS[2] index zset), stores its description (ARGV[3]) and raises the
// applied offset (KEYS[3]; ARGV[4], ARGV[5]). ARGV[6] says what else:
//
//   - "user": add the id to the name index (KEYS[4], a zset of score 0
//     searched by prefix).
//   - "group": only if its version (ARGV[7]) is not below the stored one,
//     replace the members hash (KEYS[4], user → role) with ARGV[10..]
//     (user, role pairs), add the group to each member's conversation list
//     (ARGV[9] .. user, scored by ARGV[8] with GT) and take it out of the
//     lists of the members it no longer has. A replay in log order, or any
//     order, ends with the highest version.
var applyEntity = newApplyScript(`
raise_applied(KEYS[3], ARGV[4], ARGV[5])
if ARGV[6] == 'group' then
  local v = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
  if tonumber(ARGV[7]) < v then return 0 end
end
local cur = tonumber(redis.call('HGET', KEYS[1], 'created_at') or '0')
local created = tonumber(ARGV[2])
if cur == 0 or created < cur then
  redis.call('HSET', KEYS[1], 'created_at', ARGV[2])
else
  created = cur
end
redis.call('HSET', KEYS[1], 'json', ARGV[3])
redis.call('ZADD', KEYS[2], created, ARGV[1])
if ARGV[6] == 'user' then redis.call('ZADD', KEYS[4], 0, ARGV[1]) end
if ARGV[6] == 'group' then
  redis.call('HSET', KEYS[1], 'version', ARGV[7])
  local keep = {}
  for i = 10, #ARGV, 2 do keep[ARGV[i]] = true end
  for _, u in ipairs(redis.call('HKEYS', KEYS[4])) do
    if not keep[u] then redis.call('ZREM', ARGV[9] .. u, ARGV[1]) end
  end
  redis.call('DEL', KEYS[4])
  for i = 10, #ARGV, 2 do
    redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1])
    redis.call('ZADD', ARGV[9] .. ARGV[i], 'GT', ARGV[8], ARGV[1])
  end
end
return 1
`)

func (s *Store) applyEntity(ctx context.Context, hash, index, id string, created int64, desc any, pos Position) error {
	keys, args, err := s.entityArgs(hash, index, id, created, desc, pos)
	if err != nil {
		return err
	}
	return applyEntity.Run(ctx, s.rdb, keys, args...).Err()
}

// entityArgs returns the keys and arguments of applyEntity.
func (s *Store) entityArgs(hash, index, id string, created int64, desc any, pos Position) ([]string, []any, error) {
	body, err := json.Marshal(desc)
	if err != nil {
		return nil, nil, err
	}
	part, next := posArgs(pos)
	keys := []string{hash, index, s.key("applied", pos.Topic)}
	args := []any{id, created, body, part, next}
	switch d := desc.(type) {
	case *chat.User:
		keys = append(keys, s.cfg.Prefix+"usernames")
		args = append(args, "user")
	case *chat.Conversation:
		if d.Kind != chat.KindGroup {
			break
		}
		keys = append(keys, s.MembersKey(d.ID))
		args = append(args, "group", d.Version, max(d.UpdatedAt, d.CreatedAt), s.cfg.Prefix+"convs:")
		for _, u := range d.Members {
			r, _ := d.RoleOf(u)
			args = append(args, string(u), string(r))
		}
	}
	return keys, args, nil
}

// MembersKey is the hash of a group's members (user → role).
func (s *Store) MembersKey(conv chat.ConvID) string { return s.key("members", string(conv)) }

// ApplyUser materializes a user record found in the log at pos.
func (s *Store) ApplyUser(ctx context.Context, u *chat.User, pos Position) error {
	if err := s.applyEntity(ctx, s.key("user", string(u.ID)), s.cfg.Prefix+"users", string(u.ID), u.CreatedAt, u, pos); err != nil {
		return fmt.Errorf("apply user %s: %w", u.ID, err)
	}
	return nil
}

// ApplyConversation materializes a conversation record found at pos.
func (s *Store) ApplyConversation(ctx context.Context, c *chat.Conversation, pos Position) error {
	if err := s.applyEntity(ctx, s.key("conv", string(c.ID)), s.cfg.Prefix+"conversations", string(c.ID), c.CreatedAt, c, pos); err != nil {
		return fmt.Errorf("apply conversation %s: %w", c.ID, err)
	}
	return nil
}

// KnownUser reports whether u has been materialized.
func (s *Store) KnownUser(ctx context.Context, u chat.UserID) (bool, error) {
	n, err := s.rdb.Exists(ctx, s.key("user", string(u))).Result()
	if err != nil {
		return false, fmt.Errorf("known user %s: %w", u, err)
	}
	return n == 1, nil
}

// User returns a materialized user; ok is false when unknown.
func (s *Store) User(ctx context.Context, id chat.UserID) (u chat.User, ok bool, err error) {
	ok, err = s.entity(ctx, s.key("user", string(id)), &u)
	return u, ok, err
}

// Conversation returns a materialized conversation; ok is false when
// unknown.
func (s *Store) Conversation(ctx context.Context, id chat.ConvID) (c chat.Conversation, ok bool, err error) {
	ok, err = s.entity(ctx, s.key("conv", string(id)), &c)
	return c, ok, err
}

// entity reads a description, with the earliest created_at.
func (s *Store) entity(ctx context.Context, key string, dst any) (bool, error) {
	vals, err := s.rdb.HGetAll(ctx, key).Result()
	if err != nil {
		return false, fmt.Errorf("read %s: %w", key, err)
	}
	if vals["json"] == "" {
		return false, nil
	}
	if err := json.Unmarshal([]byte(vals["json"]), dst); err != nil {
		return false, fmt.Errorf("read %s: %w", key, err)
	}
	created, _ := strconv.ParseInt(vals["created_at"], 10, 64)
	switch d := dst.(type) {
	case *chat.User:
		d.CreatedAt = created
	case *chat.Conversation:
		d.CreatedAt = created
	}
	return true, nil
}
