//go:build integration

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/wsclient"
)

// refusal is one request that must be refused with a status and code.
type refusal struct {
	name, user, method, path string
	body                     any
	status                   int
	code                     string
}

func checkRefusals(t *testing.T, g *gw, cases []refusal) {
	t.Helper()
	for _, tc := range cases {
		status, out := apiCall(t, g, tc.user, tc.method, tc.path, tc.body)
		if status != tc.status || errCode(out) != tc.code {
			t.Errorf("%s: %s %s as %q answered %d %v, want %d %s", tc.name, tc.method, tc.path, tc.user, status, out, tc.status, tc.code)
		}
	}
}

func TestUsersSearchAndStatus(t *testing.T) {
	c := newCluster(t)
	gw1 := c.startGateway("gw-1")
	c.startRouter()
	zed1 := c.dial(gw1, "zed1")
	c.dial(gw1, "zed2").Close()
	eventually(t, 20*time.Second, "both users to be materialized", func() bool {
		_, out := apiCall(t, gw1, "zed1", "GET", "/api/users/search?q=zed", nil)
		users, _ := out["users"].([]any)
		return len(users) == 2
	})
	out := mustAPI(t, gw1, "zed1", "GET", "/api/users/search?q=zed&limit=1", nil, 200)
	users := out["users"].([]any)
	if len(users) != 1 || users[0].(map[string]any)["id"] != "zed1" || users[0].(map[string]any)["online"] != true {
		t.Fatalf("search with limit 1: %v", out)
	}
	out = mustAPI(t, gw1, "zed1", "GET", "/api/users/zed1/status", nil, 200)
	if out["online"] != true || out["id"] != "zed1" {
		t.Fatalf("status of an online user: %v", out)
	}
	eventually(t, 10*time.Second, "zed2 offline with a last_seen", func() bool {
		_, out := apiCall(t, gw1, "zed1", "GET", "/api/users/zed2/status", nil)
		return out["online"] == false && out["last_seen"] != nil
	})
	_ = zed1
	checkRefusals(t, gw1, []refusal{
		{"search without identity", "", "GET", "/api/users/search?q=zed", nil, 401, "unauthorized"},
		{"search with an invalid prefix", "zed1", "GET", "/api/users/search?q=Zed", nil, 400, "bad_request"},
		{"search with limit 0", "zed1", "GET", "/api/users/search?q=zed&limit=0", nil, 400, "bad_request"},
		{"status of an unknown user", "zed1", "GET", "/api/users/nobody/status", nil, 404, "not_found"},
		{"status of an invalid id", "zed1", "GET", "/api/users/" + url.PathEscape("A!") + "/status", nil, 400, "bad_request"},
		{"status without identity", "", "GET", "/api/users/zed1/status", nil, 401, "unauthorized"},
	})
}

