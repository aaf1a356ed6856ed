package rediskit

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// SlotGuard is a go-redis hook that records the commands a Redis Cluster
// would refuse with CROSSSLOT: a script, a multi-key command or a
// transaction whose keys hash to more than one slot. A single Redis runs
// them all, so the tests that run on one install it to keep the code
// cluster-safe without a cluster. It inspects the keys a command
// declares; a script reaching keys it did not declare is only caught by a
// real cluster.
type SlotGuard struct {
	mu         sync.Mutex
	violations []string
}

// DialHook implements redis.Hook.
func (g *SlotGuard) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

// ProcessHook implements redis.Hook.
func (g *SlotGuard) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		g.check(commandKeys(cmd.Args()), cmd.Args())
		return next(ctx, cmd)
	}
}

// ProcessPipelineHook implements redis.Hook: each command is checked, and
// the commands of a transaction (MULTI … EXEC) together.
func (g *SlotGuard) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		var tx []any
		in := false
		for _, c := range cmds {
			switch strings.ToLower(c.Name()) {
			case "multi":
				in, tx = true, tx[:0]
				continue
			case "exec":
				if in {
					g.check(tx, []any{"MULTI … EXEC"})
				}
				in = false
				continue
			}
			keys := commandKeys(c.Args())
			g.check(keys, c.Args())
			if in {
				tx = append(tx, keys...)
			}
		}
		return next(ctx, cmds)
	}
}

// check records command what when keys hash to more than one slot.
func (g *SlotGuard) check(keys []any, what []any) {
	if len(keys) < 2 {
		return
	}
	first := Slot(fmt.Sprint(keys[0]))
	for _, k := range keys[1:] {
		if Slot(fmt.Sprint(k)) != first {
			g.mu.Lock()
			g.violations = append(g.violations, fmt.Sprintf("%v: keys %v span slots", what[:min(len(what), 8)], keys))
			g.mu.Unlock()
			return
		}
	}
}

// Violations returns what was recorded so far.
func (g *SlotGuard) Violations() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.violations...)
}

// commandKeys returns the keys a command names, for the commands that may
// name several (others: the first argument, or none).
func commandKeys(args []any) []any {
	if len(args) < 2 {
		return nil
	}
	name := strings.ToLower(fmt.Sprint(args[0]))
	switch name {
	case "eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro":
		if len(args) < 3 {
			return nil
		}
		n, err := strconv.Atoi(fmt.Sprint(args[2]))
		if err != nil || n < 0 || 3+n > len(args) {
			return nil
		}
		return args[3 : 3+n]
	case "del", "unlink", "exists", "touch", "mget", "watch", "sinter", "sunion", "sdiff",
		"sinterstore", "sunionstore", "sdiffstore", "pfcount", "pfmerge":
		return args[1:]
	case "mset", "msetnx":
		var keys []any
		for i := 1; i < len(args); i += 2 {
			keys = append(keys, args[i])
		}
		return keys
	case "rename", "renamenx", "smove", "lmove", "blmove", "rpoplpush", "brpoplpush", "copy":
		if len(args) < 3 {
			return args[1:2]
		}
		return args[1:3]
	case "zunionstore", "zinterstore", "zdiffstore":
		if len(args) < 3 {
			return nil
		}
		n, err := strconv.Atoi(fmt.Sprint(args[2]))
		if err != nil || n < 0 || 3+n > len(args) {
			return nil
		}
		return append([]any{args[1]}, args[3:3+n]...)
	case "multi", "exec", "discard", "ping", "script", "info", "cluster", "flushall", "flushdb", "scan", "hello", "client", "select", "auth":
		return nil
	}
	return args[1:2]
}
