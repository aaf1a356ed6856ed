// Package route is the Redis routing table: sessions and their leases, the
// live-gateway registry, and the one-round-trip lookups of the send path.
package route

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/config/setting"
	"github.com/switchboard-chat/switchboard/internal/rediskit"
)

// Config configures a Table. Zero fields take the documented defaults.
type Config struct {
	// Prefix is prepended to every key. Default "sb:".
	Prefix string `key:"redis.prefix" default:"sb:"`
	// Lease is how long a gateway's registration lives without a
	// heartbeat; its sessions are ignored once it lapses. Default 15s.
	Lease time.Duration `key:"gateway.lease" default:"15s"`
	// DedupeTTL is how long a (user, cid) pair is remembered. Default 24h.
	DedupeTTL time.Duration `default:"24h"`
}

func (c *Config) setDefaults() { setting.Fill(c) }

// Table is the routing table. It is safe for concurrent use.
type Table struct {
	rdb redis.UniversalClient
	cfg Config
	now func() time.Time

	markerOnce  sync.Once
	marks       markerKeys
	sampleRound atomic.Uint32
}

// New returns a Table on rdb.
func New(rdb redis.UniversalClient, cfg Config) *Table {
	cfg.setDefaults()
	return &Table{rdb: rdb, cfg: cfg, now: time.Now}
}

// Lease returns the configured gateway lease.
func (t *Table) Lease() time.Duration { return t.cfg.Lease }

// Keys. Every key of one conversation carries the hash tag {<conv>}, so
// that the scripts that touch several of them (taking a seq, applying the
// log) run on one Redis Cluster slot; ConvKey builds them for this package
// and the store. Keys of users and gateways are untagged: no script or
// transaction spans two of them.
func (t *Table) gatewaysKey() string                  { return t.cfg.Prefix + "gw" }
func (t *Table) sessionsKey(u chat.UserID) string     { return t.cfg.Prefix + "sess:" + string(u) }
func (t *Table) gwSessionsKey(s chat.ServerID) string { return t.cfg.Prefix + "gwsess:" + string(s) }

// dedupeKey is the dedupe record of cid sent by u in conversation c: a
// client id identifies a send within its conversation.
func (t *Table) dedupeKey(u chat.UserID, c chat.ConvID, cid string) string {
	return ConvKey(t.cfg.Prefix, "dedupe", c) + ":" + string(u) + ":" + cid
}

// ConvKey is the key of kind for conversation c under prefix:
// <prefix><kind>:{<conv>}. The braces are a Redis Cluster hash tag: all
// of a conversation's keys hash to the slot of its id.
func ConvKey(prefix, kind string, c chat.ConvID) string {
	return prefix + kind + ":{" + string(c) + "}"
}

// SeqKey returns the key of conversation c's seq counter. The router raises
// it from the log, so it survives a Redis rebuild.
func (t *Table) SeqKey(c chat.ConvID) string { return SeqKey(t.cfg.Prefix, c) }

// SeqKey is the key of conversation c's seq counter under prefix. The send
// path takes seqs from it (INCR, here); the store's apply scripts raise it
// to the highest seq logged. Both use this definition.
func SeqKey(prefix string, c chat.ConvID) string { return ConvKey(prefix, "seq", c) }

// Heartbeat registers gateway s as live for one lease from now. It reports
// whether s was not registered before (first start, or its registration
// was purged or lost), in which case its sessions must be registered again.
// On a Redis Cluster a shard can lose its data alone, taking the sessions
// of some users with it and not the registration: s also refreshes a
// sentinel key in every sampleStride-th slot (kept for four leases), and a
// sentinel found missing reports a loss too.
func (t *Table) Heartbeat(ctx context.Context, s chat.ServerID) (bool, error) {
	exp := t.now().Add(t.cfg.Lease).UnixMilli()
	p := t.rdb.Pipeline()
	reg := p.ZAdd(ctx, t.gatewaysKey(), redis.Z{Score: float64(exp), Member: string(s)})
	sentinels := make([]*redis.StatusCmd, 0, rediskit.Slots/sampleStride)
	for slot := 0; slot < rediskit.Slots; slot += sampleStride {
		k := t.cfg.Prefix + "gwmark:" + rediskit.SlotTag(slot) + ":" + string(s)
		sentinels = append(sentinels, p.SetArgs(ctx, k, 1, redis.SetArgs{Get: true, TTL: 4 * t.cfg.Lease}))
	}
	if _, err := p.Exec(ctx); err != nil && err != redis.Nil {
		return false, fmt.Errorf("heartbeat %s: %w", s, err)
	}
	if err := reg.Err(); err != nil {
		return false, fmt.Errorf("heartbeat %s: %w", s, err)
	}
	lost := reg.Val() == 1
	for _, c := range sentinels {
		if err := c.Err(); err == redis.Nil {
			lost = true
		} else if err != nil {
			return false, fmt.Errorf("heartbeat %s: %w", s, err)
		}
	}
	return lost, nil
}

