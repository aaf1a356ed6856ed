// Package audit writes security-relevant events — registrations, failed
// logins, refused connections, membership and role changes, deletions —
// to the Kafka topic chat-audit as JSON records, one per event, keyed by
// the user the event is about.
//
// Recording never blocks the request that caused it: records go into a
// bounded queue that Run writes out in batches (acks=all, like every
// produce). A full queue, or a produce that keeps failing, drops records
// and counts them (switchboard_audit_dropped_total) with a log line; audit
// is not on the path of any request's success.
package audit

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/kafkabus"
)

// DefaultTopic is the audit topic's default name.
const DefaultTopic = "chat-audit"

// Event types. Types are stable: consumers filter on them.
const (
	Registration   = "registration"    // an account was created (Actor)
	LoginFailed    = "login_failed"    // a login was refused (Target: the user name tried, clipped)
	LoginLimited   = "login_limited"   // a login attempt was refused by the attempt limits
	ConnectRefused = "connect_refused" // a WebSocket handshake was refused (Reason: origin, unauthorized, sessions)
	MemberAdded    = "member_added"    // Actor added Target to Conv with Role
	MemberRemoved  = "member_removed"  // Actor removed Target from Conv (Actor = Target: left)
	RoleChanged    = "role_changed"    // Actor set Target's Role in Conv
	ConvCreated    = "conversation_created"
	ConvRenamed    = "conversation_renamed"
	MessageDeleted = "message_deleted" // Actor deleted message Target in Conv
)

// Record is one audit event, encoded as JSON on chat-audit. Empty fields
// are omitted.
type Record struct {
	Type   string        `json:"type"`
	TS     int64         `json:"ts"`               // Unix ms; set by Record when zero
	Server chat.ServerID `json:"server,omitempty"` // the gateway that saw it; set by Record
	Actor  chat.UserID   `json:"actor,omitempty"`  // the authenticated user who acted; empty when none
	Target string        `json:"target,omitempty"` // the user or message acted on
	Conv   chat.ConvID   `json:"conv,omitempty"`
	Role   string        `json:"role,omitempty"`
	Reason string        `json:"reason,omitempty"` // why something was refused, short
	Addr   string        `json:"addr,omitempty"`   // the client's IP address
}

// key is the record's partition key: the user it is about.
func (r *Record) key() []byte {
	if r.Actor != "" {
		return []byte(r.Actor)
	}
	return []byte(r.Target)
}

// Producer writes records to Kafka; *kafkabus.Producer is one.
type Producer interface {
	Produce(ctx context.Context, recs []kafkabus.Record) error
}

// Config configures a Log. Zero fields take the defaults.
type Config struct {
	Topic  string        // default DefaultTopic
	Server chat.ServerID // stamped on every record
	Queue  int           // records waiting to be written; default 4096
	// Timeout bounds one batch's produce; default 5s.
	Timeout time.Duration
}

// Log queues audit records and writes them to Kafka. Its methods are safe
// for concurrent use; a nil *Log records nothing, so callers need no
// check.
type Log struct {
	cfg     Config
	p       Producer
	log     *slog.Logger
	queue   chan Record
	dropped prometheus.Counter
	written prometheus.Counter
}

// New returns a Log writing through p. reg may be nil.
func New(cfg Config, p Producer, log *slog.Logger, reg prometheus.Registerer) *Log {
	if cfg.Topic == "" {
		cfg.Topic = DefaultTopic
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 4096
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &Log{cfg: cfg, p: p, log: log, queue: make(chan Record, cfg.Queue),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "audit",
			Name: "dropped_total", Help: "Audit records lost: the queue was full or Kafka refused them."}),
		written: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "audit",
			Name: "written_total", Help: "Audit records acknowledged by Kafka."}),
	}
	if reg != nil {
		reg.MustRegister(l.dropped, l.written)
	}
	return l
}

// Topic is the topic the Log writes to.
func (l *Log) Topic() string { return l.cfg.Topic }

// Record queues r without blocking; when the queue is full r is dropped
// and counted.
func (l *Log) Record(r Record) {
	if l == nil {
		return
	}
	if r.TS == 0 {
		r.TS = time.Now().UnixMilli()
	}
	r.Server = l.cfg.Server
	r.Target = chat.Clip(r.Target, 64)
	r.Reason = chat.Clip(r.Reason, 200)
	select {
	case l.queue <- r:
	default:
		l.dropped.Inc()
	}
}

// Registered records that user created an account.
func (l *Log) Registered(user chat.UserID, addr string) {
	l.Record(Record{Type: Registration, Actor: user, Addr: addr})
}

// LoginRefused records a failed login for the name tried (which may be
// no user at all); reason is short ("bad credentials", "limited").
func (l *Log) LoginRefused(name, addr, reason string) {
	l.Record(Record{Type: LoginFailed, Target: name, Addr: addr, Reason: reason})
}

// Membership records a membership or role change: typ is MemberAdded,
// MemberRemoved or RoleChanged; role is the new role (empty when removed).
func (l *Log) Membership(typ string, actor chat.UserID, conv chat.ConvID, member chat.UserID, role string) {
	l.Record(Record{Type: typ, Actor: actor, Conv: conv, Target: string(member), Role: role})
}

// Deleted records that actor deleted message id in conv.
func (l *Log) Deleted(actor chat.UserID, conv chat.ConvID, id string) {
	l.Record(Record{Type: MessageDeleted, Actor: actor, Conv: conv, Target: id})
}

// Run writes queued records until ctx is done, then writes what is still
// queued (bounded by the produce timeout) and returns.
func (l *Log) Run(ctx context.Context) {
	batch := make([]kafkabus.Record, 0, 256)
	for {
		select {
		case r := <-l.queue:
			batch = l.fill(append(batch[:0], l.encode(r)))
			l.write(context.WithoutCancel(ctx), batch)
		case <-ctx.Done():
			for {
				batch = l.fill(batch[:0])
				if len(batch) == 0 {
					return
				}
				l.write(context.WithoutCancel(ctx), batch)
			}
		}
	}
}

// fill appends what is queued now, up to a batch.
func (l *Log) fill(batch []kafkabus.Record) []kafkabus.Record {
	for len(batch) < cap(batch) {
		select {
		case r := <-l.queue:
			batch = append(batch, l.encode(r))
		default:
			return batch
		}
	}
	return batch
}

func (l *Log) encode(r Record) kafkabus.Record {
	v, _ := json.Marshal(r) // plain fields: cannot fail
	return kafkabus.Record{Topic: l.cfg.Topic, Key: r.key(), Value: v}
}

func (l *Log) write(ctx context.Context, batch []kafkabus.Record) {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	if err := l.p.Produce(ctx, batch); err != nil {
		l.dropped.Add(float64(len(batch)))
		l.log.Warn("audit records lost", "records", len(batch), "err", err)
		return
	}
	l.written.Add(float64(len(batch)))
}
