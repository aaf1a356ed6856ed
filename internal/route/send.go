package route

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/rediskit"
)

// SendRequest is one send to prepare.
type SendRequest struct {
	From chat.UserID
	CID  string
	Conv chat.ConvID
	// Recipients are the users whose sessions get a copy (for a direct
	// message: both members, so the sender's other devices get the echo).
	// Public sends leave it empty: every live gateway gets a copy.
	Recipients []chat.UserID
	// ID and TS are used when the cid is new.
	ID string
	TS int64
	// Session is the sender's session that sent it ("" for none): it has
	// the message already, so a gateway where the sender has no other
	// session gets no copy for the sender.
	Session string
}

// SendPlan is what the send path needs to produce a message.
type SendPlan struct {
	// Conv is the conversation the message is in: the request's, or for a
	// cid the sender used before in another conversation, that one's.
	Conv chat.ConvID
	ID   string
	Seq  int64
	TS   int64
	// Dup is true when the cid was already used; ID, Seq and TS are the
	// original's.
	Dup bool
	// Acked is true when the original is known to be in Kafka: nothing is
	// written again and the original sent is returned.
	Acked bool
	// Targets maps each live gateway to the recipients connected to it.
	// For a group: the live gateways with members connected, each with
	// no users (the gateway fans out to its local members).
	Targets map[chat.ServerID][]chat.UserID
	// Refused is ErrNotMember or ErrNoGroup when a group send was refused
	// (no seq was taken and nothing else in the plan is set), ErrNotRestored
	// when the conversation's or a recipient's slot lost its data and is
	// not restored yet, or a *CIDInUseError.
	Refused error
}

// CIDInUseError refuses a cid that the sender used for a message of
// another conversation that is not known to be in Kafka yet: a repeated
// cid is answered with the original, which must be retried where it was
// sent.
type CIDInUseError struct{ Conv chat.ConvID }

func (e *CIDInUseError) Error() string {
	return "this cid was used for a message to " + string(e.Conv) + " that is not stored yet: retry it there"
}

// ErrNotRestored means Redis lost its data (the restored marker is gone)
// and the router has not yet raised the seq counters from the log: taking
// a seq now could repeat one already logged.
var ErrNotRestored = errors.New("routing state not restored from the log yet")

// dedupeSeq returns the existing record of a (user, cid), or takes the next
// seq of the conversation and records "id|seq|ts|p" (p: pending until Kafka
// acknowledged it; a: acknowledged). It refuses while the restored marker
// (KEYS[3]) is missing, and for a group (KEYS[4], its members hash) when
// the sender (ARGV[4]) is not a member.
var dedupeSeq = redis.NewScript(`
if redis.call('EXISTS', KEYS[3]) == 0 then return redis.error_reply('NOTRESTORED') end
if KEYS[4] and not redis.call('HGET', KEYS[4], ARGV[4]) then
  if redis.call('EXISTS', KEYS[4]) == 0 then return redis.error_reply('NOGROUP') end
  return redis.error_reply('NOTMEMBER')
end
local v = redis.call('GET', KEYS[1])
if v then return v end
local seq = redis.call('INCR', KEYS[2])
v = ARGV[1] .. '|' .. seq .. '|' .. ARGV[2] .. '|p'
redis.call('SET', KEYS[1], v, 'PX', ARGV[3])
return v
`)

// A cid is the sender's: a repeated cid is the original message, whatever
// conversation the repeat names. Its record lives with the conversation
// (dedupe:{conv}:…, taken in the same script as the seq), and the claim
// cid:<user>:<cid> → conversation, set with SET NX GET in the same round
// trip, says which conversation that is. A repeat naming another
// conversation finds the claim and is answered from that conversation's
// record, in a second round trip; the seq the first one took in the named
// conversation is a gap.

// PrepareSends dedupes each request's cid, takes its seq and looks up the
// gateways of its recipients, all in one Redis round trip. It also returns
// the live gateways (the targets of a public send).
func (t *Table) PrepareSends(ctx context.Context, reqs []SendRequest) ([]SendPlan, []chat.ServerID, error) {
	return t.PrepareSendsMarking(ctx, reqs, nil)
}

