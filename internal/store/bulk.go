package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/route"
)

// Bulk is the fast path of a rebuild: it aggregates a bounded chunk of
// chat-log records in Go and writes the chunk to the views in large
// pipelines, with one script per conversation where the window, a
// tombstone or a raise-only value needs atomicity. A record applied alone
// (Store.Apply) is a chunk of one. Every
// write is idempotent and raise-only, so routers applying the live log at
// the same time are harmless. Not safe for concurrent use.
type Bulk struct {
	s       *Store
	topic   string
	convs   map[chat.ConvID]*convChunk
	applied map[int]int64 // partition → next offset
	records int
}

// convChunk is what a chunk holds for one conversation.
type convChunk struct {
	msgs   map[string]*bulkMsg // by id, first occurrence
	maxSeq int64
	index  map[int64]string // seq → first log position
	dels   []bulkDel
	marks  map[string]int64 // rcpt field → highest mark
	active map[chat.UserID]int64
}

type bulkMsg struct {
	m      *chat.Message
	offset int64 // first occurrence (a conversation lives in one partition)
}

type bulkDel struct {
	id     string
	offset int64
}

// NewBulk returns an empty chunk of records of topic.
func (s *Store) NewBulk(topic string) *Bulk {
	return &Bulk{s: s, topic: topic, convs: map[chat.ConvID]*convChunk{}, applied: map[int]int64{}}
}

// Len returns how many records the chunk holds.
func (b *Bulk) Len() int { return b.records }

func (b *Bulk) conv(c chat.ConvID) *convChunk {
	cc := b.convs[c]
	if cc == nil {
		cc = &convChunk{msgs: map[string]*bulkMsg{}, index: map[int64]string{}, marks: map[string]int64{}, active: map[chat.UserID]int64{}}
		b.convs[c] = cc
	}
	return cc
}

// Add aggregates one record found at (partition, offset) of the chunk's
// topic; lr nil is a record that materializes nothing (undecodable or of
// an unknown type). Records of a partition must come in log order.
func (b *Bulk) Add(lr *chat.LogRecord, partition int, offset int64) {
	b.records++
	if next := offset + 1; next > b.applied[partition] {
		b.applied[partition] = next
	}
	if lr == nil {
		return
	}
	switch lr.Type {
	case chat.TypeMessage:
		m := lr.Message
		cc := b.conv(m.Conv)
		if _, ok := cc.msgs[m.ID]; !ok {
			cc.msgs[m.ID] = &bulkMsg{m: m, offset: offset}
		}
		if _, ok := cc.index[m.Seq]; !ok {
			cc.index[m.Seq] = IndexValue(partition, offset)
		}
		cc.maxSeq = max(cc.maxSeq, m.Seq)
		if x, y, ok := m.Conv.Members(); ok {
			cc.active[x] = max(cc.active[x], m.TS)
			cc.active[y] = max(cc.active[y], m.TS)
		}
	case chat.TypeReceipt:
		r := lr.Receipt
		cc := b.conv(r.Conv)
		f := string(r.User) + "|delivered"
		cc.marks[f] = max(cc.marks[f], r.Seq)
		if r.Status == "read" {
			f = string(r.User) + "|read"
			cc.marks[f] = max(cc.marks[f], r.Seq)
		}
	case chat.TypeDelete:
		cc := b.conv(lr.Delete.Conv)
		cc.dels = append(cc.dels, bulkDel{id: lr.Delete.ID, offset: offset})
	}
}

