package gateway

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/switchboard-chat/switchboard/internal/auth"
	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/protocol"
)

// apiRoutes registers the REST API (all but /api/auth/*). Every endpoint
// authenticates with the gateway's Identity and answers JSON; errors are
// {"error":{"code","message"}} with the status of their code.
func (s *Server) apiRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/users/search", s.api(s.searchUsers))
	mux.HandleFunc("GET /api/users/{id}/status", s.api(s.userStatus))
	mux.HandleFunc("GET /api/conversations", s.api(s.listConversations))
	mux.HandleFunc("POST /api/conversations", s.api(s.createConversation))
	mux.HandleFunc("GET /api/conversations/{id}", s.api(s.getConversation))
	mux.HandleFunc("PATCH /api/conversations/{id}", s.api(s.patchConversation))
	mux.HandleFunc("GET /api/conversations/{id}/messages", s.api(s.listMessages))
	mux.HandleFunc("PUT /api/conversations/{id}/read", s.api(s.markRead))
	mux.HandleFunc("POST /api/messages", s.api(s.postMessage))
	mux.HandleFunc("DELETE /api/messages/{id}", s.api(s.deleteMessage))
}

// apiHandler serves one authenticated request: a status and a body to
// encode (nil: none), or an error.
type apiHandler func(r *http.Request, u chat.UserID) (int, any, *protocol.Error)

func (s *Server) api(h apiHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u, err := s.identity.Authenticate(r)
		if err != nil {
			msg := "authentication failed"
			if errors.Is(err, auth.ErrUnauthenticated) {
				msg = chat.Clip(err.Error(), 160)
			}
			writeError(w, http.StatusUnauthorized, protocol.CodeUnauthorized, msg)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodDelete && !jsonContent(w, r) {
			return
		}
		status, body, perr := h(r, u)
		switch {
		case perr != nil:
			if perr.RetryAfterMS > 0 {
				w.Header().Set("Retry-After", strconv.FormatInt(max(1, perr.RetryAfterMS/1000), 10))
			}
			writeError(w, statusOf(perr.Code), perr.Code, perr.Message)
		case body == nil:
			w.WriteHeader(status)
		default:
			writeJSON(w, status, body)
		}
	}
}

// statusOf is the HTTP status of an error code.
func statusOf(code protocol.Code) int {
	switch code {
	case protocol.CodeBadRequest:
		return http.StatusBadRequest
	case protocol.CodeUnauthorized:
		return http.StatusUnauthorized
	case protocol.CodeForbidden:
		return http.StatusForbidden
	case protocol.CodeNotFound:
		return http.StatusNotFound
	case protocol.CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case protocol.CodeRateLimited:
		return http.StatusTooManyRequests
	case protocol.CodeUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// readBody reads r's body, at most MaxBodyBytes.
func (s *Server) readBody(r *http.Request) ([]byte, *protocol.Error) {
	data, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, s.cfg.MaxBodyBytes))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return nil, protocol.Errorf(protocol.CodeTooLarge, "request body over %d bytes", s.cfg.MaxBodyBytes)
	case err != nil:
		return nil, protocol.Errorf(protocol.CodeBadRequest, "could not read the request body")
	}
	return data, nil
}

// pathConv parses the {id} path value as a conversation id.
func pathConv(r *http.Request) (chat.ConvID, *protocol.Error) {
	c, err := chat.ParseConvID(r.PathValue("id"))
	if err != nil {
		return "", protocol.Errorf(protocol.CodeBadRequest, "%s", chat.Clip(err.Error(), 160))
	}
	return c, nil
}

// queryInt parses query parameter name as an integer in [lo, hi]; def when
// absent.
func queryInt(r *http.Request, name string, def, lo, hi int64) (int64, *protocol.Error) {
	raw := r.URL.Query().Get(name)
	if raw == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, protocol.Errorf(protocol.CodeBadRequest, "%s must be an integer from %d to %d", name, lo, hi)
	}
	return n, nil
}

// unavailable logs err and answers that what failed and may be retried.
func (s *Server) unavailable(what string, err error) *protocol.Error {
	s.log.Warn(what+" failed", "err", err)
	return &protocol.Error{Code: protocol.CodeUnavailable, Message: fmt.Sprintf("%s failed, retry: message store unavailable", what), RetryAfterMS: 1000}
}