// PrepareSendsMarking is PrepareSends that also records, in the same round
// trip, that the messages of earlier sends are in Kafka (as MarkAcked
// does): a gateway's next batch carries the acknowledgements of the last.
func (t *Table) PrepareSendsMarking(ctx context.Context, reqs []SendRequest, acked []Acked) ([]SendPlan, []chat.ServerID, error) {
	plans, live, err := t.prepareSends(ctx, reqs, acked)
	if err != nil && IsNoScript(err) {
		// Redis lost its script cache (restart, SCRIPT FLUSH): load and retry once.
		if lerr := dedupeSeq.Load(ctx, t.rdb).Err(); lerr != nil {
			return nil, nil, fmt.Errorf("prepare sends: load script: %w", lerr)
		}
		plans, live, err = t.prepareSends(ctx, reqs, acked)
	}
	return plans, live, err
}

func (t *Table) prepareSends(ctx context.Context, reqs []SendRequest, acked []Acked) ([]SendPlan, []chat.ServerID, error) {
	ttl := strconv.FormatInt(t.cfg.DedupeTTL.Milliseconds(), 10)
	pipe := t.rdb.Pipeline()
	t.queueAcked(ctx, pipe, acked)
	dedupe := make([]*redis.Cmd, len(reqs))
	claims := make([]*redis.StatusCmd, len(reqs))
	sessions := make(map[chat.UserID]*redis.MapStringStringCmd)
	groups := make(map[chat.ConvID]*redis.StringSliceCmd)
	for i, r := range reqs {
		keys := []string{t.dedupeKey(r.From, r.Conv, r.CID), t.SeqKey(r.Conv), t.restoredKey(r.Conv)}
		if r.Conv.Kind() == chat.KindGroup {
			keys = append(keys, t.membersKey(r.Conv))
			if groups[r.Conv] == nil {
				groups[r.Conv] = pipe.SMembers(ctx, t.groupGatewaysKey(r.Conv))
			}
		}
		dedupe[i] = dedupeSeq.EvalSha(ctx, pipe, keys, r.ID, strconv.FormatInt(r.TS, 10), ttl, string(r.From))
		claims[i] = pipe.SetArgs(ctx, t.claimKey(r.From, r.CID), string(r.Conv), redis.SetArgs{Mode: "NX", Get: true, TTL: t.cfg.DedupeTTL})
		for _, u := range r.Recipients {
			if sessions[u] == nil {
				sessions[u] = pipe.HGetAll(ctx, t.sessionsKey(u))
			}
		}
	}
	liveCmd := t.liveCmd(ctx, pipe)
	// The sessions and the live registry read above are on their own
	// slots: one whose data was lost (a Redis Cluster shard) reads as no
	// session, so its restored marker must be there too, as the
	// conversation's is in dedupeSeq.
	guards := t.routingMarkers(ctx, pipe, sessions)
	regGuard := guards[rediskit.Slot(t.gatewaysKey())]
	// A new claim answers nil, a refused send its refusal: any other
	// error fails the batch.
	cmds, _ := pipe.Exec(ctx)
	for _, c := range cmds {
		if err := c.Err(); err != nil && err != redis.Nil && !isScriptRefusal(err) {
			return nil, nil, fmt.Errorf("prepare sends: %w", err)
		}
	}
	if regGuard != nil && regGuard.Val() != 1 {
		return nil, nil, ErrNotRestored // the live registry itself was lost
	}
	live := toServerIDs(liveCmd.Val())
	isLive := liveSet(liveCmd.Val())
	plans := make([]SendPlan, len(reqs))
	var elsewhere []int // repeats of a cid first used in another conversation
	for i, r := range reqs {
		if c, err := claims[i].Result(); err == nil && chat.ConvID(c) != r.Conv {
			plans[i].Conv = chat.ConvID(c)
			elsewhere = append(elsewhere, i)
			continue
		} else if err != nil && err != redis.Nil {
			return nil, nil, fmt.Errorf("prepare sends: %w", err)
		}
		rec, err := dedupe[i].Text()
		if err != nil {
			switch msg := err.Error(); {
			case strings.Contains(msg, "NOTRESTORED"):
				plans[i] = SendPlan{Refused: ErrNotRestored}
				continue
			case strings.Contains(msg, "NOTMEMBER"):
				plans[i] = SendPlan{Refused: ErrNotMember}
				continue
			case strings.Contains(msg, "NOGROUP"):
				plans[i] = SendPlan{Refused: ErrNoGroup}
				continue
			}
			return nil, nil, fmt.Errorf("prepare sends: %w", err)
		}
		p, err := parseDedupe(rec)
		if err != nil {
			return nil, nil, fmt.Errorf("prepare sends: %s/%s: %w", r.From, r.CID, err)
		}
		p.Dup, p.Conv = p.ID != r.ID, r.Conv
		if !t.sessionsRestored(r.Recipients, guards) {
			// Its seq is taken: refusing leaves a gap, as a failed
			// produce does, and a retry with the same cid fills it.
			plans[i] = SendPlan{Conv: r.Conv, Refused: ErrNotRestored}
			continue
		}
		switch {
		case groups[r.Conv] != nil:
			p.Targets = make(map[chat.ServerID][]chat.UserID)
			for _, gw := range liveOnly(groups[r.Conv].Val(), isLive) {
				p.Targets[gw] = nil
			}
		case len(r.Recipients) > 0:
			p.Targets = targets(r.Recipients, sessions, isLive, r.From, r.Session)
		}
		plans[i] = p
	}
	if len(elsewhere) > 0 {
		if err := t.originals(ctx, reqs, plans, elsewhere); err != nil {
			return nil, nil, err
		}
	}
	return plans, live, nil
}