// Deregister removes gateway s from the live registry.
func (t *Table) Deregister(ctx context.Context, s chat.ServerID) error {
	if err := t.rdb.ZRem(ctx, t.gatewaysKey(), string(s)).Err(); err != nil {
		return fmt.Errorf("deregister %s: %w", s, err)
	}
	return nil
}

// LiveGateways returns the gateways whose lease has not lapsed.
func (t *Table) LiveGateways(ctx context.Context) ([]chat.ServerID, error) {
	ids, err := t.liveCmd(ctx, t.rdb).Result()
	if err != nil {
		return nil, fmt.Errorf("live gateways: %w", err)
	}
	return toServerIDs(ids), nil
}

// DeadGateways returns the registered gateways whose lease lapsed more
// than grace ago.
func (t *Table) DeadGateways(ctx context.Context, grace time.Duration) ([]chat.ServerID, error) {
	max := strconv.FormatInt(t.now().Add(-grace).UnixMilli(), 10)
	ids, err := t.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: t.gatewaysKey(), ByScore: true, Start: "-inf", Stop: "(" + max}).Result()
	if err != nil {
		return nil, fmt.Errorf("dead gateways: %w", err)
	}
	return toServerIDs(ids), nil
}

func (t *Table) liveCmd(ctx context.Context, c redis.Cmdable) *redis.StringSliceCmd {
	min := strconv.FormatInt(t.now().UnixMilli(), 10)
	return c.ZRangeArgs(ctx, redis.ZRangeArgs{Key: t.gatewaysKey(), ByScore: true, Start: min, Stop: "+inf"})
}

func toServerIDs(ids []string) []chat.ServerID {
	out := make([]chat.ServerID, len(ids))
	for i, id := range ids {
		out[i] = chat.ServerID(id)
	}
	return out
}

// AddSession records that user u has session sess on gateway s, and
// returns how many sessions u now has (on live and dead gateways alike).
func (t *Table) AddSession(ctx context.Context, u chat.UserID, sess string, s chat.ServerID) (int, error) {
	// Not a transaction: the two keys may be on different cluster slots.
	// The gateway index is only read to purge a dead gateway, which
	// compares before it deletes.
	var n *redis.IntCmd
	_, err := t.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, t.sessionsKey(u), sess, string(s))
		p.SAdd(ctx, t.gwSessionsKey(s), string(u)+"|"+sess)
		n = p.HLen(ctx, t.sessionsKey(u))
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("add session %s/%s: %w", u, sess, err)
	}
	return int(n.Val()), nil
}

// Locate returns, for each live gateway, which of users have a session on
// it, in one round trip.
func (t *Table) Locate(ctx context.Context, users []chat.UserID) (map[chat.ServerID][]chat.UserID, error) {
	pipe := t.rdb.Pipeline()
	sessions := make(map[chat.UserID]*redis.MapStringStringCmd, len(users))
	for _, u := range users {
		if sessions[u] == nil {
			sessions[u] = pipe.HGetAll(ctx, t.sessionsKey(u))
		}
	}
	live := t.liveCmd(ctx, pipe)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("locate: %w", err)
	}
	return targets(users, sessions, liveSet(live.Val()), "", ""), nil
}

func liveSet(ids []string) map[chat.ServerID]bool {
	out := make(map[chat.ServerID]bool, len(ids))
	for _, s := range ids {
		out[chat.ServerID(s)] = true
	}
	return out
}

