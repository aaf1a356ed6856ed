package gateway

import (
	"slices"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/protocol"
)

// The fuzz targets below feed REST bodies through the decode-and-check
// step their handlers use (decodeCreate, decodePatch, decodeRead,
// decodePost) and what the handler does next without I/O: nothing
// panics, every refusal is bad_request (or too_large), and whatever is
// accepted keeps the rules.

// checkGroup fails t unless g is a well-formed group owned by owner.
func checkGroup(t *testing.T, g *chat.Conversation, owner chat.UserID) {
	t.Helper()
	if r, ok := g.RoleOf(owner); !ok || r != chat.RoleOwner {
		t.Fatalf("owner %s has role %q (member: %v)", owner, r, ok)
	}
	if len(g.Members) > chat.MaxGroupMembers || !slices.IsSorted(g.Members) || len(slices.Compact(slices.Clone(g.Members))) != len(g.Members) {
		t.Fatalf("members %q: not sorted, unique and at most %d", g.Members, chat.MaxGroupMembers)
	}
	for _, m := range g.Members {
		if _, err := chat.ParseUserID(string(m)); err != nil {
			t.Fatalf("member %q: %v", m, err)
		}
	}
	owners := 0
	for u, r := range g.Roles {
		if !slices.Contains(g.Members, u) {
			t.Fatalf("role %q for %q, not a member", r, u)
		}
		if r == chat.RoleOwner {
			owners++
		}
	}
	if owners != 1 {
		t.Fatalf("%d owners", owners)
	}
	if g.Name == "" || utf8.RuneCountInString(g.Name) > chat.MaxGroupName || !utf8.ValidString(g.Name) {
		t.Fatalf("group name %q", g.Name)
	}
}

// badRequest fails t unless perr is a refusal of the client's input.
func badRequest(t *testing.T, perr *protocol.Error) {
	t.Helper()
	if perr.Code != protocol.CodeBadRequest && perr.Code != protocol.CodeTooLarge {
		t.Fatalf("refused with %s: %s", perr.Code, perr.Message)
	}
}

// FuzzCreateConversationBody: POST /api/conversations. An accepted direct
// body names a valid peer; an accepted group body either makes a
// well-formed group owned by its creator or is refused by chat.NewGroup.
func FuzzCreateConversationBody(f *testing.F) {
	for _, seed := range []string{
		`{"kind":"direct","with":"bob"}`,
		`{"kind":"group","name":"team","members":["bob","carol"]}`,
		`{"kind":"group","name":"  ","members":[]}`,
		`{"kind":"group","name":"x","members":["alice","alice","Bob"]}`,
		`{"kind":"direct","with":"public"}`,
		`{"kind":"channel"}`,
		`{"kind":"group","name":"\ud800"}`,
		`{"kind":"direct","with":"bob","extra":1}`,
		`{"kind":"group","name":"t","members":null}{}`,
		`null`, `[]`, `{"kind":1}`,
	} {
		f.Add([]byte(seed))
	}
	const owner = chat.UserID("alice")
	f.Fuzz(func(t *testing.T, body []byte) {
		req, perr := decodeCreate(body)
		if perr != nil {
			badRequest(t, perr)
			return
		}
		switch req.Kind {
		case chat.KindDirect:
			if _, err := chat.ParseUserID(string(req.With)); err != nil {
				t.Fatalf("accepted direct with %q: %v", req.With, err)
			}
			if _, ok := chat.DirectConv(owner, req.With).Peer(owner); !ok {
				t.Fatalf("direct conversation with %q has no peer for %s", req.With, owner)
			}
		case chat.KindGroup:
			g, err := chat.NewGroup(chat.NewGroupID(chat.NewMessageID(time.Unix(1, 0))), req.Name, owner, req.Members, 1)
			if err != nil {
				badRequest(t, groupRefusal(err))
				return
			}
			checkGroup(t, g, owner)
		default:
			t.Fatalf("accepted kind %q", req.Kind)
		}
	})
}

