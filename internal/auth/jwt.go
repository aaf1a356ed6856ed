package auth

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/switchboard-chat/switchboard/internal/chat"
)

// ExpiringIdentity is an Identity whose credentials expire. The gateway
// closes a WebSocket with 4001 (session expired) at the expiry.
type ExpiringIdentity interface {
	Identity
	// AuthenticateUntil returns the user making r and when its credential
	// expires.
	AuthenticateUntil(r *http.Request) (chat.UserID, time.Time, error)
}

// JWT authenticates requests by a token of Tokens. REST (Authenticate)
// takes it from the "Authorization: Bearer <jwt>" header only: a token in
// a URL ends up in logs, proxies and browser history. The WebSocket
// handshake (AuthenticateUntil) also takes the "token" query parameter,
// since browsers cannot set headers on a WebSocket; the header wins when
// both are present.
type JWT struct{ Tokens *Tokens }

// Authenticate returns the user of the request's Authorization header.
func (j JWT) Authenticate(r *http.Request) (chat.UserID, error) {
	raw, err := bearer(r, false)
	if err != nil {
		return "", err
	}
	u, _, err := j.Tokens.Check(raw)
	return u, err
}

// AuthenticateUntil returns the user of a WebSocket handshake's token
// (header or query) and its expiry.
func (j JWT) AuthenticateUntil(r *http.Request) (chat.UserID, time.Time, error) {
	raw, err := bearer(r, true)
	if err != nil {
		return "", time.Time{}, err
	}
	return j.Tokens.Check(raw)
}

// bearer returns the request's token: the Authorization header's, else,
// when query is true, the token query parameter.
func bearer(r *http.Request, query bool) (string, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
			return "", fmt.Errorf("%w: Authorization header must be Bearer <token>", ErrUnauthenticated)
		}
		return strings.TrimSpace(tok), nil
	}
	if tok := r.URL.Query().Get("token"); tok != "" && query {
		return tok, nil
	}
	return "", fmt.Errorf("%w: log in and send Authorization: Bearer <token> (or ?token= on /ws)", ErrUnauthenticated)
}
