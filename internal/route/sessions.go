package route

import (
	"context"
	"fmt"

	"github.com/switchboard-chat/switchboard/internal/chat"
)

// LiveSessions returns how many sessions user u has on live gateways (those
// of gateways whose lease lapsed do not count), in one round trip. The
// gateway checks it at the handshake against the per-user session cap.
func (t *Table) LiveSessions(ctx context.Context, u chat.UserID) (int, error) {
	pipe := t.rdb.Pipeline()
	sessions := pipe.HGetAll(ctx, t.sessionsKey(u))
	live := t.liveCmd(ctx, pipe)
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("live sessions %s: %w", u, err)
	}
	alive := liveSet(live.Val())
	n := 0
	for _, s := range sessions.Val() {
		if alive[chat.ServerID(s)] {
			n++
		}
	}
	return n, nil
}
