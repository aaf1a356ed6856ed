//go:build integration

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/internal/router"
	"github.com/switchboard-chat/switchboard/internal/wsclient"
)

// adminURL is the base URL of g's admin listener (/metrics).
func (g *gw) adminURL() string { return "http://" + g.srv.AdminAddr().String() }

// status GETs url with header h (may be nil) and returns the status code.
func status(t *testing.T, url string, h http.Header) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestMetricsAreServedOnTheAdminAddressOnly(t *testing.T) {
	c := newCluster(t)
	r := c.startRouter()
	g := c.startGateway("gw-1")
	for _, tc := range []struct {
		url  string
		want int
	}{
		{g.httpURL() + "/metrics", http.StatusNotFound},
		{"http://" + r.Addr().String() + "/metrics", http.StatusNotFound},
		{g.adminURL() + "/metrics", http.StatusOK},
		{"http://" + r.AdminAddr().String() + "/metrics", http.StatusOK},
		{g.httpURL() + "/readyz", http.StatusOK},
		{g.adminURL() + "/readyz", http.StatusOK},
		{g.adminURL() + "/healthz", http.StatusOK},
		{g.adminURL() + "/debug/pprof/", http.StatusNotFound}, // ADMIN_PPROF is off by default
		{"http://" + r.Addr().String() + "/ops", http.StatusNotFound},
	} {
		if got := status(t, tc.url, nil); got != tc.want {
			t.Errorf("GET %s: %d, want %d", tc.url, got, tc.want)
		}
	}
}

// opsJSON reads the router's /ops.json with token.
func opsJSON(t *testing.T, r *router.Router, token string) router.OpsView {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+r.AdminAddr().String()+"/ops.json", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/ops.json: %d", resp.StatusCode)
	}
	var v router.OpsView
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestTheOpsPageShowsTheLiveCluster(t *testing.T) {
	const token = "ops-test-token"
	c := newCluster(t)
	r := c.startRouter(func(cfg *router.Config) { cfg.AdminToken = token; cfg.AuditTopic = "chat-audit-" + c.name })
	gw1, gw2 := c.startGateway("gw-1"), c.startGateway("gw-2")
	base := "http://" + r.AdminAddr().String()

	for _, tc := range []struct {
		name string
		url  string
		h    http.Header
		want int
	}{
		{"no token", base + "/ops", nil, http.StatusUnauthorized},
		{"a wrong bearer token", base + "/ops.json", http.Header{"Authorization": {"Bearer nope"}}, http.StatusUnauthorized},
		{"a wrong query token", base + "/ops?token=nope", nil, http.StatusUnauthorized},
		{"the query token", base + "/ops?token=" + token, nil, http.StatusOK},
		{"the bearer token", base + "/ops.json", http.Header{"Authorization": {"Bearer " + token}}, http.StatusOK},
	} {
		if got := status(t, tc.url, tc.h); got != tc.want {
			t.Errorf("%s: GET %s: %d, want %d", tc.name, tc.url, got, tc.want)
		}
	}

	alice, bob := c.dial(gw1, "alice"), c.dial(gw2, "bob")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 5 {
		cid := fmt.Sprintf("ops-%d", i)
		if err := alice.SendTo(ctx, cid, "bob", "hello"); err != nil {
			t.Fatal(err)
		}
		expect(t, alice, "sent", isSent(cid))
		expect(t, bob, "message", isMessage(cid))
	}
	// A refused handshake is audited.
	if _, _, err := wsclient.Dial(ctx, gw1.wsURL("mallory"), http.Header{"Origin": {"https://evil.example"}}); err == nil {
		t.Fatal("a foreign origin was accepted")
	}

	var v router.OpsView
	eventually(t, 20*time.Second, "the ops page to show both gateways, the traffic, no lag and the audit record", func() bool {
		v = opsJSON(t, r, token)
		conns := map[string]int64{}
		for _, g := range v.Gateways {
			if g.Live && g.Version != "" && g.LeaseAge >= 0 && g.LeaseAge < 3 {
				conns[string(g.ID)] = g.Connections
			}
		}
		var chatLog, delivered int64
		lagFree := true
		for _, tp := range v.Topics {
			switch {
			case tp.Name == c.chatLog:
				chatLog = tp.End
				lagFree = lagFree && tp.Group != "" && tp.Lag == 0 && len(tp.Partitions) == 4
			case strings.HasPrefix(tp.Name, "messages-"):
				delivered += tp.End
				lagFree = lagFree && tp.Lag == 0
			}
		}
		audited := false
		for _, a := range v.Audit {
			audited = audited || (a.Type == "connect_refused" && string(a.Server) == string(gw1.id))
		}
		return conns[string(gw1.id)] == 1 && conns[string(gw2.id)] == 1 && chatLog >= 5 && delivered >= 5 && lagFree && audited
	})
	if v.Unprotected || len(v.Errors) != 0 {
		t.Fatalf("unprotected %v, errors %v", v.Unprotected, v.Errors)
	}
	// Rates are end-offset deltas between views at least a second apart.
	for i := range 3 {
		cid := fmt.Sprintf("rate-%d", i)
		if err := alice.SendTo(ctx, cid, "bob", "again"); err != nil {
			t.Fatal(err)
		}
		expect(t, alice, "sent", isSent(cid))
	}
	eventually(t, 10*time.Second, "a message rate", func() bool {
		v = opsJSON(t, r, token)
		return v.Rates.Known && v.Rates.Messages > 0
	})

	browserCheck(t, base, token)
}

// browserCheck loads the page in headless Chromium (test/browser/ops.test.mjs):
// it renders under its CSP and shows the gateways. The screenshot goes to
// OPS_SCREENSHOT (docs/ops.png is made so), else a temporary directory.
// Skipped when Chromium or the node modules are missing.
func browserCheck(t *testing.T, base, token string) {
	dir, _ := filepath.Abs("../../test/browser")
	chromium := os.Getenv("CHROMIUM_PATH")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	node, err := exec.LookPath("node")
	if _, serr := os.Stat(filepath.Join(dir, "node_modules", "puppeteer-core")); err != nil || serr != nil {
		t.Log("browser check skipped: node or test/browser/node_modules missing")
		return
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Log("browser check skipped: no Chromium at " + chromium)
		return
	}
	shot := os.Getenv("OPS_SCREENSHOT")
	if shot == "" {
		shot = filepath.Join(t.TempDir(), "ops.png")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "ops.test.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "OPS_URL="+base, "ADMIN_TOKEN="+token, "OPS_SCREENSHOT="+shot, "CHROMIUM_PATH="+chromium)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("browser check: %v\n%s", err, out)
	}
}
