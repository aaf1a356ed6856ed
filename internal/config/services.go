package config

import (
	"errors"
	"fmt"
	"time"

	"github.com/switchboard-chat/switchboard/internal/auth"
	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/gateway"
	"github.com/switchboard-chat/switchboard/internal/router"
)

// Gateway is the gateway's configuration: Server is passed to gateway.New
// as it is (its fields' tags name their keys and defaults), the rest
// configures what cmd/gateway builds around it.
type Gateway struct {
	Common
	Server gateway.Config

	AuthMode  string        `key:"auth.mode" default:"jwt"` // jwt or open
	JWTSecret string        `key:"auth.jwt_secret"`         // signing secret, kid "default"
	JWTKeys   []string      `key:"auth.jwt_keys"`           // kid:secret list; the first signs
	JWTTTL    time.Duration `key:"auth.jwt_ttl" default:"24h"`
	// Login attempts per user name and per client address (see
	// auth.LimitsConfig); LoadGateway sets Server.LoginPerUser and
	// Server.LoginPerIP from them.
	LoginUserEvery time.Duration `key:"auth.login_user_every" default:"12s"`
	LoginUserBurst int           `key:"auth.login_user_burst" default:"5"`
	LoginIPEvery   time.Duration `key:"auth.login_ip_every" default:"3s"`
	LoginIPBurst   int           `key:"auth.login_ip_burst" default:"20"`
}

// LoadGateway loads the gateway's configuration; see ConfigFile for how
// file and required are chosen.
func LoadGateway(file string, required bool) (*Gateway, error) {
	g := &Gateway{}
	if err := load(file, required, g); err != nil {
		return nil, err
	}
	if err := g.check(); err != nil {
		return nil, err
	}
	raw := string(g.Server.ServerID)
	if raw == "" {
		return nil, fmt.Errorf("SERVER_ID (server_id) is required: every gateway needs a unique id, e.g. SERVER_ID=gw-1")
	}
	var err error
	if g.Server.ServerID, err = chat.ParseServerID(raw); err != nil {
		return nil, fmt.Errorf("SERVER_ID (server_id): %v", err)
	}
	switch g.AuthMode {
	case "open":
	case "jwt":
		if g.JWTSecret == "" && len(g.JWTKeys) == 0 {
			return nil, errors.New("AUTH_MODE=jwt needs AUTH_JWT_SECRET (auth.jwt_secret, at least 32 bytes) or AUTH_JWT_KEYS (kid:secret,…); or set AUTH_MODE=open for a local demo")
		}
	default:
		return nil, fmt.Errorf("AUTH_MODE (auth.mode) %q: want jwt or open", g.AuthMode)
	}
	g.Server.LoginPerUser = auth.Limit{Every: g.LoginUserEvery, Burst: g.LoginUserBurst}
	g.Server.LoginPerIP = auth.Limit{Every: g.LoginIPEvery, Burst: g.LoginIPBurst}
	return g, nil
}

// Tokens returns the token issuer of jwt mode: AUTH_JWT_KEYS (the first
// signs, the rest are still accepted) and AUTH_JWT_SECRET (kid "default";
// it signs when no keys are listed, else it is accepted).
func (g *Gateway) Tokens() (*auth.Tokens, error) {
	keys, err := auth.ParseKeys(g.JWTKeys)
	if err != nil {
		return nil, fmt.Errorf("AUTH_JWT_KEYS (auth.jwt_keys): %v", err)
	}
	if g.JWTSecret != "" {
		keys = append(keys, auth.Key{ID: "default", Secret: []byte(g.JWTSecret)})
	}
	t, err := auth.NewTokens(auth.TokenConfig{Signing: keys[0], Accepted: keys[1:], TTL: g.JWTTTL})
	if err != nil {
		return nil, fmt.Errorf("AUTH_JWT_SECRET/AUTH_JWT_KEYS: %v", err)
	}
	return t, nil
}

// Router is the router's configuration: Router is passed to router.New as
// it is (its fields' tags name their keys and defaults).
type Router struct {
	Common
	Router router.Config
	// HistoryWindow is store.Config's: recent messages per conversation
	// kept in Redis.
	HistoryWindow int `key:"router.history_window" default:"1000"`
}

// LoadRouter loads the router's configuration.
func LoadRouter(file string, required bool) (*Router, error) {
	r := &Router{}
	if err := load(file, required, r); err != nil {
		return nil, err
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	return r, nil
}
