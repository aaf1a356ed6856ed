//go:build integration

package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/internal/health"
	"github.com/switchboard-chat/switchboard/internal/route"
)

// readyAnswer is a /readyz answer (docs/PROTOCOL.md).
type readyAnswer struct {
	status int
	Ready  bool              `json:"ready"`
	Server string            `json:"server"`
	Checks map[string]string `json:"checks"`
}

func readyz(t *testing.T, g *gw) readyAnswer {
	t.Helper()
	client := &http.Client{Timeout: health.Timeout + time.Second}
	start := time.Now()
	resp, err := client.Get(g.httpURL() + "/readyz")
	if err != nil {
		t.Fatalf("readyz: %v", err)
	}
	defer resp.Body.Close()
	var r readyAnswer
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("readyz body: %v", err)
	}
	if took := time.Since(start); took > health.Timeout {
		t.Errorf("readyz took %v, over its bound %v", took, health.Timeout)
	}
	r.status = resp.StatusCode
	return r
}

// A gateway refuses every send while the restored marker is missing; its
// /readyz says so, with the reason, and is 200 again once the marker is
// back and a send would be accepted.
func TestReadinessFailsWithAReasonWhileSendsAreRefusedForARestore(t *testing.T) {
	c := newCluster(t)
	g := c.startGateway("gw-1") // an empty log: the gateway sets the marker itself
	ctx := context.Background()
	r := readyz(t, g)
	if r.status != http.StatusOK || !r.Ready || r.Checks["sends"] != "ok" || r.Server != string(g.id) {
		t.Fatalf("readyz of a fresh gateway: %d %+v, want 200 with sends ok", r.status, r)
	}

	if err := route.New(c.rdb, c.routeConfig()).ForgetRestored(ctx); err != nil {
		t.Fatal(err)
	}
	r = readyz(t, g)
	if r.status != http.StatusServiceUnavailable || r.Ready {
		t.Errorf("readyz without the restored marker: %d ready=%v, want 503", r.status, r.Ready)
	}
	if !strings.Contains(r.Checks["sends"], "being restored from the log") {
		t.Errorf("readyz without the restored marker: sends=%q, want the reason", r.Checks["sends"])
	}
	for _, name := range []string{"kafka", "redis"} {
		if r.Checks[name] != "ok" {
			t.Errorf("readyz without the restored marker: %s=%q, want ok", name, r.Checks[name])
		}
	}
	// What readiness promises: a send is refused now.
	alice := c.dial(g, "alice")
	if err := alice.SendTo(ctx, "while-restoring", "bob", "x"); err != nil {
		t.Fatal(err)
	}
	if f := expect(t, alice, "answer", isSent("while-restoring")); f.Type != "error" || f.Code != "unavailable" {
		t.Errorf("a send while readyz said not ready answered %s", f.Raw)
	}

	if err := route.New(c.rdb, c.routeConfig()).MarkRestored(ctx); err != nil {
		t.Fatal(err)
	}
	if r = readyz(t, g); r.status != http.StatusOK || r.Checks["sends"] != "ok" {
		t.Errorf("readyz once the marker is back: %d %v, want 200", r.status, r.Checks)
	}
	if err := alice.SendTo(ctx, "restored", "bob", "x"); err != nil {
		t.Fatal(err)
	}
	if f := expect(t, alice, "answer", isSent("restored")); f.Type != "sent" {
		t.Errorf("a send once readyz said ready answered %s", f.Raw)
	}
}
