//go:build integration

package e2e

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/rediskit"
	"github.com/switchboard-chat/switchboard/internal/wsclient"
)

func TestGroupOfAThousandOnTwoGatewaysCostsTwoCopiesPerSend(t *testing.T) {
	c := newCluster(t)
	fast := func(cfg *gatewayConfig) { cfg.ConnectRate, cfg.ConnectBurst = 5000, 5000 }
	gw1, gw2, idle := c.startGateway("gw-1", fast), c.startGateway("gw-2", fast), c.startGateway("gw-3")
	c.startRouter()
	const n = 1000
	var members []string
	for i := 1; i < n; i++ {
		members = append(members, fmt.Sprintf("m%04d", i))
	}
	conv := createGroup(t, gw1, "m0000", members...)
	all := append([]string{"m0000"}, members...)
	clients := make([]*wsclient.Client, n)
	for i, u := range all {
		g := gw1
		if i%2 == 1 {
			g = gw2
		}
		clients[i] = c.dial(g, u)
	}
	// The sender's first message proves both gateways are in the index
	// (a copy reaches a member on each); then one more send is counted.
	expectAll := func(cid string) {
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for _, cl := range clients[1:] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				if _, err := cl.WaitFor(ctx, isMessage(cid)); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			t.Fatalf("a member did not get %s: %v", cid, err)
		}
	}
	if f := sendConv(t, clients[0], "first", conv, "hello all"); f.Type != "sent" {
		t.Fatalf("group send answered %s", f.Raw)
	}
	expectAll("first")
	before := c.topicEnds(gw1, gw2, idle)
	if f := sendConv(t, clients[0], "counted", conv, "one copy per gateway"); f.Type != "sent" {
		t.Fatalf("group send answered %s", f.Raw)
	}
	expectAll("counted")
	after := c.topicEnds(gw1, gw2, idle)
	for i, want := range []int64{1, 1, 0} {
		if got := after[i] - before[i]; got != want {
			t.Errorf("gateway %d: %d delivery copies for one send to %d members, want %d", i+1, got, n, want)
		}
	}
}

func TestRemovalFromAGroupStopsDeliveryAtOnceOnAnotherGateway(t *testing.T) {
	c := newCluster(t)
	gw1, gw2 := c.startGateway("gw-1"), c.startGateway("gw-2")
	c.startRouter()
	conv := createGroup(t, gw1, "alice", "bob", "carol")
	alice, bob, carol := c.dial(gw1, "alice"), c.dial(gw2, "bob"), c.dial(gw2, "carol")
	sendConv(t, alice, "m1", conv, "before")
	expect(t, bob, "bob gets m1", isMessage("m1"))
	expect(t, carol, "carol gets m1", isMessage("m1"))

	mustAPI(t, gw1, "alice", "PATCH", "/api/conversations/"+conv, map[string]any{"remove": []string{"bob"}}, 200)
	sendConv(t, alice, "m2", conv, "after")
	expect(t, carol, "carol gets m2", isMessage("m2"))
	// A direct message sent after m2 reaches bob through the same topic,
	// after m2's copy: bob must see it without m2 before it.
	if err := alice.SendTo(context.Background(), "marker", "bob", "marker"); err != nil {
		t.Fatal(err)
	}
	f := expect(t, bob, "bob gets the marker", func(f wsclient.Frame) bool { return isMessage("marker")(f) || isMessage("m2")(f) })
	if f.CID == "m2" {
		t.Fatalf("bob got a group message after his removal: %s", f.Raw)
	}
	// And bob can no longer use the group at all.
	if f := sendConv(t, bob, "b1", conv, "still here?"); f.Code != "forbidden" {
		t.Fatalf("a removed member's send answered %s", f.Raw)
	}
	if err := bob.SendJSON(context.Background(), map[string]any{"type": "history", "conv": conv}); err != nil {
		t.Fatal(err)
	}
	if f := expect(t, bob, "history answer", func(f wsclient.Frame) bool { return f.Type == "history" || f.Type == "error" }); f.Code != "forbidden" {
		t.Fatalf("a removed member's history answered %s", f.Raw)
	}
	if f := syncAll(t, bob); f.Convs[conv] != 0 {
		t.Fatalf("a removed member's sync covered the group: %s", f.Raw)
	}

	// An added member gets the group in its next sync, and live messages.
	mustAPI(t, gw2, "carol", "PATCH", "/api/conversations/"+conv, map[string]any{"add": []string{"dave"}}, 403) // not an admin
	mustAPI(t, gw1, "alice", "PATCH", "/api/conversations/"+conv, map[string]any{"add": []string{"dave"}}, 200)
	dave := c.dial(gw2, "dave")
	if f := syncAll(t, dave); f.Convs[conv] < 2 {
		t.Fatalf("an added member's sync: %s, want %s up to seq 2", f.Raw, conv)
	}
	sendConv(t, alice, "m3", conv, "welcome")
	expect(t, dave, "dave gets m3", isMessage("m3"))
}

