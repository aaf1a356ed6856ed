package gateway

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
)

// A caller gets a read that started after it asked, never the answer of a
// read already under way; the callers that ask during one read share the
// next.
func TestCoalescedReadsStartAfterTheCallersAsked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		reads := 0
		c := newCoalesced(func(context.Context) (int, error) {
			reads++
			n := reads
			<-release
			return n, nil
		})
		ctx := context.Background()
		first := make(chan int, 1)
		go func() { v, _ := c.get(ctx); first <- v }()
		synctest.Wait() // read 1 is under way
		var wg sync.WaitGroup
		later := make([]int, 100)
		for i := range later {
			wg.Add(1)
			go func() { defer wg.Done(); later[i], _ = c.get(ctx) }()
		}
		synctest.Wait() // all 100 wait behind read 1
		release <- struct{}{}
		if v := <-first; v != 1 {
			t.Fatalf("the first caller got read %d, want 1", v)
		}
		synctest.Wait() // read 2 is under way
		release <- struct{}{}
		wg.Wait()
		for i, v := range later {
			if v != 2 {
				t.Fatalf("caller %d, which asked while read 1 ran, got read %d, want 2", i, v)
			}
		}
		if reads != 2 {
			t.Fatalf("%d reads for 101 callers, want 2", reads)
		}
	})
}

// A caller whose context ends stops waiting; the read still serves the
// others.
func TestCoalescedCallerGivesUpOnItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		c := newCoalesced(func(context.Context) (int, error) { <-release; return 7, nil })
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { _, err := c.get(ctx); errc <- err }()
		other := make(chan int, 1)
		go func() { v, _ := c.get(context.Background()); other <- v }()
		synctest.Wait()
		cancel()
		if err := <-errc; err != context.Canceled {
			t.Fatalf("canceled caller got %v", err)
		}
		close(release)
		if v := <-other; v != 7 {
			t.Fatalf("the other caller got %d, want 7", v)
		}
	})
}
