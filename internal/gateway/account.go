package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-chat/switchboard/internal/auth"
	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/kafkabus"
	"github.com/switchboard-chat/switchboard/internal/protocol"
	"github.com/switchboard-chat/switchboard/internal/store"
)

// codeConflict answers a registration of a name that has an account
// (HTTP 409); an addition to the contract's error codes.
const codeConflict protocol.Code = "conflict"

// accounts serves registration and login. Tokens is nil in open auth
// mode, where there are no accounts.
type accounts struct {
	tokens *auth.Tokens
	hasher *auth.Hasher
	limits *auth.Limits
	// results counts register and login answers by result: register,
	// register_taken, login, login_failed, rate_limited, error.
	results *prometheus.CounterVec
}

func newAccounts(tokens *auth.Tokens, hasher *auth.Hasher, limits auth.LimitsConfig, reg prometheus.Registerer) *accounts {
	if hasher == nil {
		hasher = auth.NewHasher(auth.Params{}, 0)
	}
	a := &accounts{tokens: tokens, hasher: hasher, limits: auth.NewLimits(limits),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "switchboard", Subsystem: "gateway", Name: "account_requests_total",
			Help: "Registrations and logins by result (register, register_taken, login, login_failed, rate_limited, error).",
		}, []string{"result"})}
	reg.MustRegister(a.results)
	return a
}

// credentials is the body of register and login.
type credentials struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// check applies the registration rules: a valid user id and a password
// of auth.CheckPassword.
func (c credentials) check() (chat.UserID, error) {
	u, err := chat.ParseUserID(c.Username)
	if err != nil {
		return "", fmt.Errorf("username: %w", err)
	}
	if err := auth.CheckPassword(c.Password); err != nil {
		return "", fmt.Errorf("password: %w", err)
	}
	return u, nil
}

// userJSON is a user as clients see it: never with its password hash.
type userJSON struct {
	ID        chat.UserID `json:"id"`
	CreatedAt int64       `json:"created_at"`
}

type tokenJSON struct {
	Token     string   `json:"token"`
	ExpiresAt int64    `json:"expires_at"` // Unix milliseconds
	User      userJSON `json:"user"`
}

func (s *Server) accountRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/auth/mode", s.serveAuthMode)
	mux.HandleFunc("POST /api/auth/register", s.serveRegister)
	mux.HandleFunc("POST /api/auth/login", s.serveLogin)
	mux.HandleFunc("GET /api/auth/me", s.serveMe)
}

// serveAuthMode tells clients how to authenticate: {"mode":"jwt"|"open"}.
func (s *Server) serveAuthMode(w http.ResponseWriter, r *http.Request) {
	mode := "open"
	if s.accounts.tokens != nil {
		mode = "jwt"
	}
	writeJSON(w, http.StatusOK, map[string]string{"mode": mode})
}

// serveRegister creates an account: the name is claimed in Redis at once
// (so no other gateway can take it), then the user record with its
// password hash is made durable in chat-state; if that fails the claim is
// released and the client gets 503.
func (s *Server) serveRegister(w http.ResponseWriter, r *http.Request) {
	c, ok := s.readCredentials(w, r)
	if !ok {
		return
	}
	u, err := c.check()
	if err != nil {
		writeError(w, http.StatusBadRequest, protocol.CodeBadRequest, err.Error())
		return
	}
	if !s.accountsReady(w, r) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ProduceTimeout+s.cfg.RedisTimeout)
	defer cancel()
	hash, err := s.accounts.hasher.Hash(ctx, c.Password)
	if err != nil {
		s.accountFailed(w, "hash password", err)
		return
	}
	claim, err := s.store.ClaimUser(ctx, chat.User{ID: u, CreatedAt: time.Now().UnixMilli(), PasswordHash: hash})
	if errors.Is(err, store.ErrTaken) {
		s.accounts.results.WithLabelValues("register_taken").Inc()
		writeError(w, http.StatusConflict, codeConflict, "user name taken")
		return
	}
	if err != nil {
		s.accountFailed(w, "claim user", err)
		return
	}
	rec := &chat.StateRecord{Type: chat.TypeUser, User: &claim.User}
	if err := s.producer.Produce(ctx, []kafkabus.Record{{Topic: s.cfg.ChatStateTopic, Key: rec.Key(), Value: rec.Encode()}}); err != nil {
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.RedisTimeout)
		if rerr := s.store.Release(rctx, claim); rerr != nil {
			s.log.Warn("release user claim", "user", u, "err", rerr)
		}
		rcancel()
		s.accountFailed(w, "record user", err)
		return
	}
	s.accounts.results.WithLabelValues("register").Inc()
	s.log.Info("account registered", "user", u)
	s.audit.Registered(u, clientAddr(r))
	s.writeToken(w, http.StatusCreated, claim.User)
}

