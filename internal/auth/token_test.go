package auth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var (
	keyA = Key{ID: "a", Secret: []byte(strings.Repeat("a", 32))}
	keyB = Key{ID: "b", Secret: []byte(strings.Repeat("b", 32))}
)

func newTokens(t *testing.T, cfg TokenConfig) *Tokens {
	t.Helper()
	tk, err := NewTokens(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func TestTokensRoundTripAndRotation(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	old := newTokens(t, TokenConfig{Signing: keyA, TTL: time.Hour, Now: clock})
	rotated := newTokens(t, TokenConfig{Signing: keyB, Accepted: []Key{keyA}, Now: clock})
	tok, exp, err := old.Issue("alice")
	if err != nil {
		t.Fatal(err)
	}
	if !exp.Equal(now.Add(time.Hour)) {
		t.Fatalf("expiry %v", exp)
	}
	for name, tk := range map[string]*Tokens{"signer": old, "after rotation": rotated} {
		u, gotExp, err := tk.Check(tok)
		if err != nil || u != "alice" || !gotExp.Equal(exp) {
			t.Errorf("%s: Check = %q %v %v", name, u, gotExp, err)
		}
	}
	newTok, _, _ := rotated.Issue("bob")
	if _, _, err := old.Check(newTok); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("a token of a key the checker does not hold was accepted: %v", err)
	}
}

func TestBadTokensAreRefused(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	tk := newTokens(t, TokenConfig{Signing: keyA, Now: func() time.Time { return now }})
	claims := jwt.RegisteredClaims{Issuer: "switchboard", Subject: "alice", ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}
	sign := func(m jwt.SigningMethod, c jwt.Claims, kid string, key any) string {
		tok := jwt.NewWithClaims(m, c)
		if kid != "" {
			tok.Header["kid"] = kid
		}
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := sign(jwt.SigningMethodHS256, claims, "a", keyA.Secret)
	if _, _, err := tk.Check(good); err != nil {
		t.Fatalf("the control token is refused: %v", err)
	}
	expired := claims
	expired.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Second))
	noExp := claims
	noExp.ExpiresAt = nil
	otherIss := claims
	otherIss.Issuer = "someone-else"
	badSub := claims
	badSub.Subject = "Not A User"
	parts := strings.Split(good, ".")
	for name, raw := range map[string]string{
		"forged signature": parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2])),
		"wrong key":        sign(jwt.SigningMethodHS256, claims, "a", keyB.Secret),
		"unknown kid":      sign(jwt.SigningMethodHS256, claims, "zz", keyA.Secret),
		"no kid":           sign(jwt.SigningMethodHS256, claims, "", keyA.Secret),
		"alg none":         sign(jwt.SigningMethodNone, claims, "a", jwt.UnsafeAllowNoneSignatureType),
		"HS384":            sign(jwt.SigningMethodHS384, claims, "a", keyA.Secret),
		"expired":          sign(jwt.SigningMethodHS256, expired, "a", keyA.Secret),
		"no expiry":        sign(jwt.SigningMethodHS256, noExp, "a", keyA.Secret),
		"other issuer":     sign(jwt.SigningMethodHS256, otherIss, "a", keyA.Secret),
		"invalid subject":  sign(jwt.SigningMethodHS256, badSub, "a", keyA.Secret),
		"garbage":          "not.a.jwt",
		"empty":            "",
	} {
		if u, _, err := tk.Check(raw); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("%s: accepted as %q (%v)", name, u, err)
		}
	}
}

func TestShortOrDuplicateKeysAreRefused(t *testing.T) {
	if _, err := NewTokens(TokenConfig{Signing: Key{ID: "a", Secret: []byte("short")}}); err == nil {
		t.Error("a short secret was accepted")
	}
	if _, err := NewTokens(TokenConfig{Signing: keyA, Accepted: []Key{keyA}}); err == nil {
		t.Error("a kid given twice was accepted")
	}
	if _, err := ParseKeys([]string{"nocolon"}); err == nil {
		t.Error("a key without kid: was accepted")
	}
	if _, err := ParseKeys([]string{":" + strings.Repeat("s", 40)}); err == nil || strings.Contains(err.Error(), "sss") {
		t.Errorf("an empty kid: %v (the secret must not be echoed)", err)
	}
}

func TestJWTReadsTheHeaderOrTheQuery(t *testing.T) {
	tk := newTokens(t, TokenConfig{Signing: keyA})
	tok, exp, _ := tk.Issue("carol")
	id := JWT{Tokens: tk}
	byHeader := httptest.NewRequest("GET", "/ws", nil)
	byHeader.Header.Set("Authorization", "Bearer "+tok)
	byQuery := httptest.NewRequest("GET", "/ws?token="+tok, nil)
	for name, r := range map[string]*http.Request{"header": byHeader, "query": byQuery} {
		u, gotExp, err := id.AuthenticateUntil(r)
		if err != nil || u != "carol" || !gotExp.Equal(exp) {
			t.Errorf("%s: %q %v %v", name, u, gotExp, err)
		}
	}
	basic := httptest.NewRequest("GET", "/ws?token="+tok, nil)
	basic.Header.Set("Authorization", "Basic abc")
	if _, err := id.Authenticate(basic); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("a Basic header was not refused: %v", err)
	}
	if _, err := id.Authenticate(httptest.NewRequest("GET", "/ws?user=carol", nil)); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("?user= was trusted in jwt mode: %v", err)
	}
}

// REST takes the token from the Authorization header only: a token in a
// URL ends up in logs, proxies and browser history. Only the WebSocket
// handshake (AuthenticateUntil) reads ?token=, which browsers need.
func TestRESTReadsTheTokenFromTheHeaderOnly(t *testing.T) {
	tk := newTokens(t, TokenConfig{Signing: keyA})
	tok, _, _ := tk.Issue("carol")
	id := JWT{Tokens: tk}
	if _, err := id.Authenticate(httptest.NewRequest("GET", "/api/auth/me?token="+tok, nil)); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("?token= was accepted on REST: %v", err)
	}
	r := httptest.NewRequest("GET", "/api/auth/me", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	if u, err := id.Authenticate(r); err != nil || u != "carol" {
		t.Errorf("the header: %q %v", u, err)
	}
}