// FuzzPatchConversationBody: PATCH /api/conversations/{id}, applied by the
// owner and by a plain member to a group of three. A change applied keeps
// the group well-formed and its owner; a plain member can only leave.
func FuzzPatchConversationBody(f *testing.F) {
	for _, seed := range []string{
		`{"name":"renamed"}`,
		`{"add":["dave"],"roles":{"dave":"admin"}}`,
		`{"remove":["alice"]}`,
		`{"remove":["carol"]}`,
		`{"roles":{"alice":"member"}}`,
		`{"roles":{"bob":"owner"}}`,
		`{"remove":["bob"],"roles":{"bob":"admin"}}`,
		`{"name":null,"add":[],"remove":[],"roles":{}}`,
		`{"name":""}`,
		`{"add":["x"],"add":["y"]}`,
		`{"owner":"bob"}`,
		`{"roles":{"\u00e9":"admin"}}`,
	} {
		f.Add([]byte(seed))
	}
	const owner, member = chat.UserID("alice"), chat.UserID("carol")
	f.Fuzz(func(t *testing.T, body []byte) {
		req, perr := decodePatch(body)
		if perr != nil {
			badRequest(t, perr)
			return
		}
		for _, actor := range []chat.UserID{owner, member} {
			g, err := chat.NewGroup(chat.NewGroupID(chat.NewMessageID(time.Unix(1, 0))), "team", owner, []chat.UserID{"bob", member}, 1)
			if err != nil {
				t.Fatal(err)
			}
			before := *g
			err = g.Change(actor, req.change(), 2)
			if err != nil {
				if g.Version != before.Version || !slices.Equal(g.Members, before.Members) {
					t.Fatalf("refused change by %s altered the group: %v", actor, err)
				}
				if perr := groupRefusal(err); perr.Code != protocol.CodeForbidden {
					badRequest(t, perr)
				}
				continue
			}
			checkGroup(t, g, owner)
			if actor == member && (slices.Contains(g.Members, member) || len(g.Members) != len(before.Members)-1 || g.Name != before.Name) {
				t.Fatalf("a plain member's change %+v did more than leave: %q", req, g.Members)
			}
		}
	})
}

// FuzzMarkReadBody: PUT /api/conversations/{id}/read accepts exactly
// {"seq": n} with n >= 1.
func FuzzMarkReadBody(f *testing.F) {
	for _, seed := range []string{
		`{"seq":1}`, `{"seq":9000000000000000000}`, `{"seq":0}`, `{"seq":-3}`, `{"seq":1.5}`,
		`{"seq":"7"}`, `{"seq":null}`, `{}`, `{"seq":1,"conv":"public"}`, `{"seq":1e3}`,
		`{"seq":99999999999999999999}`, `{"seq":2}{"seq":3}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		seq, perr := decodeRead(body)
		if perr != nil {
			badRequest(t, perr)
			return
		}
		if seq < 1 {
			t.Fatalf("accepted seq %d", seq)
		}
	})
}

// FuzzPostMessageBody: POST /api/messages is a send frame without "type":
// an accepted body is a send with a cid, a non-empty valid body within the
// limit and exactly one target, as the WebSocket send frame checks.
func FuzzPostMessageBody(f *testing.F) {
	for _, seed := range []string{
		`{"cid":"c1","conv":"public","body":"hello"}`,
		`{"cid":"c2","to":"bob","body":"hi"}`,
		`{"cid":"c3","conv":"g:01hzzzzzzzzzzzzzzzzzzzzzzz","body":"x"}`,
		`{"cid":"c4","to":"bob","conv":"public","body":"both"}`,
		`{"type":"send","cid":"c5","conv":"public","body":"typed"}`,
		`{"cid":"","conv":"public","body":"no cid"}`,
		`{"cid":"c6","conv":"public","body":""}`,
		`{"cid":"c7","conv":"public","body":"\ud800"}`,
		`{"cid":"c8","conv":"public","body":"a","since":{"public":1}}`,
		`{"cid":"c9","cid":"c10","conv":"public","body":"dup"}`,
		`{"cid":"c11","conv":"d:alice:bob","body":"direct"}`,
		`null`, `[]`, `"send"`, `{"cid":1}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		in, perr := decodePost(body)
		if perr != nil {
			badRequest(t, perr)
			return
		}
		switch {
		case in.Type != protocol.TypeSend:
			t.Fatalf("accepted type %q", in.Type)
		case in.CID == "" || len(in.CID) > protocol.MaxCIDLen:
			t.Fatalf("accepted cid %q", in.CID)
		case in.Body == "" || len(in.Body) > protocol.MaxBodyBytes || !utf8.ValidString(in.Body):
			t.Fatalf("accepted body of %d bytes (valid UTF-8: %v)", len(in.Body), utf8.ValidString(in.Body))
		case (in.To == "") == (in.Conv == ""):
			t.Fatalf("accepted to %q and conv %q", in.To, in.Conv)
		}
		if in.Conv != "" {
			if c, err := chat.ParseConvID(string(in.Conv)); err != nil || c != in.Conv {
				t.Fatalf("accepted conv %q: %v", in.Conv, err)
			}
		}
		if in.To != "" {
			if _, err := chat.ParseUserID(string(in.To)); err != nil {
				t.Fatalf("accepted to %q: %v", in.To, err)
			}
		}
	})
}
