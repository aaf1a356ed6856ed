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

// JWT authenticates requests by a token of Tokens, taken from the
// "Authorization: Bearer <jwt>" header or, for browsers' WebSockets, the
// "token" query parameter. The header wins when both are present.
type JWT struct{ Tokens *Tokens }

// Authenticate returns the token's user.
func (j JWT) Authenticate(r *http.Request) (chat.UserID, error) {
	u, _, err := j.AuthenticateUntil(r)
	return u, err
}

// AuthenticateUntil returns the token's user and expiry.
func (j JWT) AuthenticateUntil(r *http.Request) (chat.UserID, time.Time, error) {
	raw, err := bearer(r)
	if err != nil {
		return "", time.Time{}, err
	}
	return j.Tokens.Check(raw)
}

// bearer returns the request's token.
func bearer(r *http.Request) (string, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
			return "", fmt.Errorf("%w: Authorization header must be Bearer <token>", ErrUnauthenticated)
		}
		return strings.TrimSpace(tok), nil
	}
	if tok := r.URL.Query().Get("token"); tok != "" {
		return tok, nil
	}
	return "", fmt.Errorf("%w: log in and send Authorization: Bearer <token> (or ?token= on /ws)", ErrUnauthenticated)
}