// applyBulk writes one conversation's share of a chunk, as the per-record
// scripts would have: each message of the chunk's window is added once
// (keyed by id) with its body, or its tombstone when the chunk deletes it;
// a tombstone also replaces a body already there, never the reverse. Then
// the window is trimmed to ARGV[1] (HDEL of the trimmed bodies), trim:
// raised to the highest seq trimmed here or in Go (ARGV[3]), the seq
// counter raised to ARGV[2], the deletes of messages of earlier chunks
// applied to those still in the window, the receipt marks raised (clamped
// to the seq counter), and
// the seq index written (as HSETNX would: the first position in the log
// wins).
//
// KEYS: hist, msg, seq, trim, rcpt, then the index blocks.
// ARGV: window, max seq, trimmed in Go, n, n × (seq, id, body, tomb),
// d, d × id, r, r × (field, mark), x, x × (index block, seq, position).
var applyBulk = redis.NewScript(`
local function raise(key, v)
  local cur = tonumber(redis.call('GET', key) or '0')
  if tonumber(v) > cur then redis.call('SET', key, v) end
end
-- call runs cmd on key with the arguments args[from..to] in slices, and
-- returns the concatenated replies of the commands that return arrays.
local function call(cmd, key, flag, args, from, to)
  local out = {}
  for a = from, to, 2000 do
    local r
    if flag then
      r = redis.call(cmd, key, flag, unpack(args, a, math.min(a + 1999, to)))
    else
      r = redis.call(cmd, key, unpack(args, a, math.min(a + 1999, to)))
    end
    if type(r) == 'table' then for _, v in ipairs(r) do out[#out+1] = v end end
  end
  return out
end
local w = tonumber(ARGV[1])
local n = tonumber(ARGV[4])
if n > 0 then
  local ids, add = {}, {}
  for k = 0, n - 1 do
    local j = 5 + 4 * k
    ids[#ids+1] = ARGV[j+1]
    add[#add+1] = ARGV[j]
    add[#add+1] = ARGV[j+1]
  end
  local had = call('ZMSCORE', KEYS[1], nil, ids, 1, #ids)
  call('ZADD', KEYS[1], 'NX', add, 1, #add)
  local set = {}
  for k = 0, n - 1 do
    local j = 5 + 4 * k
    if not had[k+1] or ARGV[j+3] == '1' then
      set[#set+1] = ARGV[j+1]
      set[#set+1] = ARGV[j+2]
    end
  end
  if #set > 0 then call('HSET', KEYS[2], nil, set, 1, #set) end
end
local i = 5 + 4 * n
n = redis.call('ZCARD', KEYS[1])
if n > w then
  local old = redis.call('ZRANGE', KEYS[1], 0, n - w - 1, 'WITHSCORES')
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - w - 1)
  local ids = {}
  for k = 1, #old, 2 do
    ids[#ids+1] = old[k]
    if #ids == 500 then redis.call('HDEL', KEYS[2], unpack(ids)); ids = {} end
  end
  if #ids > 0 then redis.call('HDEL', KEYS[2], unpack(ids)) end
  raise(KEYS[4], old[#old])
end
if tonumber(ARGV[3]) > 0 then raise(KEYS[4], ARGV[3]) end
raise(KEYS[3], ARGV[2])
local d = tonumber(ARGV[i])
i = i + 1
for _ = 1, d do
  local v = redis.call('HGET', KEYS[2], ARGV[i])
  if v then
    local m = cjson.decode(v)
    if not m.deleted then
      m.body = ''
      m.deleted = true
      redis.call('HSET', KEYS[2], ARGV[i], cjson.encode(m))
    end
  end
  i = i + 1
end
local r = tonumber(ARGV[i])
i = i + 1
-- A mark is clamped to the seq counter, raised above, as the per-record
-- apply clamps it: a receipt beyond the conversation's latest seq never
-- comes back from a replay.
local counter = redis.call('GET', KEYS[3]) or '0'
for _ = 1, r do
  local cur = tonumber(redis.call('HGET', KEYS[5], ARGV[i]) or '0')
  local mark = ARGV[i+1]
  if tonumber(mark) > tonumber(counter) then mark = counter end
  if tonumber(mark) > cur then redis.call('HSET', KEYS[5], ARGV[i], mark) end
  i = i + 2
end
-- The index entries come grouped by block: per block, the fields not
-- there yet are set at once.
local x = tonumber(ARGV[i])
i = i + 1
local k = 0
while k < x do
  local key, fields, vals = ARGV[i + 3*k], {}, {}
  while k < x and ARGV[i + 3*k] == key do
    fields[#fields+1] = ARGV[i + 3*k + 1]
    vals[#vals+1] = ARGV[i + 3*k + 2]
    k = k + 1
  end
  local cur = redis.call('HMGET', KEYS[tonumber(key)], unpack(fields))
  local set = {}
  for f = 1, #fields do
    if not cur[f] then
      set[#set+1] = fields[f]
      set[#set+1] = vals[f]
    end
  end
  if #set > 0 then redis.call('HSET', KEYS[tonumber(key)], unpack(set)) end
end
return 1
`)

// bulkPipeline is how many commands one pipeline round trip carries, and
// bulkWriters how many pipelines a chunk is written with at once.
// A chunk with fewer than bulkMinPerWriter conversations per writer takes
// fewer writers.
const (
	bulkPipeline     = 1000
	bulkWriters      = 2
	bulkMinPerWriter = 64
)

