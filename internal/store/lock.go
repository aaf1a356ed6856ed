package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrLockLost means the rebuilding lock is no longer held by its taker:
// it expired and another took it, or Redis lost its data.
var ErrLockLost = errors.New("rebuilding lock lost")

// RebuildLock is the rebuilding lock, held by one rebuild while the views
// are incomplete. Gateways read it (Rebuilding).
type RebuildLock struct {
	s     *Store
	key   string
	owner string
}

// AcquireRebuild waits until no other rebuild holds the lock and takes it
// for ttl; Refresh extends it.
func (s *Store) AcquireRebuild(ctx context.Context, ttl time.Duration) (*RebuildLock, error) {
	l := &RebuildLock{s: s, key: s.cfg.Prefix + "rebuilding", owner: strconv.FormatInt(time.Now().UnixNano(), 36)}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		ok, err := s.rdb.SetNX(ctx, l.key, l.owner, ttl).Result()
		if err != nil {
			return nil, fmt.Errorf("rebuild lock: %w", err)
		}
		if ok {
			return l, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("rebuild lock: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// Key and Owner identify the lock, for a write that must happen only while
// it is held (route.Table.MarkRestoredHolding).
func (l *RebuildLock) Key() string   { return l.key }
func (l *RebuildLock) Owner() string { return l.owner }

var refreshLock = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`)

// Refresh extends the lock to ttl from now, or returns ErrLockLost.
func (l *RebuildLock) Refresh(ctx context.Context, ttl time.Duration) error {
	n, err := refreshLock.Run(ctx, l.s.rdb, []string{l.key}, l.owner, ttl.Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("rebuild lock: %w", err)
	}
	if n != 1 {
		return ErrLockLost
	}
	return nil
}

// Release gives the lock back, if it is still held.
func (l *RebuildLock) Release() {
	releaseLock.Run(context.Background(), l.s.rdb, []string{l.key}, l.owner)
}

func (s *Store) pendingKey() string { return s.cfg.Prefix + "rebuildpending" }

// MarkPending records that a rebuild started: the views stay incomplete
// until Done, even if this rebuild dies and its lock expires, so that the
// next router to look finishes the job.
func (l *RebuildLock) MarkPending(ctx context.Context) error {
	if err := l.s.rdb.Set(ctx, l.s.pendingKey(), l.owner, 0).Err(); err != nil {
		return fmt.Errorf("rebuild pending: %w", err)
	}
	return nil
}

// Done records that the views are complete again.
func (l *RebuildLock) Done(ctx context.Context) error {
	if err := l.s.rdb.Del(ctx, l.s.pendingKey()).Err(); err != nil {
		return fmt.Errorf("rebuild done: %w", err)
	}
	return nil
}

// RebuildPending reports whether a rebuild started and did not finish.
func (s *Store) RebuildPending(ctx context.Context) (bool, error) {
	n, err := s.rdb.Exists(ctx, s.pendingKey()).Result()
	if err != nil {
		return false, fmt.Errorf("rebuild pending: %w", err)
	}
	return n == 1, nil
}
