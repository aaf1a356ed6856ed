package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/route"
)

// applyReceipt raises a member's cumulative marks in rcpt:<conv> (fields
// "<user>|delivered" and "<user>|read"; read raises delivered too) and the
// applied offset. Marks never go down, so replays are harmless. A mark is
// clamped to the conversation's seq counter (KEYS[3]): a receipt logged
// before the gateways refused out-of-range ones cannot raise a mark past
// the last seq handed out, on the live path or in a replay.
var applyReceipt = newApplyScript(`
raise_applied(KEYS[2], ARGV[5], ARGV[6])
local seq = ARGV[2]
local counter = redis.call('GET', KEYS[3]) or '0'
if tonumber(seq) > tonumber(counter) then seq = counter end
if tonumber(seq) < 1 then return 0 end
local function raise(field)
  local cur = tonumber(redis.call('HGET', KEYS[1], field) or '0')
  if tonumber(seq) > cur then redis.call('HSET', KEYS[1], field, seq) end
end
raise(ARGV[1] .. '|delivered')
if ARGV[3] == 'read' then raise(ARGV[1] .. '|read') end
return 1
`)

// ApplyReceipt materializes r, found in the log at pos. The mark is
// clamped to conv's seq counter.
func (s *Store) ApplyReceipt(ctx context.Context, r *chat.Receipt, pos Position) error {
	part, next := posArgs(pos)
	err := applyReceipt.Run(ctx, s.rdb,
		[]string{s.key("rcpt", string(r.Conv)), s.key("applied", pos.Topic), route.SeqKey(s.cfg.Prefix, r.Conv)},
		string(r.User), r.Seq, r.Status, r.TS, part, next).Err()
	if err != nil {
		return fmt.Errorf("apply receipt %s/%s: %w", r.Conv, r.User, err)
	}
	return nil
}

// Receipts returns every member's marks in conv: one receipt per user and
// status that has one.
func (s *Store) Receipts(ctx context.Context, conv chat.ConvID) ([]chat.Receipt, error) {
	all, err := s.ReceiptsMany(ctx, []chat.ConvID{conv})
	return all[conv], err
}

// ReceiptsMany is Receipts for many conversations in one round trip.
func (s *Store) ReceiptsMany(ctx context.Context, convs []chat.ConvID) (map[chat.ConvID][]chat.Receipt, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(convs))
	for i, c := range convs {
		cmds[i] = pipe.HGetAll(ctx, s.key("rcpt", string(c)))
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, fmt.Errorf("receipts: %w", err)
	}
	out := make(map[chat.ConvID][]chat.Receipt, len(convs))
	for i, conv := range convs {
		vals := cmds[i].Val()
		if len(vals) == 0 {
			continue
		}
		marks := make([]chat.Receipt, 0, len(vals))
		for k, v := range vals {
			user, status, ok := strings.Cut(k, "|")
			seq, err := strconv.ParseInt(v, 10, 64)
			if !ok || err != nil {
				return nil, fmt.Errorf("receipts %s: corrupt field %q=%q", conv, k, v)
			}
			marks = append(marks, chat.Receipt{Conv: conv, User: chat.UserID(user), Seq: seq, Status: status})
		}
		out[conv] = marks
	}
	return out, nil
}

// applyDelete records the id in the deleted set (KEYS[3]), empties the
// message's body and marks it deleted if the message is still in the
// window, and raises the applied offset.
var applyDelete = newApplyScript(`
raise_applied(KEYS[2], ARGV[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[1])
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local m = cjson.decode(v)
m.body = ''
m.deleted = true
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(m))
return 1
`)

// ApplyDelete materializes d, found in the log at pos. It reports whether
// the message was in the window.
func (s *Store) ApplyDelete(ctx context.Context, d *chat.Delete, pos Position) (bool, error) {
	part, next := posArgs(pos)
	n, err := applyDelete.Run(ctx, s.rdb, []string{s.key("msg", string(d.Conv)), s.key("applied", pos.Topic), s.DeletedKey(d.Conv)},
		d.ID, part, next).Int()
	if err != nil {
		return false, fmt.Errorf("apply delete %s: %w", d.ID, err)
	}
	return n == 1, nil
}