// serveLogin answers a token for the right password. An unknown user, a
// user without a password and a wrong password get the same 401, after
// the same work (a dummy hash is verified for the unknown).
func (s *Server) serveLogin(w http.ResponseWriter, r *http.Request) {
	c, ok := s.readCredentials(w, r)
	if !ok || !s.accountsReady(w, r) {
		return
	}
	var user chat.User
	if u, err := chat.ParseUserID(c.Username); err == nil {
		rctx, cancel := context.WithTimeout(r.Context(), s.cfg.RedisTimeout)
		var err error
		user, _, err = s.store.User(rctx, u)
		cancel()
		if err != nil {
			s.accountFailed(w, "read user", err)
			return
		}
	}
	ok, err := s.accounts.hasher.Verify(r.Context(), user.PasswordHash, c.Password)
	if err != nil {
		s.accountFailed(w, "verify password", err)
		return
	}
	if !ok {
		s.accounts.results.WithLabelValues("login_failed").Inc()
		s.audit.LoginRefused(chat.Clip(c.Username, chat.MaxUserIDLen), clientAddr(r), "bad credentials")
		writeError(w, http.StatusUnauthorized, protocol.CodeUnauthorized, "bad credentials")
		return
	}
	s.accounts.results.WithLabelValues("login").Inc()
	s.writeToken(w, http.StatusOK, user)
}

// serveMe answers the authenticated user.
func (s *Server) serveMe(w http.ResponseWriter, r *http.Request) {
	u, ok := s.authenticateREST(w, r)
	if !ok {
		return
	}
	rctx, cancel := context.WithTimeout(r.Context(), s.cfg.RedisTimeout)
	defer cancel()
	user, _, err := s.store.User(rctx, u)
	if err != nil {
		s.accountFailed(w, "read user", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": userJSON{ID: u, CreatedAt: user.CreatedAt}})
}

// authenticateREST returns the request's user, or answers 401.
func (s *Server) authenticateREST(w http.ResponseWriter, r *http.Request) (chat.UserID, bool) {
	u, err := s.identity.Authenticate(r)
	if err != nil {
		writeError(w, http.StatusUnauthorized, protocol.CodeUnauthorized, authMessage(err))
		return "", false
	}
	return u, true
}

// authenticate returns the user of a WebSocket handshake and, for expiring
// credentials, when its session must end (zero: never).
func (s *Server) authenticate(r *http.Request) (chat.UserID, time.Time, error) {
	if e, ok := s.identity.(auth.ExpiringIdentity); ok {
		return e.AuthenticateUntil(r)
	}
	u, err := s.identity.Authenticate(r)
	return u, time.Time{}, err
}

// authMessage is the 401 message for err: its own when it says why the
// credentials were refused, nothing more otherwise.
func authMessage(err error) string {
	if errors.Is(err, auth.ErrUnauthenticated) {
		return err.Error()
	}
	return "authentication failed"
}

// readCredentials reads a register or login body after spending a login
// attempt of the client's address and of the named user (429 when either
// is used up). It has answered when it returns false.
func (s *Server) readCredentials(w http.ResponseWriter, r *http.Request) (credentials, bool) {
	var c credentials
	if s.accounts.tokens == nil {
		writeError(w, http.StatusNotFound, protocol.CodeNotFound, "no accounts: the gateway runs in open auth mode; connect with ?user=")
		return c, false
	}
	if !s.readJSON(w, r, &c) {
		s.accounts.limits.Allow(clientAddr(r), "") // answered; the attempt counts
		return c, false
	}
	if wait, ok := s.accounts.limits.Allow(clientAddr(r), chat.Clip(c.Username, chat.MaxUserIDLen)); !ok {
		s.accounts.results.WithLabelValues("rate_limited").Inc()
		s.audit.LoginRefused(chat.Clip(c.Username, chat.MaxUserIDLen), clientAddr(r), "limited")
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(wait.Seconds()+0.999))))
		writeError(w, http.StatusTooManyRequests, protocol.CodeRateLimited, "too many login attempts; retry later")
		return c, false
	}
	return c, true
}

// accountsReady answers 503 while Redis is being restored: until then a
// taken name may look free and a registered user unknown.
func (s *Server) accountsReady(w http.ResponseWriter, r *http.Request) bool {
	rctx, cancel := context.WithTimeout(r.Context(), s.cfg.RedisTimeout)
	defer cancel()
	err := s.sendsAccepted(rctx)
	if err == nil {
		return true
	}
	w.Header().Set("Retry-After", "5")
	writeError(w, http.StatusServiceUnavailable, protocol.CodeUnavailable, "accounts unavailable: "+err.Error())
	return false
}

func (s *Server) writeToken(w http.ResponseWriter, status int, u chat.User) {
	tok, exp, err := s.accounts.tokens.Issue(u.ID)
	if err != nil {
		s.accountFailed(w, "issue token", err)
		return
	}
	writeJSON(w, status, tokenJSON{Token: tok, ExpiresAt: exp.UnixMilli(), User: userJSON{ID: u.ID, CreatedAt: u.CreatedAt}})
}

// accountFailed logs err and answers 503.
func (s *Server) accountFailed(w http.ResponseWriter, what string, err error) {
	s.accounts.results.WithLabelValues("error").Inc()
	s.log.Warn(what+" failed", "err", err)
	writeError(w, http.StatusServiceUnavailable, protocol.CodeUnavailable, what+" failed; retry later")
}
