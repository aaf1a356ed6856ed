package gateway

import (
	"context"
	"log/slog"
	"time"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/history"
	"github.com/switchboard-chat/switchboard/internal/protocol"
)

// historyStage answers history requests.
type historyStage struct {
	members members
	views   *views
	reader  *history.Reader
	log     *slog.Logger
	m       *metrics
}

// page answers a history request with one page, newest first: from the
// window while it reaches, then from the log through the seq index, down
// to seq 1 for as long as Kafka retains the messages.
func (h *historyStage) page(ctx context.Context, r requester, in *protocol.Inbound) {
	user, _ := r.who()
	if err := h.members.access(ctx, user, in.Conv); err != nil {
		r.reply(protocol.EncodeError(err))
		return
	}
	if !h.views.complete(ctx, r) {
		return
	}
	start := time.Now()
	p, err := h.read(ctx, in.Conv, in.Before, in.Limit, r.gone())
	if err != nil {
		h.log.Warn("history failed", "user", user, "conv", in.Conv, "err", err)
		r.reply(protocol.EncodeError(&protocol.Error{
			Code: protocol.CodeUnavailable, Message: "history failed, retry: message store unavailable", RetryAfterMS: 1000,
		}))
		return
	}
	h.m.historyPages.Observe(time.Since(start).Seconds())
	r.reply(protocol.EncodeHistory(protocol.History{
		Conv: in.Conv, Before: in.Before, Messages: p.Messages, NextBefore: p.Next, Truncated: p.Truncated,
	}))
}

// read reads one page of conv. The newest page (before 0) first waits for
// the seqs handed out in conv, so that it holds what was acknowledged
// before it was asked for (at most SyncSeqWait for a seq whose send
// failed), or until done closes. The REST API reads its pages here too.
func (h *historyStage) read(ctx context.Context, conv chat.ConvID, before int64, limit int, done <-chan struct{}) (history.Page, error) {
	if before == 0 {
		if _, err := h.views.handedOut(ctx, []chat.ConvID{conv}, done); err != nil {
			return history.Page{}, err
		}
	}
	return h.reader.Before(ctx, conv, before, limit)
}
