// Package history reads a conversation's messages wherever they are: the
// recent window from the Redis views, older ones from chat-log itself
// through the seq index the router keeps. Sync, the history frame and the
// REST history endpoint all read through it.
package history

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/kafkabus"
	"github.com/switchboard-chat/switchboard/internal/store"
)

// MaxPage is the most messages one page holds.
const MaxPage = 100

// Views is what the reader needs of the Redis views.
type Views interface {
	History(ctx context.Context, conv chat.ConvID, after int64, limit int) ([]*chat.Message, error)
	Before(ctx context.Context, conv chat.ConvID, before int64, limit int) ([]*chat.Message, error)
	Trimmed(ctx context.Context, conv chat.ConvID) (int64, error)
	Locate(ctx context.Context, conv chat.ConvID, from, to int64) ([]store.LogPos, error)
	Deleted(ctx context.Context, conv chat.ConvID, ids []string) ([]bool, error)
}

// Log is what the reader needs of chat-log: random access by offset.
type Log interface {
	ReadAt(ctx context.Context, partition int, offsets []int64) ([]kafkabus.Record, error)
	FirstOffset(ctx context.Context, partition int) (int64, error)
}

// Reader serves pages of history. Safe for concurrent use.
type Reader struct {
	views Views
	log   Log
}

// New returns a Reader.
func New(views Views, log Log) *Reader { return &Reader{views: views, log: log} }

// Page is one page of a conversation's history.
type Page struct {
	// Messages are in seq order: ascending for After, descending for
	// Before. Deleted messages are tombstones (empty body, Deleted set).
	Messages []*chat.Message
	// Next is where the next page starts: After continues after it,
	// Before continues below it. It moves even when a page is empty (all
	// of its range was gaps or no longer retained); 0 from Before means
	// the start was reached.
	Next int64
	// Truncated is the highest seq in the page's range that chat-log no
	// longer retains (0 when none): those messages are gone for good.
	Truncated int64
}

// After returns up to limit messages of conv with seq > after, oldest
// first. Next is the last seq covered; a page with Next == after means
// there is nothing more.
func (r *Reader) After(ctx context.Context, conv chat.ConvID, after int64, limit int) (Page, error) {
	limit = clamp(limit)
	for {
		trimmed, err := r.views.Trimmed(ctx, conv)
		if err != nil {
			return Page{}, err
		}
		if after < trimmed {
			return r.logAfter(ctx, conv, after, trimmed, limit)
		}
		msgs, err := r.views.History(ctx, conv, after, limit)
		if err != nil {
			return Page{}, err
		}
		// The window may have been trimmed past after while it was read:
		// then what fell out is read from the log instead.
		if again, err := r.views.Trimmed(ctx, conv); err != nil {
			return Page{}, err
		} else if again > trimmed && after < again {
			continue
		}
		p := Page{Messages: msgs, Next: after}
		if len(msgs) > 0 {
			p.Next = msgs[len(msgs)-1].Seq
		}
		return p, nil
	}
}

// logAfter reads up to limit messages with seq in (after, upto] from the
// log. It widens the seq range when gaps leave a page short, a bounded
// number of times.
func (r *Reader) logAfter(ctx context.Context, conv chat.ConvID, after, upto int64, limit int) (Page, error) {
	var pos []store.LogPos
	from := after + 1
	to := from - 1
	for tries := 0; len(pos) < limit && to < upto && tries < 4; tries++ {
		to = min(upto, to+int64(limit-len(pos)))
		found, err := r.views.Locate(ctx, conv, from, to)
		if err != nil {
			return Page{}, err
		}
		pos = append(pos, found...)
		from = to + 1
	}
	if len(pos) > limit {
		pos, to = pos[:limit], pos[limit-1].Seq
	}
	msgs, truncated, err := r.read(ctx, conv, pos)
	if err != nil {
		return Page{}, err
	}
	return Page{Messages: msgs, Next: to, Truncated: truncated}, nil
}

