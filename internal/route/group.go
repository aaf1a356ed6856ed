package route

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/internal/chat"
)

// The membership index: for each group, ggw:<conv> is the set of gateways
// that have a member of the group connected. Each gateway adds itself when
// its first local member of a group connects (or joins the group) and
// removes itself when its last one leaves; a group send reads the set and
// writes one copy per live gateway in it. A gateway that died stays in the
// sets until it returns, but lookups filter by the live registry.

// Errors of a group send: the sender is not a member, or the group does
// not exist.
var (
	ErrNotMember = errors.New("not a member of the group")
	ErrNoGroup   = errors.New("no such group")
)

func (t *Table) groupGatewaysKey(c chat.ConvID) string { return ConvKey(t.cfg.Prefix, "ggw", c) }

// MembersKey is the hash of group c's members (user → role) under prefix:
// the store writes it from the log, the send path checks the sender in it.
func MembersKey(prefix string, c chat.ConvID) string { return ConvKey(prefix, "members", c) }

func (t *Table) membersKey(c chat.ConvID) string { return MembersKey(t.cfg.Prefix, c) }
func (t *Table) seenKey(u chat.UserID) string    { return t.cfg.Prefix + "seen:" + string(u) }

// GroupGateways returns the live gateways that have a member of conv
// connected, in one round trip.
func (t *Table) GroupGateways(ctx context.Context, conv chat.ConvID) ([]chat.ServerID, error) {
	pipe := t.rdb.Pipeline()
	members := pipe.SMembers(ctx, t.groupGatewaysKey(conv))
	live := t.liveCmd(ctx, pipe)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("group gateways %s: %w", conv, err)
	}
	return liveOnly(members.Val(), liveSet(live.Val())), nil
}

func liveOnly(ids []string, live map[chat.ServerID]bool) []chat.ServerID {
	var out []chat.ServerID
	for _, id := range ids {
		if live[chat.ServerID(id)] {
			out = append(out, chat.ServerID(id))
		}
	}
	return out
}

// SetGroupGateway adds gateway s to (on) or removes it from the membership
// index of each of convs, in one round trip.
func (t *Table) SetGroupGateway(ctx context.Context, s chat.ServerID, convs []chat.ConvID, on bool) error {
	if len(convs) == 0 {
		return nil
	}
	pipe := t.rdb.Pipeline()
	for _, c := range convs {
		if on {
			pipe.SAdd(ctx, t.groupGatewaysKey(c), string(s))
		} else {
			pipe.SRem(ctx, t.groupGatewaysKey(c), string(s))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("group gateway %s: %w", s, err)
	}
	return nil
}

// MarkSeen records that u's last session closed at t.
func (t *Table) MarkSeen(ctx context.Context, u chat.UserID, at time.Time) error {
	return t.rdb.Set(ctx, t.seenKey(u), at.UnixMilli(), 0).Err()
}

// LastSeen returns when u's last session closed (0: never recorded) and
// whether u has a session on a live gateway now.
func (t *Table) LastSeen(ctx context.Context, u chat.UserID) (seen int64, online bool, err error) {
	where, err := t.Locate(ctx, []chat.UserID{u})
	if err != nil {
		return 0, false, err
	}
	v, err := t.rdb.Get(ctx, t.seenKey(u)).Result()
	if err != nil && err != redis.Nil {
		return 0, false, fmt.Errorf("last seen %s: %w", u, err)
	}
	seen, _ = strconv.ParseInt(v, 10, 64)
	return seen, len(where) > 0, nil
}
