package auth

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limit is a token bucket: Burst attempts at once, refilled at Every.
type Limit struct {
	Every time.Duration // one attempt more per Every
	Burst int
}

// LimitsConfig bounds login and registration attempts. Zero fields take
// the defaults.
type LimitsConfig struct {
	// PerUser bounds attempts naming one user. Default 5, one more every
	// 12s (5 a minute).
	PerUser Limit
	// PerIP bounds attempts from one client address. Default 20, one more
	// every 3s (20 a minute).
	PerIP Limit
	// MaxKeys bounds how many buckets each side tracks; when full, idle
	// (refilled) buckets are dropped, and if none is idle every new key
	// shares one bucket, which then limits all newcomers together.
	// Default 100,000.
	MaxKeys int
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Limits holds the login attempt buckets. Safe for concurrent use.
type Limits struct {
	now    func() time.Time
	user   *buckets
	client *buckets
}

// NewLimits returns Limits with cfg's zero fields defaulted.
func NewLimits(cfg LimitsConfig) *Limits {
	if cfg.PerUser.Every <= 0 {
		cfg.PerUser.Every = 12 * time.Second
	}
	if cfg.PerUser.Burst <= 0 {
		cfg.PerUser.Burst = 5
	}
	if cfg.PerIP.Every <= 0 {
		cfg.PerIP.Every = 3 * time.Second
	}
	if cfg.PerIP.Burst <= 0 {
		cfg.PerIP.Burst = 20
	}
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = 100_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Limits{now: cfg.Now, user: newBuckets(cfg.PerUser, cfg.MaxKeys), client: newBuckets(cfg.PerIP, cfg.MaxKeys)}
}

// Allow spends one attempt for ip and, when user is not empty, one for
// user. When either bucket is empty nothing is spent and it returns how
// long until an attempt would be allowed.
func (l *Limits) Allow(ip, user string) (time.Duration, bool) {
	now := l.now()
	ipRes := l.client.reserve(ip, now)
	wait := ipRes.DelayFrom(now)
	if user != "" {
		userRes := l.user.reserve(user, now)
		if d := userRes.DelayFrom(now); d > wait {
			wait = d
		}
		if wait > 0 {
			userRes.CancelAt(now)
		}
	}
	if wait > 0 {
		ipRes.CancelAt(now)
		return wait, false
	}
	return 0, true
}

// buckets is a bounded map of token buckets.
type buckets struct {
	limit   Limit
	maxKeys int
	mu      sync.Mutex
	m       map[string]*rate.Limiter
	shared  *rate.Limiter // for new keys when the map is full of busy ones
}

func newBuckets(l Limit, maxKeys int) *buckets {
	return &buckets{limit: l, maxKeys: maxKeys, m: map[string]*rate.Limiter{}, shared: l.limiter()}
}

func (l Limit) limiter() *rate.Limiter { return rate.NewLimiter(rate.Every(l.Every), l.Burst) }

func (b *buckets) reserve(key string, now time.Time) *rate.Reservation {
	b.mu.Lock()
	defer b.mu.Unlock()
	lim, ok := b.m[key]
	if !ok {
		if len(b.m) >= b.maxKeys {
			b.evictIdle(now)
		}
		if len(b.m) >= b.maxKeys {
			lim = b.shared
		} else {
			lim = b.limit.limiter()
			b.m[key] = lim
		}
	}
	return lim.ReserveN(now, 1)
}

// evictIdle drops buckets that are full again: forgetting them changes
// nothing.
func (b *buckets) evictIdle(now time.Time) {
	for k, lim := range b.m {
		if lim.TokensAt(now) >= float64(b.limit.Burst) {
			delete(b.m, k)
		}
	}
}