// Before returns up to limit messages of conv with seq < before, newest
// first; before <= 0 means from the newest.
func (r *Reader) Before(ctx context.Context, conv chat.ConvID, before int64, limit int) (Page, error) {
	limit = clamp(limit)
	if before <= 0 {
		before = 1 << 62
	}
	trimmed, err := r.views.Trimmed(ctx, conv)
	if err != nil {
		return Page{}, err
	}
	var p Page
	if before-1 > trimmed {
		msgs, err := r.views.Before(ctx, conv, before, limit)
		if err != nil {
			return Page{}, err
		}
		// Keep only what is above the trim mark read first: anything
		// trimmed since is read from the log below.
		for _, m := range msgs {
			if m.Seq > trimmed {
				p.Messages = append(p.Messages, m)
			}
		}
		if len(p.Messages) == limit || trimmed == 0 {
			p.Next = nextBefore(p.Messages, trimmed)
			return p, nil
		}
		before = trimmed + 1
		if n := len(p.Messages); n > 0 {
			before = min(before, p.Messages[n-1].Seq)
		}
	}
	// The rest from the log: the highest seqs below before.
	need := limit - len(p.Messages)
	var pos []store.LogPos
	to := before - 1
	from := to + 1
	for tries := 0; len(pos) < need && from > 1 && tries < 4; tries++ {
		from = max(1, from-int64(need-len(pos)))
		found, err := r.views.Locate(ctx, conv, from, to)
		if err != nil {
			return Page{}, err
		}
		pos = append(found, pos...)
		to = from - 1
	}
	if len(pos) > need {
		pos = pos[len(pos)-need:]
		from = pos[0].Seq
	}
	msgs, truncated, err := r.read(ctx, conv, pos)
	if err != nil {
		return Page{}, err
	}
	for i := len(msgs) - 1; i >= 0; i-- {
		p.Messages = append(p.Messages, msgs[i])
	}
	p.Truncated = truncated
	if from > 1 && truncated == 0 {
		p.Next = from // older messages may exist; nothing below a truncation does
	}
	return p, nil
}

// nextBefore is the cursor after a window page: below its oldest message,
// or 0 when the window reaches back to seq 1 and nothing older exists.
func nextBefore(msgs []*chat.Message, trimmed int64) int64 {
	if len(msgs) == 0 {
		if trimmed > 0 {
			return trimmed + 1
		}
		return 0
	}
	oldest := msgs[len(msgs)-1].Seq
	if oldest <= 1 {
		return 0
	}
	return oldest
}

// read fetches the messages at pos (seq order) from the log, marks the
// deleted ones and reports the highest seq the log no longer holds.
func (r *Reader) read(ctx context.Context, conv chat.ConvID, pos []store.LogPos) ([]*chat.Message, int64, error) {
	if len(pos) == 0 {
		return nil, 0, nil
	}
	byPart := make(map[int][]int64)
	for _, p := range pos {
		byPart[p.Partition] = append(byPart[p.Partition], p.Offset)
	}
	var truncated int64
	found := make(map[int64]*chat.Message, len(pos)) // by seq
	for part, offsets := range byPart {
		recs, err := r.log.ReadAt(ctx, part, offsets)
		if errors.Is(err, kafkabus.ErrOutOfRange) {
			// Retention removed the start of the partition: what lies
			// below its first offset is gone; read the rest.
			first, ferr := r.log.FirstOffset(ctx, part)
			if ferr != nil {
				return nil, 0, fmt.Errorf("history %s: %w", conv, ferr)
			}
			var kept []int64
			for _, p := range pos {
				if p.Partition != part {
					continue
				}
				if p.Offset < first {
					truncated = max(truncated, p.Seq)
				} else {
					kept = append(kept, p.Offset)
				}
			}
			recs, err = r.log.ReadAt(ctx, part, kept)
		}
		if err != nil {
			return nil, 0, fmt.Errorf("history %s: %w", conv, err)
		}
		for _, rec := range recs {
			lr, err := chat.DecodeLogRecord(rec.Value)
			if err != nil || lr.Type != chat.TypeMessage || lr.Message.Conv != conv {
				continue // the index names only messages of conv; be strict anyway
			}
			if _, dup := found[lr.Message.Seq]; !dup {
				found[lr.Message.Seq] = lr.Message
			}
		}
	}
	msgs := make([]*chat.Message, 0, len(found))
	for _, m := range found {
		msgs = append(msgs, m)
	}
	sort.Slice(msgs, func(i, j int) bool { return msgs[i].Seq < msgs[j].Seq })
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	deleted, err := r.views.Deleted(ctx, conv, ids)
	if err != nil {
		return nil, 0, err
	}
	for i, d := range deleted {
		if d {
			msgs[i].Body, msgs[i].Deleted = "", true
		}
	}
	return msgs, truncated, nil
}

func clamp(limit int) int {
	if limit <= 0 {
		return 50
	}
	return min(limit, MaxPage)
}
