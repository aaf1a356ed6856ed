package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// Password length bounds, in bytes of UTF-8.
const (
	MinPasswordBytes = 8
	MaxPasswordBytes = 128
)

// ErrBadPassword means a password breaks the rules of CheckPassword.
var ErrBadPassword = errors.New("bad password")

// CheckPassword enforces the password rules: 8 to 128 bytes of valid
// UTF-8, no NUL. Nothing else is required (length is what matters; see
// NIST SP 800-63B).
func CheckPassword(pw string) error {
	switch {
	case len(pw) < MinPasswordBytes:
		return fmt.Errorf("%w: at least %d bytes", ErrBadPassword, MinPasswordBytes)
	case len(pw) > MaxPasswordBytes:
		return fmt.Errorf("%w: at most %d bytes", ErrBadPassword, MaxPasswordBytes)
	case !utf8.ValidString(pw) || strings.ContainsRune(pw, 0):
		return fmt.Errorf("%w: must be UTF-8 text without NUL", ErrBadPassword)
	}
	return nil
}

// Params are argon2id parameters.
type Params struct {
	Time    uint32 // passes over memory
	Memory  uint32 // KiB
	Threads uint8
	SaltLen int // bytes
	KeyLen  uint32
}

// DefaultParams follow OWASP's argon2id recommendation for a small server
// (m=19 MiB, t=2, p=1): about 30 ms per hash on one core of a 2-core box,
// so two hashes at a time (see Hasher) cost 38 MiB. Salt 16 bytes, key 32
// bytes.
var DefaultParams = Params{Time: 2, Memory: 19 * 1024, Threads: 1, SaltLen: 16, KeyLen: 32}

// Hasher hashes and verifies passwords with argon2id, at most Concurrency
// at a time (each costs Params.Memory), so a burst of logins queues rather
// than exhausting memory. Safe for concurrent use.
type Hasher struct {
	params Params
	sem    chan struct{}
	dummy  string // hash verified for unknown users
}

// NewHasher returns a Hasher; zero params mean DefaultParams and a
// concurrency of 0 means GOMAXPROCS.
func NewHasher(p Params, concurrency int) *Hasher {
	if p == (Params{}) {
		p = DefaultParams
	}
	if concurrency <= 0 {
		concurrency = runtime.GOMAXPROCS(0)
	}
	h := &Hasher{params: p, sem: make(chan struct{}, concurrency)}
	h.dummy = h.encode(make([]byte, p.SaltLen), []byte("switchboard-dummy-password"))
	return h
}

// Hash returns the PHC-style encoding of pw's argon2id hash with a fresh
// salt: $argon2id$v=19$m=<KiB>,t=<time>,p=<threads>$<salt>$<key>, base64
// without padding.
func (h *Hasher) Hash(ctx context.Context, pw string) (string, error) {
	salt := make([]byte, h.params.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	defer h.release()
	return h.encode(salt, []byte(pw)), nil
}

func (h *Hasher) encode(salt, pw []byte) string {
	p := h.params
	key := argon2.IDKey(pw, salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// Verify reports whether pw matches encoded, with the parameters written
// in encoded (so hashes made with older parameters keep working). An empty
// encoded (an unknown user, or one without a password) verifies against a
// dummy hash and reports false, so the answer takes as long as a real one.
// The comparison is constant-time.
func (h *Hasher) Verify(ctx context.Context, encoded, pw string) (bool, error) {
	known := encoded != ""
	if !known {
		encoded = h.dummy
	}
	p, salt, want, err := decodeHash(encoded)
	if err != nil {
		return false, err
	}
	if err := h.acquire(ctx); err != nil {
		return false, err
	}
	defer h.release()
	got := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1 && known, nil
}

func (h *Hasher) acquire(ctx context.Context) error {
	select {
	case h.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait to hash password: %w", ctx.Err())
	}
}

func (h *Hasher) release() { <-h.sem }

// maxHashMemory bounds the memory a stored hash may ask for (1 GiB), so a
// corrupt record cannot exhaust the gateway.
const maxHashMemory = 1 << 20

// decodeHash parses the encoding Hash writes.
func decodeHash(s string) (p Params, salt, key []byte, err error) {
	parts := strings.Split(s, "$")
	bad := func(why string) (Params, []byte, []byte, error) {
		return Params{}, nil, nil, fmt.Errorf("decode password hash: %s", why)
	}
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return bad("not an argon2id hash")
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return bad("unsupported version")
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil {
		return bad("bad parameters")
	}
	if p.Memory == 0 || p.Memory > maxHashMemory || p.Time == 0 || p.Time > 100 || p.Threads == 0 {
		return bad("parameters out of range")
	}
	b64 := base64.RawStdEncoding
	if salt, err = b64.DecodeString(parts[4]); err != nil || len(salt) < 8 {
		return bad("bad salt")
	}
	if key, err = b64.DecodeString(parts[5]); err != nil || len(key) < 16 || len(key) > 64 {
		return bad("bad key")
	}
	p.SaltLen, p.KeyLen = len(salt), uint32(len(key))
	return p, salt, key, nil
}