// originals answers the repeats at idx of a cid first used in the
// conversation their plan names: with the original when it is in Kafka,
// else refused with a *CIDInUseError.
func (t *Table) originals(ctx context.Context, reqs []SendRequest, plans []SendPlan, idx []int) error {
	pipe := t.rdb.Pipeline()
	recs := make([]*redis.StringCmd, len(idx))
	for j, i := range idx {
		recs[j] = pipe.Get(ctx, t.dedupeKey(reqs[i].From, plans[i].Conv, reqs[i].CID))
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return fmt.Errorf("prepare sends: %w", err)
	}
	for j, i := range idx {
		conv := plans[i].Conv
		rec, err := recs[j].Result()
		if err != nil && err != redis.Nil {
			return fmt.Errorf("prepare sends: %w", err)
		}
		p, perr := parseDedupe(rec)
		if err == redis.Nil || perr != nil || !p.Acked {
			plans[i] = SendPlan{Conv: conv, Refused: &CIDInUseError{Conv: conv}}
			continue
		}
		p.Conv, p.Dup = conv, true
		plans[i] = p
	}
	return nil
}

// routingMarkers queues an EXISTS of the restored marker of the live
// registry's slot and of each session hash's slot, once per slot. A single
// Redis loses all its keys at once, the conversation's marker with them
// (which dedupeSeq checks): there it queues nothing.
func (t *Table) routingMarkers(ctx context.Context, pipe redis.Pipeliner, sessions map[chat.UserID]*redis.MapStringStringCmd) map[int]*redis.IntCmd {
	marks := t.markers().markers
	out := map[int]*redis.IntCmd{}
	if !rediskit.IsCluster(t.rdb) {
		return out
	}
	add := func(key string) {
		if slot := rediskit.Slot(key); out[slot] == nil {
			out[slot] = pipe.Exists(ctx, marks[slot])
		}
	}
	add(t.gatewaysKey())
	for u := range sessions {
		add(t.sessionsKey(u))
	}
	return out
}