func TestNonMembersGetForbiddenAndUnknownGroupsNotFoundOnTheWebSocket(t *testing.T) {
	c := newCluster(t)
	gw1 := c.startGateway("gw-1")
	c.startRouter()
	conv := createGroup(t, gw1, "alice", "bob")
	eve := c.dial(gw1, "eve")
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		conv  string
		frame map[string]any
		want  string
	}{
		{"send to a group of others", conv, map[string]any{"type": "send", "cid": "x1", "conv": conv, "body": "hi"}, "forbidden"},
		{"send to no group", "g:nope", map[string]any{"type": "send", "cid": "x2", "conv": "g:nope", "body": "hi"}, "not_found"},
		{"receipt in a group of others", conv, map[string]any{"type": "receipt", "conv": conv, "seq": 1, "status": "read"}, "forbidden"},
		{"typing in a group of others", conv, map[string]any{"type": "typing", "conv": conv, "state": "start"}, "forbidden"},
		{"history of a group of others", conv, map[string]any{"type": "history", "conv": conv}, "forbidden"},
		{"history of no group", "g:nope", map[string]any{"type": "history", "conv": "g:nope"}, "not_found"},
	} {
		if err := eve.SendJSON(ctx, tc.frame); err != nil {
			t.Fatal(err)
		}
		f := expect(t, eve, tc.name, func(f wsclient.Frame) bool { return f.Type == "error" || f.Type == "sent" || f.Type == "history" })
		if f.Type != "error" || f.Code != tc.want {
			t.Errorf("%s: got %s, want error %s", tc.name, f.Raw, tc.want)
		}
	}
	if f := syncAll(t, eve); f.Convs[conv] != 0 {
		t.Fatalf("a non-member's sync covered the group: %s", f.Raw)
	}
}

func TestGroupReceiptsAndTypingReachTheOtherMembers(t *testing.T) {
	c := newCluster(t)
	gw1, gw2 := c.startGateway("gw-1"), c.startGateway("gw-2")
	c.startRouter()
	conv := createGroup(t, gw1, "alice", "bob", "carol")
	alice, bob, carol := c.dial(gw1, "alice"), c.dial(gw2, "bob"), c.dial(gw1, "carol")
	sent := sendConv(t, alice, "m1", conv, "read me")
	expect(t, bob, "bob gets m1", isMessage("m1"))
	ctx := context.Background()
	if err := bob.SendJSON(ctx, map[string]any{"type": "receipt", "conv": conv, "seq": sent.Seq, "status": "read"}); err != nil {
		t.Fatal(err)
	}
	if err := bob.SendJSON(ctx, map[string]any{"type": "typing", "conv": conv, "state": "start"}); err != nil {
		t.Fatal(err)
	}
	for name, cl := range map[string]*wsclient.Client{"alice": alice, "carol": carol} {
		f := expect(t, cl, name+" gets bob's receipt", func(f wsclient.Frame) bool { return f.Type == "receipt" })
		if f.User != "bob" || f.Conv != conv || f.Seq != sent.Seq {
			t.Fatalf("%s got %s", name, f.Raw)
		}
		f = expect(t, cl, name+" sees bob typing", func(f wsclient.Frame) bool { return f.Type == "typing" })
		if f.User != "bob" || f.Conv != conv || f.State != "start" {
			t.Fatalf("%s got %s", name, f.Raw)
		}
	}
}