func TestConversationsCreateGetPatchAndList(t *testing.T) {
	c := newCluster(t)
	gw1 := c.startGateway("gw-1")
	c.startRouter()
	out := mustAPI(t, gw1, "bob", "POST", "/api/conversations", map[string]any{"kind": "direct", "with": "alice"}, 201)
	if conv := out["conversation"].(map[string]any); conv["id"] != "dm:alice:bob" || conv["kind"] != "direct" {
		t.Fatalf("direct conversation: %v", out)
	}
	conv := createGroup(t, gw1, "alice", "bob", "carol")
	out = mustAPI(t, gw1, "bob", "GET", "/api/conversations/"+conv, nil, 200)
	roles := map[string]string{}
	for _, m := range out["conversation"].(map[string]any)["members"].([]any) {
		m := m.(map[string]any)
		roles[m["id"].(string)] = m["role"].(string)
	}
	if fmt.Sprint(roles) != "map[alice:owner bob:member carol:member]" {
		t.Fatalf("members and roles: %v", roles)
	}
	mustAPI(t, gw1, "alice", "PATCH", "/api/conversations/"+conv, map[string]any{"name": "renamed", "roles": map[string]string{"bob": "admin"}}, 200)
	out = mustAPI(t, gw1, "bob", "PATCH", "/api/conversations/"+conv, map[string]any{"remove": []string{"carol"}}, 200)
	if g := out["conversation"].(map[string]any); g["name"] != "renamed" || len(g["members"].([]any)) != 2 {
		t.Fatalf("after rename, promotion and removal by the new admin: %v", out)
	}

	// The list: public first, then the group, with last message and unread.
	alice := c.dial(gw1, "alice")
	sendConv(t, alice, "g1", conv, "hello group")
	eventually(t, 20*time.Second, "the group's message in bob's list", func() bool {
		_, out := apiCall(t, gw1, "bob", "GET", "/api/conversations", nil)
		list, _ := out["conversations"].([]any)
		for _, it := range list {
			it := it.(map[string]any)
			last, _ := it["last_message"].(map[string]any)
			if it["id"] == conv && it["name"] == "renamed" && it["kind"] == "group" && it["unread"] == 1.0 && last["body"] == "hello group" {
				return list[0].(map[string]any)["id"] == "public"
			}
		}
		return false
	})

	checkRefusals(t, gw1, []refusal{
		{"list without identity", "", "GET", "/api/conversations", nil, 401, "unauthorized"},
		{"create with an unknown kind", "alice", "POST", "/api/conversations", map[string]any{"kind": "room"}, 400, "bad_request"},
		{"create direct with an invalid user", "alice", "POST", "/api/conversations", map[string]any{"kind": "direct", "with": "A"}, 400, "bad_request"},
		{"create a group without a name", "alice", "POST", "/api/conversations", map[string]any{"kind": "group", "members": []string{"bob"}}, 400, "bad_request"},
		{"create with malformed JSON", "alice", "POST", "/api/conversations", `{"kind":`, 400, "bad_request"},
		{"create with an unknown field", "alice", "POST", "/api/conversations", map[string]any{"kind": "group", "name": "x", "owner": "eve"}, 400, "bad_request"},
		{"create without identity", "", "POST", "/api/conversations", map[string]any{"kind": "direct", "with": "bob"}, 401, "unauthorized"},
		{"get as a non-member", "eve", "GET", "/api/conversations/" + conv, nil, 403, "forbidden"},
		{"get as a removed member", "carol", "GET", "/api/conversations/" + conv, nil, 403, "forbidden"},
		{"get someone else's direct conversation", "eve", "GET", "/api/conversations/dm:alice:bob", nil, 403, "forbidden"},
		{"get a group that does not exist", "alice", "GET", "/api/conversations/g:nope", nil, 404, "not_found"},
		{"get an invalid id", "alice", "GET", "/api/conversations/x:y", nil, 400, "bad_request"},
		{"patch as a plain member", "dave", "PATCH", "/api/conversations/" + conv, map[string]any{"name": "mine"}, 403, "forbidden"},
		{"remove the owner", "bob", "PATCH", "/api/conversations/" + conv, map[string]any{"remove": []string{"alice"}}, 403, "forbidden"},
		{"demote the owner", "bob", "PATCH", "/api/conversations/" + conv, map[string]any{"roles": map[string]string{"alice": "member"}}, 403, "forbidden"},
		{"patch as a non-member", "eve", "PATCH", "/api/conversations/" + conv, map[string]any{"name": "x"}, 403, "forbidden"},
		{"patch a group that does not exist", "alice", "PATCH", "/api/conversations/g:nope", map[string]any{"name": "x"}, 404, "not_found"},
		{"patch with an invalid member", "alice", "PATCH", "/api/conversations/" + conv, map[string]any{"add": []string{"Bad"}}, 400, "bad_request"},
		{"patch with an empty name", "alice", "PATCH", "/api/conversations/" + conv, map[string]any{"name": " "}, 400, "bad_request"},
		{"patch a direct conversation", "alice", "PATCH", "/api/conversations/dm:alice:bob", map[string]any{"name": "x"}, 400, "bad_request"},
		{"patch without identity", "", "PATCH", "/api/conversations/" + conv, map[string]any{"name": "x"}, 401, "unauthorized"},
	})
}