// sessionsRestored reports whether the session hashes of users are on
// slots whose restored marker is there.
func (t *Table) sessionsRestored(users []chat.UserID, guards map[int]*redis.IntCmd) bool {
	for _, u := range users {
		if g := guards[rediskit.Slot(t.sessionsKey(u))]; g != nil && g.Val() != 1 {
			return false
		}
	}
	return true
}

// isScriptRefusal reports whether err is one of dedupeSeq's refusals,
// which are answered per send rather than failing the batch.
func isScriptRefusal(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "NOTRESTORED") || strings.Contains(msg, "NOTMEMBER") || strings.Contains(msg, "NOGROUP")
}

// The dedupe record of a (user, cid) is "id|seq|ts|state", state p
// (pending: taken by dedupeSeq, which builds it in Lua) or a (the message
// is in Kafka). This file owns the format: ackedRecord builds the
// acknowledged form, parseDedupe reads both.
func ackedRecord(id string, seq, ts int64) string {
	return id + "|" + strconv.FormatInt(seq, 10) + "|" + strconv.FormatInt(ts, 10) + "|a"
}

// parseDedupe parses "id|seq|ts|state".
func parseDedupe(rec string) (SendPlan, error) {
	f := strings.Split(rec, "|")
	if len(f) != 4 {
		return SendPlan{}, fmt.Errorf("corrupt dedupe record %q", rec)
	}
	seq, err1 := strconv.ParseInt(f[1], 10, 64)
	ts, err2 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil {
		return SendPlan{}, fmt.Errorf("corrupt dedupe record %q", rec)
	}
	return SendPlan{ID: f[0], Seq: seq, TS: ts, Acked: f[3] == "a"}, nil
}

// Acked identifies a send whose message Kafka acknowledged.
type Acked struct {
	From chat.UserID
	Conv chat.ConvID
	CID  string
	Plan SendPlan
}

// MarkAcked records that the messages of these sends are in Kafka, so a
// retried cid answers without writing again. Until then a retry rewrites
// the message with the same id and seq (harmless: consumers dedupe by id).
func (t *Table) MarkAcked(ctx context.Context, sends []Acked) error {
	if len(sends) == 0 {
		return nil
	}
	pipe := t.rdb.Pipeline()
	t.queueAcked(ctx, pipe, sends)
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return fmt.Errorf("mark acked: %w", err)
	}
	return nil
}

// queueAcked queues the dedupe records of sends, now acknowledged.
func (t *Table) queueAcked(ctx context.Context, pipe redis.Pipeliner, sends []Acked) {
	for _, s := range sends {
		pipe.SetArgs(ctx, t.dedupeKey(s.From, s.Conv, s.CID), ackedRecord(s.Plan.ID, s.Plan.Seq, s.Plan.TS), redis.SetArgs{Mode: "XX", KeepTTL: true})
	}
}

// claimKey is the claim of cid by u: the conversation it was first sent to.
func (t *Table) claimKey(u chat.UserID, cid string) string {
	return t.cfg.Prefix + "cid:" + string(u) + ":" + cid
}

// RestoreDedupe records m's (sender, cid) as acknowledged, as the send path
// did when m was sent, unless a record exists or m is older than the
// dedupe TTL. A rebuild calls it, so that retries stay idempotent across a
// Redis data loss.
func (t *Table) RestoreDedupe(ctx context.Context, m *chat.Message) error {
	return t.RestoreDedupes(ctx, []*chat.Message{m})
}

// Seqs returns the seq counters of convs (0 for none yet), in one round
// trip: the highest seq each conversation has handed out.
func (t *Table) Seqs(ctx context.Context, convs []chat.ConvID) (map[chat.ConvID]int64, error) {
	pipe := t.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(convs))
	for i, c := range convs {
		cmds[i] = pipe.Get(ctx, t.SeqKey(c))
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, fmt.Errorf("seqs: %w", err)
	}
	out := make(map[chat.ConvID]int64, len(convs))
	for i, c := range convs {
		n, err := cmds[i].Int64()
		if err != nil && err != redis.Nil {
			return nil, fmt.Errorf("seqs %s: %w", c, err)
		}
		out[c] = n
	}
	return out, nil
}
