package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/route"
)

// applyEntity keeps the earliest created_at of an entity (KEYS[1], its
// hash) and stores its description (ARGV[3]); it returns the created_at
// kept, or 0 for a group record older than the stored version. For a
// group (ARGV[4] "group") it also replaces the members hash (KEYS[2], user
// → role) with ARGV[6..] (user, role pairs) unless the version (ARGV[5])
// is below the stored one, and moves the members it no longer has into
// the set KEYS[3] of users whose conversation lists must drop the group;
// it returns that set after the created_at. The lists themselves are
// other users' keys (other slots on a Redis Cluster), written after it.
// A replay in log order, or any order, ends with the highest version.
var applyEntity = redis.NewScript(`
if ARGV[4] == 'group' then
  local v = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
  if tonumber(ARGV[5]) < v then return {0} end
end
local cur = tonumber(redis.call('HGET', KEYS[1], 'created_at') or '0')
local created = tonumber(ARGV[2])
if cur == 0 or created < cur then
  redis.call('HSET', KEYS[1], 'created_at', ARGV[2])
else
  created = cur
end
redis.call('HSET', KEYS[1], 'json', ARGV[3])
if ARGV[4] ~= 'group' then return {created} end
redis.call('HSET', KEYS[1], 'version', ARGV[5])
local keep = {}
for i = 6, #ARGV, 2 do keep[ARGV[i]] = true end
for _, u in ipairs(redis.call('HKEYS', KEYS[2])) do
  if not keep[u] then redis.call('SADD', KEYS[3], u) end
end
redis.call('DEL', KEYS[2])
for i = 6, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  redis.call('SREM', KEYS[3], ARGV[i])
end
local out = {created}
for _, u in ipairs(redis.call('SMEMBERS', KEYS[3])) do out[#out+1] = u end
return out
`)

// entityWrite is one user or conversation record to materialize.
type entityWrite struct {
	hash  string // user:<id> or conv:{<id>}
	index string // the users or conversations index
	id    string
	keys  []string
	args  []any
	// For a group: its members and its activity score.
	group   chat.ConvID
	members []chat.UserID
	active  int64
	user    bool
}

// newEntityWrite describes the write of u or c.
func (s *Store) newEntityWrite(desc any) (*entityWrite, error) {
	body, err := json.Marshal(desc)
	if err != nil {
		return nil, err
	}
	switch d := desc.(type) {
	case *chat.User:
		w := &entityWrite{hash: s.key("user", string(d.ID)), index: s.cfg.Prefix + "users", id: string(d.ID), user: true}
		w.keys, w.args = []string{w.hash}, []any{w.id, d.CreatedAt, body, "user"}
		return w, nil
	case *chat.Conversation:
		w := &entityWrite{hash: s.ckey("conv", d.ID), index: s.cfg.Prefix + "conversations", id: string(d.ID)}
		w.keys, w.args = []string{w.hash}, []any{w.id, d.CreatedAt, body, "conversation"}
		if d.Kind == chat.KindGroup {
			w.group, w.members, w.active = d.ID, d.Members, max(d.UpdatedAt, d.CreatedAt)
			w.keys = append(w.keys, s.MembersKey(d.ID), s.ckey("unlist", d.ID))
			w.args = []any{w.id, d.CreatedAt, body, "group", d.Version}
			for _, u := range d.Members {
				r, _ := d.RoleOf(u)
				w.args = append(w.args, string(u), string(r))
			}
		}
		return w, nil
	}
	return nil, fmt.Errorf("not an entity: %T", desc)
}

// after queues what follows the script's reply: the index entries, and
// for a group its members' conversation lists (added, or dropped for the
// users the group no longer has, who then leave the unlist set).
func (s *Store) after(ctx context.Context, p redis.Pipeliner, w *entityWrite, reply []any) {
	created, _ := reply[0].(int64)
	if created == 0 {
		return // an older version of a group
	}
	p.ZAdd(ctx, w.index, redis.Z{Score: float64(created), Member: w.id})
	if w.user {
		p.ZAdd(ctx, s.cfg.Prefix+"usernames", redis.Z{Score: 0, Member: w.id})
	}
	if w.group == "" {
		return
	}
	for _, u := range w.members {
		p.ZAddGT(ctx, s.key("convs", string(u)), redis.Z{Score: float64(w.active), Member: w.id})
	}
	for _, u := range reply[1:] {
		if u, ok := u.(string); ok {
			p.ZRem(ctx, s.key("convs", u), w.id)
			p.SRem(ctx, s.ckey("unlist", w.group), u)
		}
	}
}

// MembersKey is the hash of a group's members (user → role).
func (s *Store) MembersKey(conv chat.ConvID) string { return route.MembersKey(s.cfg.Prefix, conv) }

// ApplyUser materializes a user record found in the log at pos.
func (s *Store) ApplyUser(ctx context.Context, u *chat.User, pos Position) error {
	if err := s.applyEntities(ctx, []*chat.StateRecord{{Type: chat.TypeUser, User: u}}, []Position{pos}); err != nil {
		return fmt.Errorf("apply user %s: %w", u.ID, err)
	}
	return nil
}

// ApplyConversation materializes a conversation record found at pos.
func (s *Store) ApplyConversation(ctx context.Context, c *chat.Conversation, pos Position) error {
	if err := s.applyEntities(ctx, []*chat.StateRecord{{Type: chat.TypeConversation, Conversation: c}}, []Position{pos}); err != nil {
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
	ok, err = s.entity(ctx, s.ckey("conv", id), &c)
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
