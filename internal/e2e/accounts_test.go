//go:build integration

package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/internal/auth"
	"github.com/switchboard-chat/switchboard/internal/gateway"
	"github.com/switchboard-chat/switchboard/internal/rediskit"
	"github.com/switchboard-chat/switchboard/internal/wsclient"
)

var (
	testKey  = auth.Key{ID: "k1", Secret: []byte(strings.Repeat("1", 32))}
	otherKey = auth.Key{ID: "k1", Secret: []byte(strings.Repeat("2", 32))} // same kid, other secret
)

// newJWTCluster is a cluster whose gateways run in jwt mode with testKey.
func newJWTCluster(t *testing.T) *cluster {
	t.Helper()
	c := newCluster(t)
	c.tokens = mustTokens(t, auth.TokenConfig{Signing: testKey})
	return c
}

func mustTokens(t *testing.T, cfg auth.TokenConfig) *auth.Tokens {
	t.Helper()
	tk, err := auth.NewTokens(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// answer is a REST answer.
type answer struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (a answer) code() string {
	e, _ := a.body["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

func (a answer) token() string { s, _ := a.body["token"].(string); return s }

// call makes a REST request to g; token, when set, is sent as a Bearer.
func call(t *testing.T, g *gw, method, path, body, token string) answer {
	t.Helper()
	req, err := http.NewRequest(method, g.httpURL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if err := json.Unmarshal(raw, &a.body); err != nil {
		t.Fatalf("%s %s: %d with a body that is not JSON: %q", method, path, resp.StatusCode, raw)
	}
	return a
}

func creds(user, pw string) string {
	b, _ := json.Marshal(map[string]string{"username": user, "password": pw})
	return string(b)
}

func TestAnAccountRegistersLogsInAndConnectsWithItsToken(t *testing.T) {
	c := newJWTCluster(t)
	g := c.startGateway("a")

	if a := call(t, g, "GET", "/api/auth/mode", "", ""); a.status != 200 || a.body["mode"] != "jwt" {
		t.Fatalf("mode: %d %s", a.status, a.raw)
	}
	reg := call(t, g, "POST", "/api/auth/register", creds("alice", "correct horse"), "")
	if reg.status != 201 || reg.token() == "" {
		t.Fatalf("register: %d %s", reg.status, reg.raw)
	}
	user := reg.body["user"].(map[string]any)
	if user["id"] != "alice" || user["created_at"].(float64) <= 0 || strings.Contains(reg.raw, "argon2") {
		t.Fatalf("register answered user %v (%s)", user, reg.raw)
	}
	login := call(t, g, "POST", "/api/auth/login", creds("alice", "correct horse"), "")
	if login.status != 200 || login.token() == "" || login.body["user"].(map[string]any)["id"] != "alice" {
		t.Fatalf("login: %d %s", login.status, login.raw)
	}
	me := call(t, g, "GET", "/api/auth/me", "", login.token())
	if me.status != 200 || me.body["user"].(map[string]any)["id"] != "alice" || strings.Contains(me.raw, "argon2") {
		t.Fatalf("me: %d %s", me.status, me.raw)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, _, err := wsclient.Dial(ctx, "ws://"+g.srv.Addr().String()+"/ws?token="+login.token(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.CloseNow()
	if cl.Hello.User != "alice" {
		t.Fatalf("hello as %q", cl.Hello.User)
	}
	hdr := http.Header{"Authorization": {"Bearer " + reg.token()}}
	cl2, _, err := wsclient.Dial(ctx, "ws://"+g.srv.Addr().String()+"/ws", hdr)
	if err != nil {
		t.Fatalf("dial with the header: %v", err)
	}
	defer cl2.CloseNow()
}

func TestAWrongPasswordAndAnUnknownUserGetTheSameAnswer(t *testing.T) {
	c := newJWTCluster(t)
	g := c.startGateway("a")
	if a := call(t, g, "POST", "/api/auth/register", creds("alice", "correct horse"), ""); a.status != 201 {
		t.Fatalf("register: %d %s", a.status, a.raw)
	}
	wrong := call(t, g, "POST", "/api/auth/login", creds("alice", "wrong horse!"), "")
	unknown := call(t, g, "POST", "/api/auth/login", creds("nobody", "wrong horse!"), "")
	invalid := call(t, g, "POST", "/api/auth/login", creds("Not Valid", "wrong horse!"), "")
	for name, a := range map[string]answer{"unknown user": unknown, "invalid name": invalid} {
		if a.status != wrong.status || a.raw != wrong.raw {
			t.Errorf("%s: %d %s; wrong password: %d %s", name, a.status, a.raw, wrong.status, wrong.raw)
		}
	}
	if wrong.status != 401 || wrong.code() != "unauthorized" {
		t.Fatalf("wrong password: %d %s", wrong.status, wrong.raw)
	}
}

func TestBadTokensAreRefusedBeforeTheUpgradeAndByREST(t *testing.T) {
	c := newJWTCluster(t)
	g := c.startGateway("a")
	good, _, _ := c.tokens.Issue("alice")
	expired, _, _ := mustTokens(t, auth.TokenConfig{Signing: testKey, Now: func() time.Time { return time.Now().Add(-48 * time.Hour) }}).Issue("alice")
	wrongKey, _, _ := mustTokens(t, auth.TokenConfig{Signing: otherKey}).Issue("alice")
	parts := strings.Split(good, ".")
	forged := parts[0] + "." + strings.TrimRight(jsonB64(`{"iss":"switchboard","sub":"mallory","exp":9999999999}`), "=") + "." + parts[2]
	alg := strings.TrimRight(jsonB64(`{"alg":"none","typ":"JWT","kid":"k1"}`), "=") + "." + parts[1] + "."

	for name, tok := range map[string]string{
		"no token": "", "expired": expired, "wrong key": wrongKey, "forged claims": forged, "alg none": alg, "garbage": "abc",
	} {
		t.Run(name, func(t *testing.T) {
			if a := call(t, g, "GET", "/api/auth/me", "", tok); a.status != 401 || a.code() != "unauthorized" {
				t.Errorf("me: %d %s", a.status, a.raw)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cl, resp, err := wsclient.Dial(ctx, "ws://"+g.srv.Addr().String()+"/ws?token="+tok, nil)
			if err == nil {
				cl.CloseNow()
				t.Fatal("upgraded")
			}
			if resp == nil || resp.StatusCode != 401 {
				t.Fatalf("handshake answer %v: %v", resp, err)
			}
		})
	}
	// Open mode's ?user= is not trusted in jwt mode.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if cl, resp, err := wsclient.Dial(ctx, "ws://"+g.srv.Addr().String()+"/ws?user=alice", nil); err == nil || resp == nil || resp.StatusCode != 401 {
		if cl != nil {
			cl.CloseNow()
		}
		t.Fatalf("?user= in jwt mode: %v %v", resp, err)
	}
}

func jsonB64(s string) string {
	return b64(s)
}

func TestRegistrationRefusesBadInput(t *testing.T) {
	c := newJWTCluster(t)
	g := c.startGateway("a", func(cfg *gateway.Config) { cfg.LoginPerIP = auth.Limit{Every: time.Millisecond, Burst: 1000} })
	for _, tc := range []struct {
		name, body string
		status     int
		code       string
	}{
		{"malformed JSON", `{"username":"bob",`, 400, "bad_request"},
		{"an unknown field", `{"username":"bob","password":"12345678","admin":true}`, 400, "bad_request"},
		{"two values", `{"username":"bob","password":"12345678"}{}`, 400, "bad_request"},
		{"an invalid name", creds("Bob!", "12345678"), 400, "bad_request"},
		{"a reserved name", creds("public", "12345678"), 400, "bad_request"},
		{"a name too long", creds(strings.Repeat("b", 33), "12345678"), 400, "bad_request"},
		{"a short password", creds("bob", "1234567"), 400, "bad_request"},
		{"a password too long", creds("bob", strings.Repeat("p", 129)), 400, "bad_request"},
		{"a huge body", creds("bob", strings.Repeat("p", 1<<20)), 413, "too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := call(t, g, "POST", "/api/auth/register", tc.body, "")
			if a.status != tc.status || a.code() != tc.code {
				t.Errorf("%d %s; want %d %s", a.status, a.raw, tc.status, tc.code)
			}
			if len(a.raw) > 1024 {
				t.Errorf("the answer echoes the input: %d bytes", len(a.raw))
			}
		})
	}
	if a := call(t, g, "POST", "/api/auth/login", `{"username":"bob"`, ""); a.status != 400 || a.code() != "bad_request" {
		t.Errorf("login with malformed JSON: %d %s", a.status, a.raw)
	}
	if a := call(t, g, "POST", "/api/auth/register", creds("bob", "12345678"), ""); a.status != 201 {
		t.Fatalf("bob could not register after the refusals: %d %s", a.status, a.raw)
	}
}

func TestTwoGatewaysRacingToRegisterOneNameCreateOneAccount(t *testing.T) {
	c := newJWTCluster(t)
	roomy := func(cfg *gateway.Config) { cfg.LoginPerUser = auth.Limit{Every: time.Millisecond, Burst: 100} }
	gws := []*gw{c.startGateway("a", roomy), c.startGateway("b", roomy)}
	const racers = 8
	var wg sync.WaitGroup
	answers := make([]answer, racers)
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = call(t, gws[i%2], "POST", "/api/auth/register", creds("carol", fmt.Sprintf("password-%d", i)), "")
		}()
	}
	wg.Wait()
	winner := -1
	for i, a := range answers {
		switch {
		case a.status == 201 && winner < 0:
			winner = i
		case a.status == 201:
			t.Fatalf("two registrations of carol succeeded: %d and %d", winner, i)
		case a.status != 409 || a.code() != "conflict":
			t.Fatalf("racer %d: %d %s; want 409 conflict", i, a.status, a.raw)
		}
	}
	if winner < 0 {
		t.Fatal("no registration succeeded")
	}
	for i := range racers {
		a := call(t, gws[(i+1)%2], "POST", "/api/auth/login", creds("carol", fmt.Sprintf("password-%d", i)), "")
		if (a.status == 200) != (i == winner) {
			t.Errorf("login with racer %d's password on the other gateway: %d (winner %d)", i, a.status, winner)
		}
	}
	if a := call(t, gws[1], "POST", "/api/auth/register", creds("carol", "password-x"), ""); a.status != 409 {
		t.Fatalf("a later registration: %d %s", a.status, a.raw)
	}
}

func TestAnAccountSurvivesARedisLossAndRebuild(t *testing.T) {
	c := newJWTCluster(t)
	g := c.startGateway("a")
	r := c.startRouter()
	if a := call(t, g, "POST", "/api/auth/register", creds("dave", "dave's password"), ""); a.status != 201 {
		t.Fatalf("register: %d %s", a.status, a.raw)
	}
	ctx := context.Background()
	if _, err := rediskit.DeleteMatching(ctx, c.rdb, c.prefix+"*"); err != nil {
		t.Fatal(err)
	}
	if a := call(t, g, "POST", "/api/auth/register", creds("dave", "a new password"), ""); a.status != 503 || a.code() != "unavailable" {
		t.Fatalf("register while Redis is not restored: %d %s; want 503 unavailable", a.status, a.raw)
	}
	if _, err := r.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	if a := call(t, g, "POST", "/api/auth/login", creds("dave", "dave's password"), ""); a.status != 200 {
		t.Fatalf("login after the rebuild: %d %s", a.status, a.raw)
	}
	if a := call(t, g, "POST", "/api/auth/register", creds("dave", "a new password"), ""); a.status != 409 {
		t.Fatalf("re-registration after the rebuild: %d %s; want 409", a.status, a.raw)
	}
}

func TestLoginAttemptsAreLimitedPerUserAndRecover(t *testing.T) {
	c := newJWTCluster(t)
	g := c.startGateway("a", func(cfg *gateway.Config) { cfg.LoginPerUser = auth.Limit{Every: 3 * time.Second, Burst: 3} })
	if a := call(t, g, "POST", "/api/auth/register", creds("erin", "erin's password"), ""); a.status != 201 {
		t.Fatalf("register: %d %s", a.status, a.raw)
	}
	for i := range 2 {
		if a := call(t, g, "POST", "/api/auth/login", creds("erin", "guess"+fmt.Sprint(i)+"xxxx"), ""); a.status != 401 {
			t.Fatalf("guess %d: %d %s", i, a.status, a.raw)
		}
	}
	// A token comes back every 3s: the fourth attempt, well within that, is refused.
	a := call(t, g, "POST", "/api/auth/login", creds("erin", "erin's password"), "")
	if retry, _ := strconv.Atoi(a.header.Get("Retry-After")); a.status != 429 || a.code() != "rate_limited" || retry < 1 || retry > 3 {
		t.Fatalf("fourth attempt: %d %s Retry-After %q; want 429 rate_limited with Retry-After 1-3", a.status, a.raw, a.header.Get("Retry-After"))
	}
	if a := call(t, g, "POST", "/api/auth/login", creds("frank", "frank's password"), ""); a.status != 401 {
		t.Fatalf("another user is limited by erin's attempts: %d %s", a.status, a.raw)
	}
	eventually(t, 10*time.Second, "erin's bucket to refill", func() bool {
		return call(t, g, "POST", "/api/auth/login", creds("erin", "erin's password"), "").status == 200
	})
}

func TestALiveSocketIsClosedWith4001WhenItsTokenExpires(t *testing.T) {
	c := newJWTCluster(t)
	g := c.startGateway("a")
	short := mustTokens(t, auth.TokenConfig{Signing: testKey, TTL: 2 * time.Second})
	tok, exp, _ := short.Issue("gina")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cl, _, err := wsclient.Dial(ctx, "ws://"+g.srv.Addr().String()+"/ws?token="+tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.CloseNow()
	select {
	case <-cl.Done():
	case <-ctx.Done():
		t.Fatal("still open long after the token expired")
	}
	if st := websocketStatus(cl); st != 4001 {
		t.Fatalf("closed with %d (%v), want 4001", st, cl.Err())
	}
	if early := time.Until(exp); early > 50*time.Millisecond {
		t.Fatalf("closed %v before the token expired", early)
	}
}

func TestOpenModeHasNoAccounts(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway("a")
	if a := call(t, g, "GET", "/api/auth/mode", "", ""); a.status != 200 || a.body["mode"] != "open" {
		t.Fatalf("mode: %d %s", a.status, a.raw)
	}
	if a := call(t, g, "POST", "/api/auth/register", creds("hank", "12345678"), ""); a.status != 404 {
		t.Fatalf("register in open mode: %d %s", a.status, a.raw)
	}
	req, _ := http.NewRequest("GET", g.httpURL()+"/api/auth/me?user=hank", bytes.NewReader(nil))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("me in open mode: %d", resp.StatusCode)
	}
}

func b64(s string) string { return base64.URLEncoding.EncodeToString([]byte(s)) }

// Registration materializes the account at once, name index included: a
// search right after the 201 finds it, before any router applied its
// record (none runs here).
func TestARegisteredUserIsFoundBySearchAtOnce(t *testing.T) {
	c := newJWTCluster(t)
	g := c.startGateway("a")
	reg := call(t, g, "POST", "/api/auth/register", creds("quinn", "correct horse"), "")
	if reg.status != 201 {
		t.Fatalf("register: %d %s", reg.status, reg.raw)
	}
	found := call(t, g, "GET", "/api/users/search?q=quin", "", reg.token())
	users, _ := found.body["users"].([]any)
	if found.status != 200 || len(users) != 1 || users[0].(map[string]any)["id"] != "quinn" {
		t.Fatalf("search right after the registration: %d %s", found.status, found.raw)
	}
}
