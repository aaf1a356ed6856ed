package route

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/internal/chat"
)

// GatewayInfo is what a gateway tells operators about itself with each
// heartbeat (the router's ops page shows it). It lives as long as a few
// leases without a heartbeat.
type GatewayInfo struct {
	Version       string
	AdminAddr     string
	Started       time.Time
	Connections   int64 // open WebSockets
	SlowConsumers int64 // connections closed as slow consumers since start
}

// GatewayStatus is one registered gateway as the registry sees it.
type GatewayStatus struct {
	ID           chat.ServerID
	LeaseExpires time.Time
	Live         bool  // the lease has not lapsed
	Sessions     int64 // sessions registered on it
	Info         GatewayInfo
}

func (t *Table) infoKey(s chat.ServerID) string { return t.cfg.Prefix + "gwinfo:" + string(s) }

// Announce records gateway s's info, kept for four leases.
func (t *Table) Announce(ctx context.Context, s chat.ServerID, info GatewayInfo) error {
	k := t.infoKey(s)
	_, err := t.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, k, "version", info.Version, "admin", info.AdminAddr, "started", info.Started.UnixMilli(),
			"conns", info.Connections, "slow", info.SlowConsumers)
		p.PExpire(ctx, k, 4*t.cfg.Lease)
		return nil
	})
	if err != nil {
		return fmt.Errorf("announce %s: %w", s, err)
	}
	return nil
}

// Gateways returns every registered gateway, live or lapsed but not yet
// purged, with its session count and info, in two round trips.
func (t *Table) Gateways(ctx context.Context) ([]GatewayStatus, error) {
	zs, err := t.rdb.ZRangeWithScores(ctx, t.gatewaysKey(), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("gateways: %w", err)
	}
	sessions := make([]*redis.IntCmd, len(zs))
	infos := make([]*redis.MapStringStringCmd, len(zs))
	_, err = t.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, z := range zs {
			id := chat.ServerID(z.Member.(string))
			sessions[i] = p.SCard(ctx, t.gwSessionsKey(id))
			infos[i] = p.HGetAll(ctx, t.infoKey(id))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("gateways: %w", err)
	}
	now := t.now()
	out := make([]GatewayStatus, len(zs))
	for i, z := range zs {
		exp := time.UnixMilli(int64(z.Score))
		h := infos[i].Val()
		num := func(k string) int64 { n, _ := strconv.ParseInt(h[k], 10, 64); return n }
		info := GatewayInfo{Version: h["version"], AdminAddr: h["admin"], Connections: num("conns"), SlowConsumers: num("slow")}
		if ms := num("started"); ms > 0 {
			info.Started = time.UnixMilli(ms)
		}
		out[i] = GatewayStatus{ID: chat.ServerID(z.Member.(string)), LeaseExpires: exp, Live: exp.After(now),
			Sessions: sessions[i].Val(), Info: info}
	}
	return out, nil
}