// Write writes the chunk to the views, then raises the applied offsets of
// its partitions, and empties it. On error nothing is known about what was
// written; writing the same chunk again is harmless. Its scripts run by
// hash; a Redis that lost its script cache (a restart) gets them loaded
// and the chunk written again.
func (b *Bulk) Write(ctx context.Context) error {
	err := b.write(ctx)
	if err != nil && route.IsNoScript(err) {
		for _, sc := range []*redis.Script{applyBulk, markApplied} {
			if lerr := sc.Load(ctx, b.s.rdb).Err(); lerr != nil {
				return fmt.Errorf("bulk write: %w", lerr)
			}
		}
		err = b.write(ctx)
	}
	if err != nil {
		return err
	}
	clear(b.convs)
	clear(b.applied)
	b.records = 0
	return nil
}

func (b *Bulk) write(ctx context.Context) error {
	// Two pipelines on two connections, so that Redis executes one while
	// the other is being built: conversations are independent. A small
	// chunk (the live log's) takes one.
	convs := make([]chat.ConvID, 0, len(b.convs))
	for c := range b.convs {
		convs = append(convs, c)
	}
	writers := min(bulkWriters, max(1, len(convs)/bulkMinPerWriter))
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := &pipe{ctx: ctx, p: b.s.rdb.Pipeline()}
			for i := w; i < len(convs) && errs[w] == nil; i += writers {
				errs[w] = b.writeConv(p, convs[i], b.convs[convs[i]])
			}
			if errs[w] == nil {
				errs[w] = p.flush()
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if len(b.applied) == 0 {
		return nil
	}
	p := &pipe{ctx: ctx, p: b.s.rdb.Pipeline()}
	for part, next := range b.applied {
		pa, nx := posArgs(Position{Topic: b.topic, Partition: part, Offset: next - 1})
		if err := p.add(markApplied.EvalSha(ctx, p.p, []string{b.s.appliedKey(b.topic)}, pa, nx)); err != nil {
			return err
		}
	}
	return p.flush()
}

func (b *Bulk) writeConv(p *pipe, conv chat.ConvID, cc *convChunk) error {
	s := b.s
	c := string(conv)
	msgs := make([]*bulkMsg, 0, len(cc.msgs))
	for _, m := range cc.msgs {
		msgs = append(msgs, m)
	}
	sort.Slice(msgs, func(i, j int) bool { return msgs[i].m.Seq < msgs[j].m.Seq })
	var trimmed int64
	if extra := len(msgs) - s.cfg.HistoryWindow; extra > 0 {
		trimmed = msgs[extra-1].m.Seq // older than the chunk's own window: never in Redis
		msgs = msgs[extra:]
	}
	tomb := make(map[string]bool)
	var later []string // deletes of messages of earlier chunks
	for _, d := range cc.dels {
		if m, ok := cc.msgs[d.id]; ok {
			tomb[d.id] = tomb[d.id] || d.offset > m.offset // a delete before the message finds nothing
		} else {
			later = append(later, d.id)
		}
	}
	args := make([]any, 0, 6+4*len(msgs)+len(later)+2*len(cc.marks))
	args = append(args, s.cfg.HistoryWindow, cc.maxSeq, trimmed, len(msgs))
	for _, bm := range msgs {
		m, flag := bm.m, "0"
		if tomb[m.ID] {
			cp := *m
			cp.Body, cp.Deleted = "", true
			m, flag = &cp, "1"
		}
		body, err := json.Marshal(m)
		if err != nil {
			return fmt.Errorf("bulk write %s: %w", m.ID, err)
		}
		args = append(args, m.Seq, m.ID, body, flag)
	}
	args = append(args, len(later))
	for _, id := range later {
		args = append(args, id)
	}
	args = append(args, len(cc.marks))
	for f, v := range cc.marks {
		args = append(args, f, v)
	}
	keys := []string{s.ckey("hist", conv), s.ckey("msg", conv), route.SeqKey(s.cfg.Prefix, conv), s.ckey("trim", conv), s.ckey("rcpt", conv)}
	seqs := make([]int64, 0, len(cc.index))
	for seq := range cc.index {
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs) // grouped by block
	args = append(args, len(seqs))
	block := int64(-1)
	for _, seq := range seqs {
		if seq/IndexBlock != block {
			block = seq / IndexBlock
			keys = append(keys, s.IndexKey(conv, seq))
		}
		args = append(args, len(keys), strconv.FormatInt(seq, 10), cc.index[seq])
	}
	if err := p.add(applyBulk.EvalSha(p.ctx, p.p, keys, args...)); err != nil {
		return err
	}
	// The message index (id → conv|seq): one
	// HSET per index hash (the value of an id never changes, so HSET is
	// HSETNX's equal here).
	byKey := make(map[string][]any)
	for id, bm := range cc.msgs {
		k := s.MessageIndexKey(id)
		byKey[k] = append(byKey[k], id, MessageIndexValue(conv, bm.m.Seq))
	}
	for k, fields := range byKey {
		if err := p.add(p.p.HSet(p.ctx, k, fields...)); err != nil {
			return err
		}
	}
	if len(cc.dels) > 0 {
		ids := make([]any, len(cc.dels))
		for i, d := range cc.dels {
			ids[i] = d.id
		}
		if err := p.add(p.p.SAdd(p.ctx, s.DeletedKey(conv), ids...)); err != nil {
			return err
		}
	}
	for u, ts := range cc.active {
		if err := p.add(p.p.ZAddGT(p.ctx, s.key("convs", string(u)), redis.Z{Score: float64(ts), Member: c})); err != nil {
			return err
		}
	}
	return nil
}

// pipe sends queued commands in round trips of bulkPipeline.
type pipe struct {
	ctx context.Context
	p   redis.Pipeliner
	n   int
}

func (p *pipe) add(redis.Cmder) error {
	p.n++
	if p.n < bulkPipeline {
		return nil
	}
	return p.flush()
}

func (p *pipe) flush() error {
	if p.n == 0 {
		return nil
	}
	p.n = 0
	_, err := p.p.Exec(p.ctx)
	if err != nil && err != redis.Nil {
		return fmt.Errorf("bulk write: %w", err)
	}
	return nil
}

// BulkEntities materializes chat-state records (users and conversations)
// as ApplyUser and ApplyConversation do, pipelined; pos[i] is where recs[i]
// was found. Other record types only raise the applied offset.
func (s *Store) BulkEntities(ctx context.Context, recs []*chat.StateRecord, pos []Position) error {
	if err := s.applyEntities(ctx, recs, pos); err != nil {
		return fmt.Errorf("bulk entities: %w", err)
	}
	return nil
}

// applyEntities writes entity records in three pipelined steps, each
// after the last has been answered: the entities' own scripts, then what
// their replies call for in other keys (indexes, members' conversation
// lists), then the applied offsets. On a Redis Cluster those are other
// slots, so no script can do it all; every step is idempotent, and the
// set of users a group must leave is kept beside it until they have, so a
// record applied again after a failure between the steps finishes the
// job.
func (s *Store) applyEntities(ctx context.Context, recs []*chat.StateRecord, pos []Position) error {
	for _, sc := range []*redis.Script{applyEntity, markApplied} {
		if err := sc.Load(ctx, s.rdb).Err(); err != nil {
			return err
		}
	}
	for start := 0; start < len(recs); start += bulkPipeline {
		end := min(start+bulkPipeline, len(recs))
		var writes []*entityWrite
		var cmds []*redis.Cmd
		p := s.rdb.Pipeline()
		for i := start; i < end; i++ {
			sr := recs[i]
			var desc any
			switch {
			case sr != nil && sr.Type == chat.TypeUser && sr.User != nil:
				desc = sr.User
			case sr != nil && sr.Type == chat.TypeConversation && sr.Conversation != nil:
				desc = sr.Conversation
			default:
				continue
			}
			w, err := s.newEntityWrite(desc)
			if err != nil {
				return err
			}
			writes = append(writes, w)
			cmds = append(cmds, applyEntity.EvalSha(ctx, p, w.keys, w.args...))
		}
		if len(cmds) > 0 {
			if _, err := p.Exec(ctx); err != nil {
				return err
			}
			for i, w := range writes {
				reply, err := cmds[i].Slice()
				if err != nil || len(reply) == 0 {
					return fmt.Errorf("apply %s: %v", w.id, err)
				}
				s.after(ctx, p, w, reply)
			}
			if _, err := p.Exec(ctx); err != nil {
				return err
			}
		}
		applied := map[string]map[int]int64{}
		for i := start; i < end; i++ {
			if pos[i].Topic == "" {
				continue
			}
			if applied[pos[i].Topic] == nil {
				applied[pos[i].Topic] = map[int]int64{}
			}
			applied[pos[i].Topic][pos[i].Partition] = max(applied[pos[i].Topic][pos[i].Partition], pos[i].Offset)
		}
		for topic, parts := range applied {
			for part, off := range parts {
				pa, nx := posArgs(Position{Topic: topic, Partition: part, Offset: off})
				markApplied.EvalSha(ctx, p, []string{s.appliedKey(topic)}, pa, nx)
			}
		}
		if _, err := p.Exec(ctx); err != nil {
			return err
		}
	}
	return nil
}