func TestGroupMembershipAndRolesComeBackFromARebuild(t *testing.T) {
	c := newCluster(t)
	gw1 := c.startGateway("gw-1")
	r := c.startRouter()
	conv := createGroup(t, gw1, "alice", "bob", "carol")
	mustAPI(t, gw1, "alice", "PATCH", "/api/conversations/"+conv, map[string]any{"remove": []string{"carol"}, "add": []string{"dave"}}, 200)
	mustAPI(t, gw1, "alice", "PATCH", "/api/conversations/"+conv, map[string]any{"name": "after", "roles": map[string]string{"bob": "admin"}}, 200)
	want := mustAPI(t, gw1, "bob", "GET", "/api/conversations/"+conv, nil, 200)
	msg := mustAPI(t, gw1, "bob", "POST", "/api/messages", map[string]any{"cid": "b1", "conv": conv, "body": "x"}, 201)
	eventually(t, 20*time.Second, "the router to index the message", func() bool {
		_, _, ok, err := c.store().FindMessage(context.Background(), msg["id"].(string))
		return ok && err == nil
	})

	ctx := context.Background()
	if _, err := rediskit.DeleteMatching(ctx, c.rdb, c.prefix+"*"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	if got := mustAPI(t, gw1, "bob", "GET", "/api/conversations/"+conv, nil, 200); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after the rebuild: %v, want %v", got, want)
	}
	mustAPI(t, gw1, "carol", "GET", "/api/conversations/"+conv, nil, 403)
	// The message index came back too: the new admin can delete by id.
	mustAPI(t, gw1, "bob", "DELETE", "/api/messages/"+msg["id"].(string), nil, 204)
	for user, in := range map[string]bool{"alice": true, "dave": true, "carol": false} {
		mine, err := c.store().Conversations(ctx, chat.UserID(user))
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(mine, chat.ConvID(conv)) != in {
			t.Errorf("%s's conversation list after the rebuild: %v (group expected: %v)", user, mine, in)
		}
	}
}

func TestASyncNamingAGroupOfOthersGetsNoDataOfIt(t *testing.T) {
	c := newCluster(t)
	gw1 := c.startGateway("gw-1")
	c.startRouter()
	conv := createGroup(t, gw1, "alice", "bob")
	for i, body := range []string{"secret 1", "secret 2"} {
		mustAPI(t, gw1, "alice", "POST", "/api/messages", map[string]any{"cid": fmt.Sprint("s", i), "conv": conv, "body": body}, 201)
	}
	mustAPI(t, gw1, "bob", "PUT", "/api/conversations/"+conv+"/read", map[string]any{"seq": 2}, 204)
	bob := c.dial(gw1, "bob")
	if f := syncAll(t, bob); f.Convs[conv] != 2 {
		t.Fatalf("a member's sync: %s, want %s up to seq 2", f.Raw, conv) // the group is there to leak
	}
	eve := c.dial(gw1, "eve")
	for _, only := range []bool{false, true} {
		if err := eve.SendJSON(context.Background(), map[string]any{"type": "sync", "since": map[string]int64{conv: 0}, "only": only}); err != nil {
			t.Fatal(err)
		}
		var leaked []string
		f := expect(t, eve, "synced", func(f wsclient.Frame) bool {
			if f.Conv == conv {
				leaked = append(leaked, string(f.Raw))
			}
			return f.Type == "synced" || f.Type == "error"
		})
		if _, ok := f.Convs[conv]; f.Type != "synced" || ok || len(leaked) > 0 {
			t.Fatalf("a sync (only %v) naming a group of others: %s, and frames of the group %q; want synced without it, no frames", only, f.Raw, leaked)
		}
	}
}
