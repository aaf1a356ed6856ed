package auth

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard-chat/switchboard/internal/chat"
)

// MinSecretBytes is the shortest accepted HS256 secret.
const MinSecretBytes = 32

// Key is one HS256 key, named by its kid.
type Key struct {
	ID     string
	Secret []byte
}

// ParseKeys parses "kid:secret" entries (the auth.jwt_keys setting).
func ParseKeys(entries []string) ([]Key, error) {
	var keys []Key
	for _, e := range entries {
		id, secret, ok := strings.Cut(e, ":")
		if !ok || id == "" {
			return nil, fmt.Errorf("jwt key %q: want kid:secret", redact(e))
		}
		keys = append(keys, Key{ID: id, Secret: []byte(secret)})
	}
	return keys, nil
}

// redact keeps a key's id and hides its secret in an error message.
func redact(entry string) string {
	id, _, _ := strings.Cut(entry, ":")
	return id + ":…"
}

// TokenConfig configures Tokens.
type TokenConfig struct {
	// Signing signs new tokens; its ID goes in the kid header. Required,
	// with a secret of at least MinSecretBytes.
	Signing Key
	// Accepted are further keys whose tokens are still valid (rotation:
	// the previous signing key stays here until its tokens expired).
	Accepted []Key
	// Issuer is the iss claim, required on every token. Default
	// "switchboard".
	Issuer string
	// TTL is a token's lifetime. Default 24h.
	TTL time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Tokens issues and checks HS256 JWTs whose subject is a user id. Safe for
// concurrent use.
type Tokens struct {
	cfg    TokenConfig
	keys   map[string][]byte // kid → secret
	parser *jwt.Parser
}

// NewTokens checks cfg and returns Tokens.
func NewTokens(cfg TokenConfig) (*Tokens, error) {
	if cfg.Issuer == "" {
		cfg.Issuer = "switchboard"
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 24 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	t := &Tokens{cfg: cfg, keys: map[string][]byte{}}
	for _, k := range append([]Key{cfg.Signing}, cfg.Accepted...) {
		if len(k.Secret) < MinSecretBytes {
			return nil, fmt.Errorf("jwt key %q: secret shorter than %d bytes", k.ID, MinSecretBytes)
		}
		if _, dup := t.keys[k.ID]; dup {
			return nil, fmt.Errorf("jwt key %q given twice", k.ID)
		}
		t.keys[k.ID] = k.Secret
	}
	t.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(cfg.Now),
	)
	return t, nil
}

// TTL returns a new token's lifetime.
func (t *Tokens) TTL() time.Duration { return t.cfg.TTL }

// Issue returns a token for u, signed with the signing key, and its expiry.
func (t *Tokens) Issue(u chat.UserID) (string, time.Time, error) {
	now := t.cfg.Now()
	exp := jwt.NewNumericDate(now.Add(t.cfg.TTL)) // whole seconds, as the token says
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Issuer:    t.cfg.Issuer,
		Subject:   string(u),
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: exp,
	})
	tok.Header["kid"] = t.cfg.Signing.ID
	s, err := tok.SignedString(t.cfg.Signing.Secret)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign token: %w", err)
	}
	return s, exp.Time, nil
}

// Check verifies raw (signature by an accepted key named by its kid,
// HS256 only, issuer, expiry) and returns its user and expiry. Errors wrap
// ErrUnauthenticated.
func (t *Tokens) Check(raw string) (chat.UserID, time.Time, error) {
	var claims jwt.RegisteredClaims
	_, err := t.parser.ParseWithClaims(raw, &claims, func(tok *jwt.Token) (any, error) {
		kid, _ := tok.Header["kid"].(string)
		secret, ok := t.keys[kid]
		if !ok {
			return nil, errors.New("unknown key id")
		}
		return secret, nil
	})
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return "", time.Time{}, fmt.Errorf("%w: token expired", ErrUnauthenticated)
	case err != nil:
		return "", time.Time{}, fmt.Errorf("%w: invalid token", ErrUnauthenticated)
	}
	u, err := chat.ParseUserID(claims.Subject)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("%w: invalid token subject", ErrUnauthenticated)
	}
	return u, claims.ExpiresAt.Time, nil
}
