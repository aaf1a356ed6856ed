package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-chat/switchboard/internal/wsclient"
)

// user is one load-test session.
type user struct {
	name string
	gw   int
	cl   *wsclient.Client
}

// tracker records what was sent, acknowledged and received.
type tracker struct {
	mu        sync.Mutex
	sentAt    map[string]time.Time // cid → send time
	acked     map[string]bool      // cid
	expect    map[string]int       // cid → deliveries expected
	got       map[string]int       // cid → deliveries seen
	errors    map[string]int       // code → count
	ackLat    []time.Duration
	deliverLa []time.Duration
}

func newTracker() *tracker {
	return &tracker{sentAt: map[string]time.Time{}, acked: map[string]bool{}, expect: map[string]int{},
		got: map[string]int{}, errors: map[string]int{}}
}

func dialAll(ctx context.Context, o options, n int, name func(int) string) ([]*user, error) {
	users := make([]*user, n)
	for i := range users {
		g := i % len(o.gateways)
		u := &user{name: name(i), gw: g}
		path, err := wsPath(ctx, o, g, u.name)
		var cl *wsclient.Client
		if err == nil {
			cl, _, err = wsclient.Dial(ctx, o.gateways[g]+path, nil)
		}
		if err != nil {
			for _, prev := range users[:i] {
				prev.cl.Close()
			}
			return nil, fmt.Errorf("connect user %d: %w", i, err)
		}
		u.cl = cl
		users[i] = u
	}
	return users, nil
}

func loadRun(ctx context.Context, o options) error {
	users, err := dialAll(ctx, o, o.users, func(i int) string { return fmt.Sprintf("%s%d", o.prefix, i) })
	if err != nil {
		return err
	}
	defer func() {
		for _, u := range users {
			u.cl.Close()
		}
	}()
	t := newTracker()
	var readers sync.WaitGroup
	for _, u := range users {
		readers.Add(1)
		go func() { defer readers.Done(); t.read(u) }()
	}

	start := time.Now()
	sent := t.send(ctx, o, users)
	sendDur := time.Since(start)
	// Wait (bounded) for outstanding acks and deliveries.
	deadline := time.Now().Add(o.drain)
	for time.Now().Before(deadline) && !t.complete() && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	for _, u := range users {
		u.cl.CloseNow()
	}
	readers.Wait()
	t.report(o, sent, sendDur)
	return nil
}

// send paces messages at o.rate until the duration or count runs out.
func (t *tracker) send(ctx context.Context, o options, users []*user) int {
	interval := time.Duration(float64(time.Second) / o.rate)
	end := time.Now().Add(o.duration)
	next := time.Now()
	sent := 0
	for sent < o.maxMessages && time.Now().Before(end) && ctx.Err() == nil {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		next = next.Add(interval)
		from := users[rand.IntN(len(users))]
		cid := strconv.Itoa(sent)
		public := rand.Float64() < o.publicRatio
		var to *user
		if !public {
			to = peer(users, from)
		}
		t.mu.Lock()
		t.sentAt[cid] = time.Now()
		if public {
			t.expect[cid] = len(users) - 1
		} else {
			t.expect[cid] = 1
		}
		t.mu.Unlock()
		var err error
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if public {
			err = from.cl.SendConv(wctx, cid, "public", "load "+cid)
		} else {
			err = from.cl.SendTo(wctx, cid, to.name, "load "+cid)
		}
		cancel()
		if err != nil {
			t.mu.Lock()
			t.errors["write_failed"]++
			delete(t.expect, cid)
			t.mu.Unlock()
		}
		sent++
	}
	return sent
}

// peer picks a user on another gateway when there is one.
func peer(users []*user, from *user) *user {
	for tries := 0; ; tries++ {
		p := users[rand.IntN(len(users))]
		if p != from && (p.gw != from.gw || tries > 20) {
			return p
		}
	}
}

func (t *tracker) read(u *user) {
	for {
		f, err := u.cl.Next(context.Background())
		if err != nil {
			return
		}
		now := time.Now()
		t.mu.Lock()
		switch f.Type {
		case "sent":
			if at, ok := t.sentAt[f.CID]; ok && !t.acked[f.CID] {
				t.acked[f.CID] = true
				t.ackLat = append(t.ackLat, now.Sub(at))
			}
		case "error":
			t.errors[f.Code]++
			delete(t.expect, f.CID)
		case "message":
			if strings.HasPrefix(f.Body, "load ") {
				t.got[f.CID]++
				if at, ok := t.sentAt[f.CID]; ok {
					t.deliverLa = append(t.deliverLa, now.Sub(at))
				}
			}
		}
		t.mu.Unlock()
	}
}

func (t *tracker) complete() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for cid, n := range t.expect {
		if !t.acked[cid] || t.got[cid] < n {
			return false
		}
	}
	return true
}

func (t *tracker) report(o options, sent int, sendDur time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var expected, delivered, missing, dups, unacked int
	for cid, n := range t.expect {
		expected += n
		got := t.got[cid]
		delivered += min(got, n)
		if got < n && t.acked[cid] {
			missing += n - got
		}
		if got > n {
			dups += got - n
		}
		if !t.acked[cid] {
			unacked++
		}
	}
	fmt.Printf("users %d on %d gateways, target %.0f msg/s, public %.0f%%\n", o.users, len(o.gateways), o.rate, o.publicRatio*100)
	fmt.Printf("sent %d in %v (%.0f msg/s); acked %d; unacked %d; errors %v\n",
		sent, sendDur.Round(time.Millisecond), float64(sent)/sendDur.Seconds(), len(t.acked), unacked, t.errors)
	fmt.Printf("deliveries expected %d, delivered %d, missing (acked but not received) %d, duplicates %d\n",
		expected, delivered, missing, dups)
	fmt.Printf("ack latency      %s\n", percentiles(t.ackLat))
	fmt.Printf("delivery latency %s\n", percentiles(t.deliverLa))
}

func percentiles(d []time.Duration) string {
	if len(d) == 0 {
		return "n/a"
	}
	s := slices.Clone(d)
	slices.Sort(s)
	p := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return fmt.Sprintf("p50 %v  p90 %v  p99 %v  max %v  (n=%d)",
		p(.5).Round(10*time.Microsecond), p(.9).Round(10*time.Microsecond), p(.99).Round(10*time.Microsecond),
		s[len(s)-1].Round(10*time.Microsecond), len(s))
}