func TestMessagesSendPageReadAndRefusals(t *testing.T) {
	c := newCluster(t)
	gw1, gw2 := c.startGateway("gw-1"), c.startGateway("gw-2")
	c.startRouter()
	conv := createGroup(t, gw1, "alice", "bob")
	bob := c.dial(gw2, "bob")
	var ids []string
	for i := 0; i < 5; i++ {
		out := mustAPI(t, gw1, "alice", "POST", "/api/messages", map[string]any{"cid": fmt.Sprint("c", i), "conv": conv, "body": fmt.Sprint("m", i)}, 201)
		ids = append(ids, out["id"].(string))
		expect(t, bob, "bob gets a REST send live", isMessage(fmt.Sprint("c", i)))
	}
	again := mustAPI(t, gw1, "alice", "POST", "/api/messages", map[string]any{"cid": "c4", "conv": conv, "body": "m4"}, 201)
	if again["id"] != ids[4] || again["seq"] != 5.0 {
		t.Fatalf("a repeated cid answered %v, want the original %s seq 5", again, ids[4])
	}
	direct := mustAPI(t, gw1, "alice", "POST", "/api/messages", map[string]any{"cid": "d1", "to": "bob", "body": "hi"}, 201)
	if direct["conv"] != "dm:alice:bob" {
		t.Fatalf("direct send: %v", direct)
	}
	// Read your writes: the newest page, asked for on the other gateway
	// right after the 201, holds the message.
	newest := mustAPI(t, gw2, "bob", "GET", "/api/conversations/dm:alice:bob/messages?limit=1", nil, 200)
	if msgs, _ := newest["messages"].([]any); len(msgs) != 1 || msgs[0].(map[string]any)["body"] != "hi" {
		t.Fatalf("the newest page right after the send: %v", newest)
	}

	// Pages, newest first, down to the first message.
	eventually(t, 20*time.Second, "the router to apply the group's messages", func() bool {
		_, out := apiCall(t, gw1, "bob", "GET", "/api/conversations/"+conv+"/messages?limit=2", nil)
		msgs, _ := out["messages"].([]any)
		return len(msgs) == 2
	})
	var got []string
	path := "/api/conversations/" + conv + "/messages?limit=2"
	for page := 0; ; page++ {
		out := mustAPI(t, gw1, "bob", "GET", path, nil, 200)
		for _, m := range out["messages"].([]any) {
			got = append(got, m.(map[string]any)["body"].(string))
		}
		next, ok := out["next_before"].(float64)
		if !ok {
			break
		}
		path = fmt.Sprintf("/api/conversations/%s/messages?limit=2&before=%d", conv, int64(next))
		if page > 5 {
			t.Fatal("paging does not end")
		}
	}
	if fmt.Sprint(got) != "[m4 m3 m2 m1 m0]" {
		t.Fatalf("pages: %v", got)
	}

	// A read mark is a read receipt: stored and relayed.
	alice := c.dial(gw1, "alice")
	mustAPI(t, gw2, "bob", "PUT", "/api/conversations/"+conv+"/read", map[string]any{"seq": 5}, 204)
	f := expect(t, alice, "alice gets bob's read mark", func(f wsclient.Frame) bool { return f.Type == "receipt" })
	if f.User != "bob" || f.Seq != 5 || f.Status != "read" {
		t.Fatalf("read mark relayed as %s", f.Raw)
	}

	checkRefusals(t, gw1, []refusal{
		{"send without identity", "", "POST", "/api/messages", map[string]any{"cid": "x", "conv": conv, "body": "x"}, 401, "unauthorized"},
		{"send to a group of others", "eve", "POST", "/api/messages", map[string]any{"cid": "x", "conv": conv, "body": "x"}, 403, "forbidden"},
		{"send to someone else's direct conversation", "eve", "POST", "/api/messages", map[string]any{"cid": "x", "conv": "dm:alice:bob", "body": "x"}, 403, "forbidden"},
		{"send to no group", "alice", "POST", "/api/messages", map[string]any{"cid": "x", "conv": "g:nope", "body": "x"}, 404, "not_found"},
		{"send with both to and conv", "alice", "POST", "/api/messages", map[string]any{"cid": "x", "to": "bob", "conv": conv, "body": "x"}, 400, "bad_request"},
		{"send without a body", "alice", "POST", "/api/messages", map[string]any{"cid": "x", "conv": conv}, 400, "bad_request"},
		{"send with a type", "alice", "POST", "/api/messages", map[string]any{"type": "receipt", "cid": "x", "conv": conv, "body": "x"}, 400, "bad_request"},
		{"send a JSON array", "alice", "POST", "/api/messages", `[1]`, 400, "bad_request"},
		{"page without identity", "", "GET", "/api/conversations/" + conv + "/messages", nil, 401, "unauthorized"},
		{"page of a group of others", "eve", "GET", "/api/conversations/" + conv + "/messages", nil, 403, "forbidden"},
		{"page of no group", "alice", "GET", "/api/conversations/g:nope/messages", nil, 404, "not_found"},
		{"page with limit 101", "alice", "GET", "/api/conversations/" + conv + "/messages?limit=101", nil, 400, "bad_request"},
		{"page with before 0", "alice", "GET", "/api/conversations/" + conv + "/messages?before=0", nil, 400, "bad_request"},
		{"read without identity", "", "PUT", "/api/conversations/" + conv + "/read", map[string]any{"seq": 1}, 401, "unauthorized"},
		{"read in a group of others", "eve", "PUT", "/api/conversations/" + conv + "/read", map[string]any{"seq": 1}, 403, "forbidden"},
		{"read in no group", "alice", "PUT", "/api/conversations/g:nope/read", map[string]any{"seq": 1}, 404, "not_found"},
		{"read beyond the latest seq", "alice", "PUT", "/api/conversations/" + conv + "/read", map[string]any{"seq": 6}, 400, "bad_request"},
		{"read without a seq", "alice", "PUT", "/api/conversations/" + conv + "/read", map[string]any{}, 400, "bad_request"},
	})
}

