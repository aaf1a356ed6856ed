package main

import (
	"context"
	"fmt"
	"math/rand/v2"
)

// dmRun, the private scenario: -pairs sender → receiver pairs, each pair
// on two different gateways (sender i on gateway i, its receiver on
// gateway i+1), every sender sending at -rate/-pairs to its receiver.
func dmRun(ctx context.Context, o *options, d *dialer, r *Report) error {
	n := d.tgt.endpoints()
	r.Params.Pairs, r.Params.Rate, r.Params.Duration = o.pairs, o.rate, o.duration.String()
	sessions, err := d.dialMany(ctx, 2*o.pairs, o.dialConc,
		func(i int) string { return fmt.Sprintf("%s%c%d", o.prefix, "sr"[i%2], i/2) },
		func(i int) int { return (i/2 + i%2) % n })
	if err != nil {
		return err
	}
	return runTraffic(ctx, o, r, sessions, o.pairs, func(g, _ int) plan {
		return plan{from: sessions[2*g], to: sessions[2*g+1], toIdx: 2*g + 1, expect: 1}
	}, nil)
}

// publicRun: -senders sessions publish to the public room at -rate in
// total while -receivers sessions (and the other senders) receive.
func publicRun(ctx context.Context, o *options, d *dialer, r *Report) error {
	total := o.senders + o.receivers
	r.Params.Senders, r.Params.Receivers, r.Params.Rate, r.Params.Duration = o.senders, o.receivers, o.rate, o.duration.String()
	sessions, err := d.dialMany(ctx, total, o.dialConc,
		func(i int) string { return fmt.Sprintf("%sp%d", o.prefix, i) },
		func(i int) int { return i % d.tgt.endpoints() })
	if err != nil {
		return err
	}
	return runTraffic(ctx, o, r, sessions, o.senders, func(g, _ int) plan {
		return plan{from: sessions[g], toIdx: -1, expect: int32(total - 1)}
	}, nil)
}

// mixedRun is the original load: -users sessions round-robin over the
// gateways; each message is from a random user, to the public room with
// probability -public, else to a random user on another gateway.
func mixedRun(ctx context.Context, o *options, d *dialer, r *Report) error {
	n := d.tgt.endpoints()
	r.Params.Users, r.Params.Rate, r.Params.Duration, r.Params.Public = o.users, o.rate, o.duration.String(), o.publicRatio
	sessions, err := d.dialMany(ctx, o.users, o.dialConc,
		func(i int) string { return fmt.Sprintf("%s%d", o.prefix, i) },
		func(i int) int { return i % n })
	if err != nil {
		return err
	}
	senders := min(o.users, 64)
	return runTraffic(ctx, o, r, sessions, senders, func(g, _ int) plan {
		// Sender goroutine g owns sessions g, g+senders, …: one writer each.
		from := g + senders*rand.IntN((o.users-g+senders-1)/senders)
		if rand.Float64() < o.publicRatio {
			return plan{from: sessions[from], toIdx: -1, expect: int32(o.users - 1)}
		}
		to := peer(sessions, from)
		return plan{from: sessions[from], to: sessions[to], toIdx: to, expect: 1}
	}, nil)
}

// peer picks a session on another gateway than from's when there is one.
func peer(sessions []*session, from int) int {
	for tries := 0; ; tries++ {
		p := rand.IntN(len(sessions))
		if p != from && (sessions[p].gw != sessions[from].gw || tries > 20) {
			return p
		}
	}
}
