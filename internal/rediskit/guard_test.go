package rediskit

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestSlotGuardFindsWhatAClusterRefuses(t *testing.T) {
	ctx := context.Background()
	ok := func(context.Context, redis.Cmder) error { return nil }
	okPipe := func(context.Context, []redis.Cmder) error { return nil }
	cmd := func(args ...any) redis.Cmder { return redis.NewCmd(ctx, args...) }
	for _, tc := range []struct {
		name string
		cmds []redis.Cmder
		pipe bool
		bad  bool
	}{
		{"a script on one conversation's keys", []redis.Cmder{cmd("evalsha", "abc", 2, "sb:seq:{dm:a:b}", "sb:hist:{dm:a:b}", "x")}, false, false},
		{"a script on two conversations", []redis.Cmder{cmd("evalsha", "abc", 2, "sb:seq:{dm:a:b}", "sb:seq:{dm:a:c}")}, false, true},
		{"arguments are not keys", []redis.Cmder{cmd("eval", "return 1", 1, "sb:seq:{g1}", "sb:seq:{g2}")}, false, false},
		{"DEL across slots", []redis.Cmder{cmd("del", "foo", "bar")}, false, true},
		{"DEL of one slot", []redis.Cmder{cmd("del", "{u}a", "{u}b")}, false, false},
		{"single-key commands in a pipeline", []redis.Cmder{cmd("get", "foo"), cmd("get", "bar")}, true, false},
		{"a script in a pipeline", []redis.Cmder{cmd("get", "foo"), cmd("evalsha", "abc", 2, "foo", "bar")}, true, true},
		{"a transaction across slots", []redis.Cmder{cmd("multi"), cmd("hset", "sb:sess:a", "f", "v"), cmd("sadd", "sb:gwsess:g", "m"), cmd("exec")}, true, true},
		{"a transaction on one slot", []redis.Cmder{cmd("multi"), cmd("hset", "x{t}", "f", "v"), cmd("sadd", "y{t}", "m"), cmd("exec")}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &SlotGuard{}
			if tc.pipe {
				if err := g.ProcessPipelineHook(okPipe)(ctx, tc.cmds); err != nil {
					t.Fatal(err)
				}
			} else {
				for _, c := range tc.cmds {
					if err := g.ProcessHook(ok)(ctx, c); err != nil {
						t.Fatal(err)
					}
				}
			}
			if v := g.Violations(); (len(v) > 0) != tc.bad {
				t.Fatalf("violations %q, want some: %v", strings.Join(v, "; "), tc.bad)
			}
		})
	}
}