func TestDeletedMessageVanishesLiveAndIsATombstoneInHistoryAndSync(t *testing.T) {
	c := newCluster(t)
	gw1, gw2 := c.startGateway("gw-1"), c.startGateway("gw-2")
	c.startRouter()
	conv := createGroup(t, gw1, "alice", "bob", "carol")
	bob, carol := c.dial(gw1, "bob"), c.dial(gw2, "carol")
	mine := sendConv(t, bob, "b1", conv, "delete me")
	other := mustAPI(t, gw1, "alice", "POST", "/api/messages", map[string]any{"cid": "a1", "conv": conv, "body": "keep me"}, 201)
	expect(t, carol, "carol gets b1", isMessage("b1"))
	eventually(t, 20*time.Second, "the router to index the messages", func() bool {
		status, _ := apiCall(t, gw1, "eve", "DELETE", "/api/messages/"+mine.ID, nil)
		return status == 403
	})
	checkRefusals(t, gw1, []refusal{
		{"delete without identity", "", "DELETE", "/api/messages/" + mine.ID, nil, 401, "unauthorized"},
		{"delete as a non-member", "eve", "DELETE", "/api/messages/" + mine.ID, nil, 403, "forbidden"},
		{"delete another member's message as a plain member", "bob", "DELETE", "/api/messages/" + other["id"].(string), nil, 403, "forbidden"},
		{"delete an unknown message", "bob", "DELETE", "/api/messages/01ARZ3NDEKTSV4RRFFQ69G5FAV", nil, 404, "not_found"},
		{"delete an invalid id", "bob", "DELETE", "/api/messages/nope", nil, 400, "bad_request"},
	})

	// The owner deletes bob's message: carol sees it vanish live.
	mustAPI(t, gw1, "alice", "DELETE", "/api/messages/"+mine.ID, nil, 204)
	f := expect(t, carol, "carol gets the tombstone", func(f wsclient.Frame) bool { return f.Type == "message" && f.ID == mine.ID && f.Deleted })
	if f.Body != "" || f.Seq != mine.Seq {
		t.Fatalf("tombstone: %s", f.Raw)
	}
	eventually(t, 20*time.Second, "the tombstone in history", func() bool {
		_, out := apiCall(t, gw2, "carol", "GET", "/api/conversations/"+conv+"/messages", nil)
		msgs, _ := out["messages"].([]any)
		for _, m := range msgs {
			m := m.(map[string]any)
			if m["id"] == mine.ID {
				return m["deleted"] == true && m["body"] == ""
			}
		}
		return false
	})
	fresh := c.dial(gw2, "carol")
	if err := fresh.SendJSON(context.Background(), map[string]any{"type": "sync", "since": map[string]int64{conv: 0}, "only": true}); err != nil {
		t.Fatal(err)
	}
	f = expect(t, fresh, "the tombstone in sync", func(f wsclient.Frame) bool { return f.Type == "message" && f.ID == mine.ID })
	if !f.Deleted || f.Body != "" {
		t.Fatalf("sync returned %s", f.Raw)
	}
	mustAPI(t, gw1, "bob", "DELETE", "/api/messages/"+mine.ID, nil, 204) // again: nothing changes
}

func TestRESTSendsSpendTheUsersMessageRate(t *testing.T) {
	c := newCluster(t)
	gw1 := c.startGateway("gw-1", func(cfg *gatewayConfig) { cfg.MessageRate, cfg.MessageBurst = 0.01, 1 })
	c.dial(gw1, "alice") // holds alice's bucket on this gateway
	mustAPI(t, gw1, "alice", "POST", "/api/messages", map[string]any{"cid": "r1", "to": "bob", "body": "x"}, 201)
	status, out := apiCall(t, gw1, "alice", "POST", "/api/messages", map[string]any{"cid": "r2", "to": "bob", "body": "x"})
	if status != 429 || errCode(out) != "rate_limited" {
		t.Fatalf("a send past the rate answered %d %v, want 429 rate_limited", status, out)
	}
}

