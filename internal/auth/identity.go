// Package auth decides who a request is: identity providers for the
// WebSocket handshake and the REST API.
package auth

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/switchboard-chat/switchboard/internal/chat"
)

// ErrUnauthenticated means the request carries no acceptable identity.
var ErrUnauthenticated = errors.New("unauthenticated")

// Identity authenticates requests. Implementations are safe for concurrent
// use.
type Identity interface {
	// Authenticate returns the user making r, or an error wrapping
	// ErrUnauthenticated that says why not.
	Authenticate(r *http.Request) (chat.UserID, error)
}

// IdentityFunc adapts a function to Identity.
type IdentityFunc func(r *http.Request) (chat.UserID, error)

// Authenticate calls f(r).
func (f IdentityFunc) Authenticate(r *http.Request) (chat.UserID, error) { return f(r) }

// Open trusts the "user" query parameter as is. It is for local demos and
// load tests only: anyone can be anyone.
type Open struct{}

// Authenticate returns the valid user id in ?user=.
func (Open) Authenticate(r *http.Request) (chat.UserID, error) {
	raw := r.URL.Query().Get("user")
	if raw == "" {
		return "", fmt.Errorf("%w: open auth mode needs ?user=<user id>", ErrUnauthenticated)
	}
	u, err := chat.ParseUserID(raw)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrUnauthenticated, err)
	}
	return u, nil
}
