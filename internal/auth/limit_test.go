package auth

import (
	"testing"
	"time"
)

func TestLoginLimitsTripAndRecover(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := NewLimits(LimitsConfig{
		PerUser: Limit{Every: 10 * time.Second, Burst: 2},
		PerIP:   Limit{Every: time.Second, Burst: 3},
		Now:     func() time.Time { return now },
	})
	for i := range 2 {
		if _, ok := l.Allow("1.2.3.4", "alice"); !ok {
			t.Fatalf("attempt %d refused", i+1)
		}
	}
	wait, ok := l.Allow("1.2.3.4", "alice")
	if ok || wait != 10*time.Second {
		t.Fatalf("third attempt for alice: ok=%v wait=%v; want refused for 10s", ok, wait)
	}
	// The refused attempt spent nothing: the address has one left.
	if _, ok := l.Allow("1.2.3.4", "bob"); !ok {
		t.Fatal("bob refused: the refused attempt spent the address's token")
	}
	if wait, ok := l.Allow("1.2.3.4", "carol"); ok || wait != time.Second {
		t.Fatalf("fourth attempt from the address: ok=%v wait=%v; want refused for 1s", ok, wait)
	}
	if _, ok := l.Allow("5.6.7.8", "carol"); !ok {
		t.Fatal("another address is limited by the first one's attempts")
	}
	now = now.Add(10 * time.Second)
	if _, ok := l.Allow("1.2.3.4", "alice"); !ok {
		t.Fatal("alice still refused after her bucket refilled")
	}
}

func TestLimitsForgetIdleKeysAndShareABucketWhenFull(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := NewLimits(LimitsConfig{PerIP: Limit{Every: time.Minute, Burst: 1}, MaxKeys: 2, Now: func() time.Time { return now }})
	for _, ip := range []string{"a", "b", "c"} {
		_, ok := l.Allow(ip, "")
		if !ok {
			t.Fatalf("%s refused", ip)
		}
	}
	if _, ok := l.Allow("d", ""); ok {
		t.Fatal("d allowed: with the map full of busy buckets newcomers share one, which c emptied")
	}
	if n := len(l.client.m); n != 2 {
		t.Fatalf("%d buckets kept, want at most 2", n)
	}
	now = now.Add(time.Minute)
	if _, ok := l.Allow("e", ""); !ok {
		t.Fatal("e refused after every bucket refilled")
	}
	if _, ok := l.client.m["e"]; !ok {
		t.Fatal("idle buckets were not dropped to make room for e")
	}
}
