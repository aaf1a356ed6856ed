package router

import (
	"context"
	"fmt"
	"time"

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
// The seq counters are only raised, never deleted; the dedupe records of
// the last 24 h are restored; then the restored marker is set.
func (r *Router) Rebuild(ctx context.Context) (RebuildStats, error) {
	var st RebuildStats
	release, err := r.store.LockRebuild(ctx, 10*time.Minute)
	if err != nil {
		return st, fmt.Errorf("rebuild: %w", err)
	}
	defer release()
	if err := r.admin.EnsureTopics(ctx, r.topics()...); err != nil {
		return st, fmt.Errorf("rebuild: %w", err)
	}
	type span struct{ from, to map[int]int64 }
	spans := make(map[string]span)
	for _, topic := range []string{r.cfg.ChatLogTopic, r.cfg.ChatStateTopic} {
		end, err := r.admin.EndOffsets(ctx, topic)
		if err != nil {
			return st, fmt.Errorf("rebuild: %w", err)
		}
		first, err := r.admin.FirstOffsets(ctx, topic)
		if err != nil {
			return st, fmt.Errorf("rebuild: %w", err)
		}
		spans[topic] = span{first, end}
	}
	if st.KeysDeleted, err = r.store.FlushViews(ctx); err != nil {
		return st, fmt.Errorf("rebuild: %w", err)
	}
	for topic, sp := range spans {
		for p, to := range sp.to {
			from := sp.from[p]
			if from > 0 && topic == r.cfg.ChatLogTopic {
				r.log.Warn("rebuild: the log no longer holds the start of a partition", "partition", p, "first_offset", from)
			}
			err := kafkabus.Replay(ctx, r.kafka, topic, p, from, to, func(ctx context.Context, rec kafkabus.Record) error {
				if _, err := r.applyKafka(ctx, rec, store.Position{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset}); err != nil {
					return err
				}
				if topic == r.cfg.ChatLogTopic {
					if lr, err := chat.DecodeLogRecord(rec.Value); err == nil && lr.Type == chat.TypeMessage {
						if err := r.table.RestoreDedupe(ctx, lr.Message); err != nil {
							return err
						}
					}
				}
				st.Records++
				return nil
			})
			if err != nil {
				return st, fmt.Errorf("rebuild: %w", err)
			}
		}
	}
	if err := r.table.MarkRestored(ctx); err != nil {
		return st, fmt.Errorf("rebuild: %w", err)
	}
	r.log.Info("rebuild done", "keys_deleted", st.KeysDeleted, "records", st.Records)
	return st, nil
}

// restoreIfLost rebuilds the views when the restored marker is missing:
// Redis lost its data, and until the seq counters are raised from the log
// the gateways refuse sends. An empty log needs no rebuild.
func (r *Router) restoreIfLost(ctx context.Context) {
	ok, err := r.table.MarkRestoredIfLogEmpty(ctx, func(ctx context.Context) (map[int]int64, error) {
		return r.admin.EndOffsets(ctx, r.cfg.ChatLogTopic)
	})
	if err != nil || ok {
		return
	}
	r.log.Warn("Redis lost its state; rebuilding it from the log")
	if _, err := r.Rebuild(ctx); err != nil {
		r.log.Warn("automatic rebuild failed; retrying on the next sweep", "err", err)
	}
}