// targets groups users by the live gateways their sessions are on,
// leaving out session skip of user from (the session that sent).
func targets(users []chat.UserID, sessions map[chat.UserID]*redis.MapStringStringCmd, live map[chat.ServerID]bool, from chat.UserID, skip string) map[chat.ServerID][]chat.UserID {
	out := make(map[chat.ServerID][]chat.UserID)
	done := make(map[chat.UserID]bool, len(users))
	for _, u := range users {
		if done[u] {
			continue
		}
		done[u] = true
		seen := map[chat.ServerID]bool{}
		for sess, s := range sessions[u].Val() {
			if u == from && sess == skip {
				continue
			}
			sid := chat.ServerID(s)
			if live[sid] && !seen[sid] {
				seen[sid] = true
				out[sid] = append(out[sid], u)
			}
		}
	}
	return out
}

// removeSession deletes a session only if it still points at the given
// gateway (compare-before-delete), and returns the number of sessions the
// user has left.
var removeSession = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return redis.call('HLEN', KEYS[1])
`)

// RemoveSession removes session sess of user u if it is still registered
// on gateway s, and returns how many sessions u has left anywhere. The
// session leaves the gateway's index after (a separate key, maybe on
// another slot).
func (t *Table) RemoveSession(ctx context.Context, u chat.UserID, sess string, s chat.ServerID) (int, error) {
	n, err := removeSession.Run(ctx, t.rdb, []string{t.sessionsKey(u)}, sess, string(s)).Int()
	if err == nil {
		err = t.rdb.SRem(ctx, t.gwSessionsKey(s), string(u)+"|"+sess).Err()
	}
	if err != nil {
		return 0, fmt.Errorf("remove session %s/%s: %w", u, sess, err)
	}
	return n, nil
}

// PurgeGateway removes every session of gateway s and its registration, and
// returns the users left with no session at all.
func (t *Table) PurgeGateway(ctx context.Context, s chat.ServerID) ([]chat.UserID, error) {
	members, err := t.rdb.SMembers(ctx, t.gwSessionsKey(s)).Result()
	if err != nil {
		return nil, fmt.Errorf("purge %s: %w", s, err)
	}
	var gone []chat.UserID
	for _, m := range members {
		u, sess, ok := strings.Cut(m, "|")
		if !ok {
			continue
		}
		left, err := t.RemoveSession(ctx, chat.UserID(u), sess, s)
		if err != nil {
			return gone, fmt.Errorf("purge %s: %w", s, err)
		}
		if left == 0 {
			gone = append(gone, chat.UserID(u))
		}
	}
	if err := t.rdb.Del(ctx, t.gwSessionsKey(s)).Err(); err != nil {
		return gone, fmt.Errorf("purge %s: %w", s, err)
	}
	return gone, t.Deregister(ctx, s)
}

// Ping checks that Redis answers.
func (t *Table) Ping(ctx context.Context) error { return t.rdb.Ping(ctx).Err() }

// IsNoScript reports whether err is Redis's NOSCRIPT error.
func IsNoScript(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr) && strings.HasPrefix(rerr.Error(), "NOSCRIPT")
}

func (t *Table) deadKey() string { return t.cfg.Prefix + "gwdead" }

// MarkDead records when gateway s was found dead (kept if already set).
func (t *Table) MarkDead(ctx context.Context, s chat.ServerID) error {
	err := t.rdb.ZAddNX(ctx, t.deadKey(), redis.Z{Score: float64(t.now().UnixMilli()), Member: string(s)}).Err()
	if err != nil {
		return fmt.Errorf("mark dead %s: %w", s, err)
	}
	return nil
}

// Dead returns the gateways marked dead and since when.
func (t *Table) Dead(ctx context.Context) (map[chat.ServerID]time.Time, error) {
	zs, err := t.rdb.ZRangeWithScores(ctx, t.deadKey(), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("dead gateways: %w", err)
	}
	out := make(map[chat.ServerID]time.Time, len(zs))
	for _, z := range zs {
		out[chat.ServerID(z.Member.(string))] = time.UnixMilli(int64(z.Score))
	}
	return out, nil
}

// ForgetDead drops gateway s from the dead list (it came back, or its
// topic was removed).
func (t *Table) ForgetDead(ctx context.Context, s chat.ServerID) error {
	if err := t.rdb.ZRem(ctx, t.deadKey(), string(s)).Err(); err != nil {
		return fmt.Errorf("forget dead %s: %w", s, err)
	}
	return nil
}

// The restored marker says that Redis holds seq counters at least as high
// as the log's. A send refuses without it, in the same script that takes
// the seq, so the marker of a conversation must share its slot: it is one
// key per Redis Cluster slot, restored:{t} with a tag t of that slot, on
// a cluster and on a single Redis alike. A shard that loses its data loses
// the markers of its own slots with its counters, and only its
// conversations refuse sends until the router restores them. (The
// counters were named seq:<conv> before they were tagged, under one
// marker named restored: a Redis holding that layout has none of these
// markers, so sends wait for the router to raise the new counters.)
func (t *Table) restoredKey(c chat.ConvID) string {
	return t.markers().markers[rediskit.Slot(t.SeqKey(c))]
}

// markerKeys are the restored markers, by slot, and beside each the key of
// a restore's token.
type markerKeys struct{ markers, tokens []string }

func (t *Table) markers() *markerKeys {
	t.markerOnce.Do(func() {
		t.marks.markers, t.marks.tokens = make([]string, rediskit.Slots), make([]string, rediskit.Slots)
		for s := range rediskit.Slots {
			tag := rediskit.SlotTag(s)
			t.marks.markers[s], t.marks.tokens[s] = t.cfg.Prefix+"restored:"+tag, t.cfg.Prefix+"restoring:"+tag
		}
	})
	return &t.marks
}

// Restored reports whether every restored marker is present: Redis holds
// seq counters at least as high as the log's. It reads 16,384 keys
// (about 20 ms); RestoredSample is the cheap check.
func (t *Table) Restored(ctx context.Context) (bool, error) {
	return t.present(ctx, t.markers().markers)
}

// sampleStride is the distance between the slots RestoredSample reads: a
// shard owning a range of at least this many slots is always sampled.
const sampleStride = 64

// RestoredSample reports whether the markers of every sampleStride-th slot
// are present, starting at an offset that moves on with each call: 256
// keys, so that a lost shard (whose slot ranges are much longer than the
// stride) shows at once, and every slot is looked at within 64 calls.
func (t *Table) RestoredSample(ctx context.Context) (bool, error) {
	off := int(t.sampleRound.Add(1) % sampleStride)
	all := t.markers().markers
	keys := make([]string, 0, rediskit.Slots/sampleStride)
	for s := off; s < len(all); s += sampleStride {
		keys = append(keys, all[s])
	}
	return t.present(ctx, keys)
}

func (t *Table) present(ctx context.Context, keys []string) (bool, error) {
	p := t.rdb.Pipeline()
	cmds := make([]*redis.IntCmd, len(keys))
	for i, k := range keys {
		cmds[i] = p.Exists(ctx, k)
	}
	if _, err := p.Exec(ctx); err != nil {
		return false, fmt.Errorf("restored marker: %w", err)
	}
	for _, c := range cmds {
		if c.Val() != 1 {
			return false, nil
		}
	}
	return true, nil
}

// MarkRestored sets the restored markers. Call it only when the seq
// counters are known to be at least the log's: after a rebuild, or when
// the log is empty.
func (t *Table) MarkRestored(ctx context.Context) error {
	if err := t.setAll(ctx, t.markers().markers, t.now().UnixMilli()); err != nil {
		return fmt.Errorf("mark restored: %w", err)
	}
	return nil
}

// setAll sets every key of keys to v, in one pipeline.
func (t *Table) setAll(ctx context.Context, keys []string, v any) error {
	p := t.rdb.Pipeline()
	for _, k := range keys {
		p.Set(ctx, k, v, 0)
	}
	_, err := p.Exec(ctx)
	return err
}

// ForgetRestored deletes the restored markers, as a Redis data loss would:
// sends refuse until a restore sets them again. For tests and drills.
func (t *Table) ForgetRestored(ctx context.Context) error {
	if _, err := rediskit.Delete(ctx, t.rdb, t.markers().markers); err != nil {
		return fmt.Errorf("forget restored: %w", err)
	}
	return nil
}

// MarkRestoredIfLogEmpty sets the restored markers when some are missing
// and the log (whose end offsets end returns) is empty: a new cluster has
// no counters to restore. It reports whether the markers are set
// afterwards. It reads them all when full, else a sample
// (RestoredSample).
func (t *Table) MarkRestoredIfLogEmpty(ctx context.Context, full bool, end func(context.Context) (map[int]int64, error)) (bool, error) {
	check := t.RestoredSample
	if full {
		check = t.Restored
	}
	ok, err := check(ctx)
	if err != nil || ok {
		return ok, err
	}
	offsets, err := end(ctx)
	if err != nil {
		return false, err
	}
	for _, o := range offsets {
		if o > 0 {
			return false, nil
		}
	}
	return true, t.MarkRestored(ctx)
}

// raiseSeq raises the counter KEYS[1] to ARGV[1] unless it is higher.
var raiseSeq = redis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > cur then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
`)

