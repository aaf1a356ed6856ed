package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// httpBase turns a gateway's ws:// base URL into its http:// one.
func httpBase(ws string) string {
	return strings.Replace(strings.Replace(ws, "ws://", "http://", 1), "wss://", "https://", 1)
}

// authMode returns o.auth, or asks the gateway (GET /api/auth/mode) when
// it is "auto".
func authMode(ctx context.Context, o options) (string, error) {
	if o.auth != "auto" {
		return o.auth, nil
	}
	var ans struct{ Mode string }
	if status, _, err := postJSON(ctx, "GET", httpBase(o.gateways[0])+"/api/auth/mode", nil, &ans); err != nil || status != 200 {
		return "", fmt.Errorf("ask %s for its auth mode: status %d: %v (pass -auth)", o.gateways[0], status, err)
	}
	return ans.Mode, nil
}

// wsPath is the /ws path for user name: ?user= in open mode, else a token
// from registering name (or logging in, when it exists from an earlier
// run; the password is derived from the name).
func wsPath(ctx context.Context, o options, gw int, name string) (string, error) {
	if o.mode != "jwt" {
		return "/ws?user=" + url.QueryEscape(name), nil
	}
	creds := map[string]string{"username": name, "password": "chatload-" + name}
	base := httpBase(o.gateways[gw]) + "/api/auth/"
	for _, op := range []string{"register", "login"} {
		var ans struct{ Token string }
		status, err := postAuth(ctx, base+op, creds, &ans)
		switch {
		case err != nil:
			return "", fmt.Errorf("%s %s: %w", op, name, err)
		case status == http.StatusConflict && op == "register":
			continue
		case status != http.StatusOK && status != http.StatusCreated:
			return "", fmt.Errorf("%s %s: HTTP %d", op, name, status)
		}
		return "/ws?token=" + url.QueryEscape(ans.Token), nil
	}
	return "", fmt.Errorf("login %s: no token", name)
}

// postAuth posts to a login endpoint, waiting out 429s as Retry-After says
// (raise AUTH_LOGIN_IP_BURST on the gateways for big runs), and 503s that
// carry a Retry-After (accounts refused while Redis is being restored) for
// up to a minute.
func postAuth(ctx context.Context, u string, body, into any) (int, error) {
	unavailableUntil := time.Now().Add(time.Minute)
	for {
		status, wait, err := postJSON(ctx, "POST", u, body, into)
		retry := status == http.StatusTooManyRequests ||
			status == http.StatusServiceUnavailable && wait > 0 && time.Now().Before(unavailableUntil)
		if !retry {
			return status, err
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(max(wait, 100*time.Millisecond)):
		}
	}
}

// postJSON makes a JSON request and decodes a 2xx answer into into; it
// returns the status and the Retry-After delay.
func postJSON(ctx context.Context, method, u string, body, into any) (int, time.Duration, error) {
	var buf bytes.Buffer
	if body != nil {
		if err := json.NewEncoder(&buf).Encode(body); err != nil {
			return 0, 0, err
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, u, &buf)
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	if resp.StatusCode < 300 {
		err = json.NewDecoder(resp.Body).Decode(into)
	} else if resp.StatusCode >= 500 {
		var e struct{ Message string }
		if json.NewDecoder(resp.Body).Decode(&e) == nil && e.Message != "" {
			err = &serverError{status: resp.StatusCode, msg: e.Message}
		}
	}
	return resp.StatusCode, time.Duration(secs) * time.Second, err
}

// serverError is a 5xx answer with the server's message.
type serverError struct {
	status int
	msg    string
}

func (e *serverError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.status, e.msg) }
