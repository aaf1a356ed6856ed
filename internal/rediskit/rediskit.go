// Package rediskit opens the Redis client every service uses, a single
// Redis or a Redis Cluster behind one interface, and holds what the
// key-owning packages need to stay correct on a cluster: the slot a key
// hashes to, a tag for every slot, and scans and deletes that visit every
// master.
package rediskit

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options describes the Redis to connect to.
type Options struct {
	// Addrs is one address for a single Redis, or any of a cluster's nodes
	// (the client discovers the rest).
	Addrs    []string
	Cluster  bool
	DB       int // single Redis only; a cluster has only 0
	Password string
	Timeout  time.Duration // dial, read and write
	PoolSize int           // per node
}

// ParseAddrs splits a comma-separated address list, dropping blanks.
func ParseAddrs(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// New returns the client o describes (not yet connected).
func New(o Options) (redis.UniversalClient, error) {
	if len(o.Addrs) == 0 {
		return nil, fmt.Errorf("no Redis address")
	}
	if !o.Cluster && len(o.Addrs) > 1 {
		return nil, fmt.Errorf("%d Redis addresses for a single Redis: set REDIS_CLUSTER=true for a cluster, or give one", len(o.Addrs))
	}
	if o.Cluster && o.DB != 0 {
		return nil, fmt.Errorf("REDIS_DB=%d: a Redis Cluster has only database 0", o.DB)
	}
	if o.Cluster {
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: o.Addrs, Password: o.Password,
			DialTimeout: o.Timeout, ReadTimeout: o.Timeout, WriteTimeout: o.Timeout,
			PoolSize: o.PoolSize,
		}), nil
	}
	return redis.NewClient(&redis.Options{
		Addr: o.Addrs[0], DB: o.DB, Password: o.Password,
		DialTimeout: o.Timeout, ReadTimeout: o.Timeout, WriteTimeout: o.Timeout,
		PoolSize: o.PoolSize,
	}), nil
}

// IsCluster reports whether c talks to a Redis Cluster.
func IsCluster(c redis.UniversalClient) bool {
	_, ok := c.(*redis.ClusterClient)
	return ok
}

// Ping checks that c answers; on a cluster, that every master does and the
// cluster's slots are all served.
func Ping(ctx context.Context, c redis.UniversalClient) error {
	cc, ok := c.(*redis.ClusterClient)
	if !ok {
		return c.Ping(ctx).Err()
	}
	info, err := cc.ClusterInfo(ctx).Result()
	if err != nil {
		return err
	}
	if !strings.Contains(info, "cluster_state:ok") {
		return fmt.Errorf("cluster state is not ok")
	}
	return cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		return m.Ping(ctx).Err()
	})
}

// Scan calls fn with the keys matching pattern, in batches, on every
// master of a cluster or on the single Redis. fn is never called twice at
// once.
func Scan(ctx context.Context, c redis.UniversalClient, pattern string, fn func([]string) error) error {
	var mu sync.Mutex
	scan := func(ctx context.Context, n redis.Cmdable) error {
		var cursor uint64
		for {
			keys, next, err := n.Scan(ctx, cursor, pattern, 1000).Result()
			if err != nil {
				return err
			}
			if len(keys) > 0 {
				mu.Lock()
				err := fn(keys)
				mu.Unlock()
				if err != nil {
					return err
				}
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	if cc, ok := c.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return scan(ctx, m) })
	}
	return scan(ctx, c)
}

// Keys returns every key matching pattern (a scan: for tests and
// maintenance).
func Keys(ctx context.Context, c redis.UniversalClient, pattern string) ([]string, error) {
	var out []string
	err := Scan(ctx, c, pattern, func(keys []string) error {
		out = append(out, keys...)
		return nil
	})
	return out, err
}

// Delete deletes keys, which may hash to any slots, pipelined, and returns
// how many existed.
func Delete(ctx context.Context, c redis.UniversalClient, keys []string) (int, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	p := c.Pipeline()
	cmds := make([]*redis.IntCmd, len(keys))
	for i, k := range keys {
		cmds[i] = p.Del(ctx, k)
	}
	if _, err := p.Exec(ctx); err != nil {
		return 0, err
	}
	n := 0
	for _, c := range cmds {
		n += int(c.Val())
	}
	return n, nil
}

// DeleteMatching deletes every key matching pattern and returns how many.
func DeleteMatching(ctx context.Context, c redis.UniversalClient, pattern string) (int, error) {
	deleted := 0
	err := Scan(ctx, c, pattern, func(keys []string) error {
		n, err := Delete(ctx, c, keys)
		deleted += n
		return err
	})
	return deleted, err
}

// FlushAll empties the single Redis, or every master of a cluster.
func FlushAll(ctx context.Context, c redis.UniversalClient) error {
	if cc, ok := c.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return m.FlushAll(ctx).Err() })
	}
	return c.FlushAll(ctx).Err()
}
