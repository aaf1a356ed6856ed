package history

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/kafkabus"
	"github.com/switchboard-chat/switchboard/internal/store"
)

const conv = chat.ConvID("dm:alice:bob")

// fake is one conversation whose messages have the given seqs (gaps are
// failed sends): the newest `window` are in the Redis window, all are in
// partition 2 of the log at offset 10*seq, and the log no longer retains
// offsets below first.
type fake struct {
	msgs    map[int64]*chat.Message
	window  int
	first   int64
	deleted map[string]bool
	reads   int // ReadAt calls
}

func newFake(seqs []int64, window int) *fake {
	f := &fake{msgs: map[int64]*chat.Message{}, window: window, deleted: map[string]bool{}}
	for _, s := range seqs {
		f.msgs[s] = &chat.Message{ID: fmt.Sprintf("id%d", s), Conv: conv, Seq: s, From: "alice", Body: fmt.Sprintf("b%d", s)}
	}
	return f
}

func (f *fake) sorted() []int64 {
	var out []int64
	for s := range f.msgs {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

func (f *fake) inWindow() []int64 {
	all := f.sorted()
	return all[max(0, len(all)-f.window):]
}

func (f *fake) Trimmed(context.Context, chat.ConvID) (int64, error) {
	all := f.sorted()
	if len(all) <= f.window {
		return 0, nil
	}
	return all[len(all)-f.window-1], nil
}

func (f *fake) copyOf(s int64) *chat.Message {
	m := *f.msgs[s]
	if f.deleted[m.ID] {
		m.Body, m.Deleted = "", true
	}
	return &m
}

func (f *fake) History(_ context.Context, _ chat.ConvID, after int64, limit int) ([]*chat.Message, error) {
	var out []*chat.Message
	for _, s := range f.inWindow() {
		if s > after && len(out) < limit {
			out = append(out, f.copyOf(s))
		}
	}
	return out, nil
}

func (f *fake) Before(_ context.Context, _ chat.ConvID, before int64, limit int) ([]*chat.Message, error) {
	w := f.inWindow()
	var out []*chat.Message
	for i := len(w) - 1; i >= 0 && len(out) < limit; i-- {
		if w[i] < before {
			out = append(out, f.copyOf(w[i]))
		}
	}
	return out, nil
}

func (f *fake) Locate(_ context.Context, _ chat.ConvID, from, to int64) ([]store.LogPos, error) {
	var out []store.LogPos
	for _, s := range f.sorted() {
		if s >= from && s <= to {
			out = append(out, store.LogPos{Seq: s, Partition: 2, Offset: 10 * s})
		}
	}
	return out, nil
}

func (f *fake) Deleted(_ context.Context, _ chat.ConvID, ids []string) ([]bool, error) {
	out := make([]bool, len(ids))
	for i, id := range ids {
		out[i] = f.deleted[id]
	}
	return out, nil
}

func (f *fake) ReadAt(_ context.Context, partition int, offsets []int64) ([]kafkabus.Record, error) {
	f.reads++
	if partition != 2 {
		return nil, fmt.Errorf("partition %d", partition)
	}
	var out []kafkabus.Record
	for _, o := range offsets {
		if o < f.first {
			return nil, kafkabus.ErrOutOfRange
		}
		m := *f.msgs[o/10] // the log keeps the original body
		out = append(out, kafkabus.Record{Partition: 2, Offset: o, Value: (&chat.LogRecord{Type: chat.TypeMessage, Message: &m}).Encode()})
	}
	return out, nil
}

func (f *fake) FirstOffset(context.Context, int) (int64, error) { return f.first, nil }

func seqsOf(msgs []*chat.Message) []int64 {
	out := make([]int64, len(msgs))
	for i, m := range msgs {
		out[i] = m.Seq
	}
	return out
}

func span(from, to int64, skip ...int64) []int64 {
	var out []int64
	for s := from; s <= to; s++ {
		if !slices.Contains(skip, s) {
			out = append(out, s)
		}
	}
	return out
}

// readAll pages from start until done says a page was the last, checking
// every page's size, and returns the seqs in the order they came.
func readAll(t *testing.T, limit int, start int64, page func(cursor int64) (Page, error), done func(p Page, cursor int64) bool) (got []int64, truncated int64) {
	t.Helper()
	cursor := start
	for pages := 0; pages <= 1000; pages++ {
		p, err := page(cursor)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Messages) > limit {
			t.Fatalf("a page of %d with limit %d", len(p.Messages), limit)
		}
		got = append(got, seqsOf(p.Messages)...)
		truncated = max(truncated, p.Truncated)
		if done(p, cursor) {
			return got, truncated
		}
		cursor = p.Next
	}
	t.Fatal("paging never finished")
	return nil, 0
}

// readAllAfter pages with After from `after` until the reader says done.
func readAllAfter(t *testing.T, r *Reader, after int64, limit int) ([]int64, int64) {
	t.Helper()
	return readAll(t, limit, after,
		func(c int64) (Page, error) { return r.After(context.Background(), conv, c, limit) },
		func(p Page, c int64) bool { return p.Next <= c })
}

// readAllBefore pages with Before from the newest until the start.
func readAllBefore(t *testing.T, r *Reader, limit int) ([]int64, int64) {
	t.Helper()
	return readAll(t, limit, 0,
		func(c int64) (Page, error) { return r.Before(context.Background(), conv, c, limit) },
		func(p Page, c int64) bool {
			if p.Next != 0 && c != 0 && p.Next >= c {
				t.Fatalf("Before(%d) returned next %d: no progress", c, p.Next)
			}
			return p.Next == 0
		})
}

func reversed(s []int64) []int64 {
	out := slices.Clone(s)
	slices.Reverse(out)
	return out
}

func TestPagingAfterReturnsEveryMessageOnceAcrossTheLogAndTheWindow(t *testing.T) {
	gaps := []int64{7, 8, 9, 150, 301}
	all := span(1, 400, gaps...)
	for _, tc := range []struct {
		window, limit int
		after         int64
	}{{100, 50, 0}, {100, 7, 0}, {100, 50, 123}, {1000, 50, 0}, {1, 100, 0}, {100, 50, 400}} {
		t.Run(fmt.Sprintf("window %d limit %d after %d", tc.window, tc.limit, tc.after), func(t *testing.T) {
			f := newFake(all, tc.window)
			r := New(f, f)
			got, truncated := readAllAfter(t, r, tc.after, tc.limit)
			var want []int64
			for _, s := range all {
				if s > tc.after {
					want = append(want, s)
				}
			}
			if !slices.Equal(got, want) || truncated != 0 {
				t.Fatalf("got %v (truncated %d), want %v", got, truncated, want)
			}
		})
	}
}

func TestPagingBeforeReturnsEveryMessageOnceNewestFirst(t *testing.T) {
	for _, all := range [][]int64{span(1, 333, 1, 2, 64, 65, 200), span(1, 100)} {
		for _, window := range []int{1, 10, 50, 100, 1000} {
			for _, limit := range []int{1, 13, 33, 50, 100} {
				t.Run(fmt.Sprintf("%d messages window %d limit %d", len(all), window, limit), func(t *testing.T) {
					f := newFake(all, window)
					got, truncated := readAllBefore(t, New(f, f), limit)
					if !slices.Equal(got, reversed(all)) || truncated != 0 {
						t.Fatalf("got %v (truncated %d)", got, truncated)
					}
				})
			}
		}
	}
}

func TestWhatTheLogNoLongerRetainsIsReportedAsTruncated(t *testing.T) {
	all := span(1, 300)
	f := newFake(all, 100)
	f.first = 10 * 51 // seqs 1..50 are gone
	r := New(f, f)
	got, truncated := readAllAfter(t, r, 0, 50)
	if !slices.Equal(got, span(51, 300)) || truncated != 50 {
		t.Fatalf("after: got %d messages from %v, truncated %d", len(got), got[:1], truncated)
	}
	got, truncated = readAllBefore(t, r, 40)
	if !slices.Equal(got, reversed(span(51, 300))) || truncated != 50 {
		t.Fatalf("before: got %d messages, truncated %d", len(got), truncated)
	}
}

func TestDeletedMessagesAreTombstonesOnBothPaths(t *testing.T) {
	f := newFake(span(1, 200), 50)
	f.deleted["id5"], f.deleted["id190"] = true, true
	r := New(f, f)
	p, err := r.After(context.Background(), conv, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range p.Messages {
		if (m.Seq == 5) != m.Deleted || m.Deleted && m.Body != "" || !m.Deleted && m.Body != fmt.Sprintf("b%d", m.Seq) {
			t.Fatalf("log path: %+v", m)
		}
	}
	p, err = r.Before(context.Background(), conv, 0, 20)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range p.Messages {
		if (m.Seq == 190) != m.Deleted {
			t.Fatalf("window path: %+v", m)
		}
	}
}

func TestAPageFromTheLogCostsOneReadPerPartition(t *testing.T) {
	f := newFake(span(1, 5000), 1000)
	r := New(f, f)
	if _, err := r.After(context.Background(), conv, 0, 50); err != nil {
		t.Fatal(err)
	}
	if f.reads != 1 {
		t.Fatalf("one page read the log %d times", f.reads)
	}
}
