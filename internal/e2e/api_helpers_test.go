//go:build integration

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/internal/wsclient"
)

// apiCall is one REST request as user ("" for none) and its answer.
func apiCall(t testing.TB, g *gw, user, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		if s, ok := body.(string); ok {
			rd = strings.NewReader(s)
		} else {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
	}
	u := g.httpURL() + path
	if user != "" {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		u += sep + "user=" + url.QueryEscape(user)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s %s: %d %q is not a JSON object", method, path, resp.StatusCode, raw)
		}
	}
	return resp.StatusCode, out
}

// mustAPI calls the API and fails unless it answers want.
func mustAPI(t testing.TB, g *gw, user, method, path string, body any, want int) map[string]any {
	t.Helper()
	status, out := apiCall(t, g, user, method, path, body)
	if status != want {
		t.Fatalf("%s %s as %q: got %d %v, want %d", method, path, user, status, out, want)
	}
	return out
}

// errCode is the error code of an error answer.
func errCode(out map[string]any) string {
	e, _ := out["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

// createGroup creates a group as owner with members and returns its id.
func createGroup(t testing.TB, g *gw, owner string, members ...string) string {
	t.Helper()
	out := mustAPI(t, g, owner, "POST", "/api/conversations", map[string]any{"kind": "group", "name": "team", "members": members}, 201)
	conv := out["conversation"].(map[string]any)
	return conv["id"].(string)
}

// sendConv sends a message to conv and returns the sent (or error) frame.
func sendConv(t testing.TB, cl *wsclient.Client, cid, conv, body string) wsclient.Frame {
	t.Helper()
	if err := cl.SendConv(context.Background(), cid, conv, body); err != nil {
		t.Fatal(err)
	}
	return expect(t, cl, "answer to "+cid, isSent(cid))
}

// topicEnds sums the end offsets of each gateway's topic.
func (c *cluster) topicEnds(gws ...*gw) []int64 {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out := make([]int64, len(gws))
	for i, g := range gws {
		ends, err := c.admin.EndOffsets(ctx, g.id.Topic())
		if err != nil {
			c.t.Fatal(err)
		}
		for _, e := range ends {
			out[i] += e
		}
	}
	return out
}

// syncConvs runs a full sync on cl and returns the synced frame.
func syncAll(t testing.TB, cl *wsclient.Client) wsclient.Frame {
	t.Helper()
	if err := cl.SendJSON(context.Background(), map[string]any{"type": "sync"}); err != nil {
		t.Fatal(err)
	}
	return expect(t, cl, "synced", func(f wsclient.Frame) bool { return f.Type == "synced" || f.Type == "error" })
}
