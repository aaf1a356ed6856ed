package router

import (
	"context"
	"fmt"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/kafkabus"
	"github.com/switchboard-chat/switchboard/internal/store"
)

// RebuildStats says what a rebuild did.
type RebuildStats struct {
	KeysDeleted int
	Records     int
}

// Rebuild deletes the materialized views and replays chat-log from its
// earliest retained offsets up to its end at the start of the rebuild,
// outside the router's consumer group. Running routers may apply records
// at the same time; every apply is idempotent, so the result is the same.
// The seq counters are only raised, never deleted.
func (r *Router) Rebuild(ctx context.Context) (RebuildStats, error) {
	var st RebuildStats
	end, err := r.admin.EndOffsets(ctx, r.cfg.ChatLogTopic)
	if err != nil {
		return st, fmt.Errorf("rebuild: %w", err)
	}
	first, err := r.admin.FirstOffsets(ctx, r.cfg.ChatLogTopic)
	if err != nil {
		return st, fmt.Errorf("rebuild: %w", err)
	}
	if st.KeysDeleted, err = r.store.FlushViews(ctx); err != nil {
		return st, fmt.Errorf("rebuild: %w", err)
	}
	for p, to := range end {
		from := first[p]
		if from > 0 {
			r.log.Warn("rebuild: the log no longer holds the start of a partition", "partition", p, "first_offset", from)
		}
		err := kafkabus.Replay(ctx, r.kafka, r.cfg.ChatLogTopic, p, from, to, func(ctx context.Context, rec kafkabus.Record) error {
			lr, err := chat.DecodeLogRecord(rec.Value)
			if err != nil {
				lr = nil
			}
			if _, err := r.applyRecord(ctx, lr, store.Position{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset}); err != nil {
				return err
			}
			st.Records++
			return nil
		})
		if err != nil {
			return st, fmt.Errorf("rebuild: %w", err)
		}
	}
	r.log.Info("rebuild done", "keys_deleted", st.KeysDeleted, "records", st.Records)
	return st, nil
}
