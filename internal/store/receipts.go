package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/internal/chat"
)

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
		cmds[i] = pipe.HGetAll(ctx, s.ckey("rcpt", c))
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
