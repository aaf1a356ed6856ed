package kafkabus

import (
	"context"
	"testing"
	"testing/synctest"
)

// TestALineWritesEverythingThatArrivedDuringARequestInTheNext: the first
// call is written alone at once; the calls that arrive while it is in
// flight go together in the next write, in arrival order; the line is
// idle again after, and the next call is written alone.
func TestALineWritesEverythingThatArrivedDuringARequestInTheNext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var writes [][]string
		l := &leaderLine{}
		l.write = func(calls []*leaderCall) {
			var names []string
			for _, c := range calls {
				names = append(names, c.parts[0].topic)
			}
			writes = append(writes, names)
			if len(writes) == 1 {
				<-release // the first request is in flight
			}
			for _, c := range calls {
				close(c.done)
			}
		}
		call := func(name string) *leaderCall {
			c := &leaderCall{ctx: context.Background(), parts: []*partitionRecords{{topic: name}}, done: make(chan struct{})}
			l.add(c)
			return c
		}
		first := call("a")
		synctest.Wait()
		b, c, d := call("b"), call("c"), call("d")
		synctest.Wait()
		if len(writes) != 1 {
			t.Fatalf("writes while the first is in flight: %v", writes)
		}
		close(release)
		for _, x := range []*leaderCall{first, b, c, d} {
			<-x.done
		}
		synctest.Wait()
		e := call("e")
		<-e.done
		want := [][]string{{"a"}, {"b", "c", "d"}, {"e"}}
		if len(writes) != len(want) {
			t.Fatalf("writes %v, want %v", writes, want)
		}
		for i := range want {
			if len(writes[i]) != len(want[i]) {
				t.Fatalf("writes %v, want %v", writes, want)
			}
			for j := range want[i] {
				if writes[i][j] != want[i][j] {
					t.Fatalf("writes %v, want %v", writes, want)
				}
			}
		}
		synctest.Wait()
		l.mu.Lock()
		busy := l.busy
		l.mu.Unlock()
		if busy {
			t.Fatal("the line is still busy with nothing waiting")
		}
	})
}