// RaiseSeqs raises the seq counters to the given values where they are
// lower (never lowering one), pipelined in round trips of 1000.
func (t *Table) RaiseSeqs(ctx context.Context, seqs map[chat.ConvID]int64) error {
	if err := raiseSeq.Load(ctx, t.rdb).Err(); err != nil {
		return fmt.Errorf("raise seqs: %w", err)
	}
	pipe := t.rdb.Pipeline()
	for c, seq := range seqs {
		raiseSeq.EvalSha(ctx, pipe, []string{t.SeqKey(c)}, seq)
		if pipe.Len() >= 1000 {
			if _, err := pipe.Exec(ctx); err != nil {
				return fmt.Errorf("raise seqs: %w", err)
			}
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("raise seqs: %w", err)
	}
	return nil
}

// RestoreDedupes records each message's (sender, cid) as acknowledged, as
// the send path did when it was sent, unless a record exists or the
// message is older than the dedupe TTL; pipelined in round trips of 1000.
// A restore and a rebuild call it, so that retries stay idempotent across
// a Redis data loss.
func (t *Table) RestoreDedupes(ctx context.Context, msgs []*chat.Message) error {
	pipe := t.rdb.Pipeline()
	now := t.now()
	for _, m := range msgs {
		left := t.cfg.DedupeTTL - now.Sub(time.UnixMilli(m.TS))
		if m.CID == "" || left <= 0 {
			continue
		}
		pipe.SetNX(ctx, t.dedupeKey(m.From, m.Conv, m.CID), ackedRecord(m.ID, m.Seq, m.TS), max(left, time.Millisecond))
		pipe.SetNX(ctx, t.claimKey(m.From, m.CID), string(m.Conv), max(left, time.Millisecond))
		if pipe.Len() >= 1000 {
			if _, err := pipe.Exec(ctx); err != nil {
				return fmt.Errorf("restore dedupe: %w", err)
			}
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("restore dedupe: %w", err)
	}
	return nil
}

// BeginRestore leaves a token of owner beside every restored marker. A
// restore raises the counters after it, then MarkRestoredHolding sets each
// marker only where the token is still there: a slot whose data was lost
// during the restore lost its token too, and is not vouched for.
func (t *Table) BeginRestore(ctx context.Context, owner string) error {
	if err := t.setAll(ctx, t.markers().tokens, owner); err != nil {
		return fmt.Errorf("begin restore: %w", err)
	}
	return nil
}

// markRestoredHolding sets the marker KEYS[1] and drops the token KEYS[2]
// if the token is still ARGV[1]'s.
var markRestoredHolding = redis.NewScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('DEL', KEYS[2])
return 1
`)

// MarkRestoredHolding sets the restored markers only while the lock key is
// held by owner and where the restore tokens BeginRestore left are still
// owner's: a restore that Redis lost its data again under (taking the lock
// or a token with it) must not vouch for counters it did not raise. It
// reports whether every marker was set; the restore must run again when
// not.
func (t *Table) MarkRestoredHolding(ctx context.Context, lockKey, owner string) (bool, error) {
	held, err := t.rdb.Get(ctx, lockKey).Result()
	if err != nil && err != redis.Nil {
		return false, fmt.Errorf("mark restored: %w", err)
	}
	if held != owner {
		return false, nil
	}
	if err := markRestoredHolding.Load(ctx, t.rdb).Err(); err != nil {
		return false, fmt.Errorf("mark restored: %w", err)
	}
	m := t.markers()
	markers, tokens := m.markers, m.tokens
	now := t.now().UnixMilli()
	p := t.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(markers))
	for i := range markers {
		cmds[i] = markRestoredHolding.EvalSha(ctx, p, []string{markers[i], tokens[i]}, owner, now)
	}
	if _, err := p.Exec(ctx); err != nil {
		return false, fmt.Errorf("mark restored: %w", err)
	}
	for _, c := range cmds {
		if n, _ := c.Int(); n != 1 {
			return false, nil
		}
	}
	return true, nil
}