func TestRESTOnlySendsTripTheMessageRateAndRecover(t *testing.T) {
	c := newCluster(t)
	gw1 := c.startGateway("gw-1", func(cfg *gatewayConfig) { cfg.MessageRate, cfg.MessageBurst = 2, 2 })
	send := func(cid string) answer {
		return call(t, gw1, "POST", "/api/messages?user=alice", `{"cid":"`+cid+`","to":"bob","body":"x"}`, "")
	}
	// alice has no connection: each request must still spend one bucket.
	for _, cid := range []string{"r1", "r2"} {
		if a := send(cid); a.status != 201 {
			t.Fatalf("send %s within the burst: %d %s", cid, a.status, a.raw)
		}
	}
	a := send("r3")
	if retry, _ := strconv.Atoi(a.header.Get("Retry-After")); a.status != 429 || a.code() != "rate_limited" || retry != 1 {
		t.Fatalf("a send past the burst: %d %s Retry-After %q; want 429 rate_limited with Retry-After 1",
			a.status, a.raw, a.header.Get("Retry-After"))
	}
	eventually(t, 5*time.Second, "a send accepted again once the bucket refills", func() bool {
		a := send("r3")
		if a.status != 201 && a.status != 429 {
			t.Fatalf("retry answered %d %s", a.status, a.raw)
		}
		return a.status == 201
	})
}

// unreadOf is conv's unread count in user's conversation list (-1: not
// listed).
func unreadOf(t *testing.T, g *gw, user, conv string) int {
	t.Helper()
	_, out := apiCall(t, g, user, "GET", "/api/conversations", nil)
	list, _ := out["conversations"].([]any)
	for _, it := range list {
		if it := it.(map[string]any); it["id"] == conv {
			n, _ := it["unread"].(float64)
			return int(n)
		}
	}
	return -1
}

func TestUnreadCountsOnlyOthersMessages(t *testing.T) {
	c := newCluster(t)
	gw1 := c.startGateway("gw-1")
	c.startRouter()
	conv := createGroup(t, gw1, "alice", "bob")
	post := func(user, cid, body string) float64 {
		out := mustAPI(t, gw1, user, "POST", "/api/messages", map[string]any{"cid": cid, "conv": conv, "body": body}, 201)
		seq, _ := out["seq"].(float64)
		return seq
	}
	// Bodies that quote the other's "from" field must not pass for it.
	post("alice", "a1", "hi")
	post("bob", "b1", `"from":"alice"`)
	post("alice", "a2", `"from":"bob"`)
	post("bob", "b2", "x")
	last := post("bob", "b3", "y")
	eventually(t, 20*time.Second, "bob's list counts alice's 2 messages, alice's bob's 3", func() bool {
		return unreadOf(t, gw1, "bob", conv) == 2 && unreadOf(t, gw1, "alice", conv) == 3
	})
	if last <= 0 {
		t.Fatalf("no seq in the sent answer")
	}
	mustAPI(t, gw1, "bob", "PUT", "/api/conversations/"+conv+"/read", map[string]any{"seq": last}, 204)
	post("bob", "b4", "z") // bob's own, above his mark: still nothing unread
	post("alice", "a3", "w")
	eventually(t, 20*time.Second, "bob's list counts only alice's message above his mark", func() bool {
		return unreadOf(t, gw1, "bob", conv) == 1 && unreadOf(t, gw1, "alice", conv) == 4
	})
}

// A message can be deleted as soon as its sender got "sent": the gateway
// waits for the views to hold it (the router indexes message ids) rather
// than answering 404. No router runs until the DELETE is on its way.
func TestAMessageCanBeDeletedRightAfterItWasSent(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway("gw-1")
	alice, bob := c.dial(g, "alice"), c.dial(g, "bob")
	conv := string(chat.DirectConv("alice", "bob"))
	sent := sendConv(t, alice, "oops", conv, "sent by mistake")
	status := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("DELETE", g.httpURL()+"/api/messages/"+sent.ID+"?user=alice", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			status <- 0
			return
		}
		resp.Body.Close()
		status <- resp.StatusCode
	}()
	c.startRouter()
	if st := <-status; st != http.StatusNoContent {
		t.Fatalf("DELETE right after the send: %d, want 204", st)
	}
	expect(t, bob, "bob gets the tombstone", func(f wsclient.Frame) bool { return f.Type == "message" && f.ID == sent.ID && f.Deleted })
}
