package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/internal/chat"
)

// ErrTaken means a user name already belongs to an account.
var ErrTaken = errors.New("user name taken")

// claimUser materializes a new account at once, before its chat-state
// record is produced, unless the name already has a password: KEYS[1] the
// user hash; ARGV[1] created_at, ARGV[2] the description. A user without a
// password (first seen in open auth mode) is claimed and keeps its
// created_at. Returns the account's created_at, or 0 when taken. The
// indexes (users, and the names search reads) are written after it, as
// the router's apply writes them.
var claimUser = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], 'json')
local created = tonumber(ARGV[1])
if cur then
  local ok, rec = pcall(cjson.decode, cur)
  if not ok or type(rec) ~= 'table' or (type(rec.password_hash) == 'string' and rec.password_hash ~= '') then
    return 0
  end
  created = tonumber(redis.call('HGET', KEYS[1], 'created_at') or ARGV[1])
end
redis.call('HSET', KEYS[1], 'json', ARGV[2], 'created_at', created)
return created
`)

// releaseUser undoes claimUser when the record could not be produced:
// if the description is still ARGV[1] it becomes ARGV[2] again (the open
// mode user's) and 1 is returned, or the user is removed and 2 is
// returned when there was none (its index entries go after).
var releaseUser = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'json') ~= ARGV[1] then return 0 end
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[1], 'json', ARGV[2])
  return 1
end
redis.call('DEL', KEYS[1])
return 2
`)

// Claim is a registration in progress: the account is materialized and
// blocks the name; Release undoes it when its record could not be made
// durable.
type Claim struct {
	User chat.User // with the created_at the record must carry
	desc string
	prev string // the open-mode description it replaced, or ""
}

// ClaimUser atomically takes u.ID for a new account with u's password
// hash, or fails with ErrTaken when the name has a password already. The
// router's later apply of the account's record writes the same
// description, so it changes nothing.
func (s *Store) ClaimUser(ctx context.Context, u chat.User) (*Claim, error) {
	if u.PasswordHash == "" {
		return nil, errors.New("claim user: no password hash")
	}
	hash := s.key("user", string(u.ID))
	prev, err := s.rdb.HGet(ctx, hash, "json").Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("claim user %s: %w", u.ID, err)
	}
	body, err := json.Marshal(u)
	if err != nil {
		return nil, err
	}
	created, err := claimUser.Run(ctx, s.rdb, []string{hash}, u.CreatedAt, body).Int64()
	if err == nil && created != 0 {
		_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.ZAdd(ctx, s.cfg.Prefix+"users", redis.Z{Score: float64(created), Member: string(u.ID)})
			p.ZAdd(ctx, s.cfg.Prefix+"usernames", redis.Z{Score: 0, Member: string(u.ID)})
			return nil
		})
	}
	switch {
	case err != nil:
		return nil, fmt.Errorf("claim user %s: %w", u.ID, err)
	case created == 0:
		return nil, ErrTaken
	case created != u.CreatedAt:
		// An open-mode user: the account keeps its original created_at
		// (the claim holds the name meanwhile).
		u.CreatedAt = created
		if body, err = json.Marshal(u); err == nil {
			err = s.rdb.HSet(ctx, hash, "json", body).Err()
		}
		if err != nil {
			return nil, fmt.Errorf("claim user %s: %w", u.ID, err)
		}
	}
	return &Claim{User: u, desc: string(body), prev: prev}, nil
}

// Release undoes c if nothing replaced its description since.
func (s *Store) Release(ctx context.Context, c *Claim) error {
	n, err := releaseUser.Run(ctx, s.rdb, []string{s.key("user", string(c.User.ID))}, c.desc, c.prev).Int()
	if err == nil && n == 2 {
		_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.ZRem(ctx, s.cfg.Prefix+"users", string(c.User.ID))
			p.ZRem(ctx, s.cfg.Prefix+"usernames", string(c.User.ID))
			return nil
		})
	}
	if err != nil {
		return fmt.Errorf("release user %s: %w", c.User.ID, err)
	}
	return nil
}
