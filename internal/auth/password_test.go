package auth

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestHashVerifiesItsPasswordOnly(t *testing.T) {
	h := NewHasher(Params{}, 0)
	ctx := context.Background()
	enc, err := h.Hash(ctx, "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("encoding %q", enc)
	}
	if ok, err := h.Verify(ctx, enc, "correct horse"); err != nil || !ok {
		t.Fatalf("right password: %v %v", ok, err)
	}
	if ok, err := h.Verify(ctx, enc, "correct horsE"); err != nil || ok {
		t.Fatalf("wrong password: %v %v", ok, err)
	}
	again, _ := h.Hash(ctx, "correct horse")
	if again == enc {
		t.Fatal("two hashes of one password are equal: the salt is not random")
	}
}

func TestHashesWithOtherParametersStillVerify(t *testing.T) {
	old := NewHasher(Params{Time: 1, Memory: 8 * 1024, Threads: 1, SaltLen: 16, KeyLen: 32}, 1)
	enc, _ := old.Hash(context.Background(), "password1")
	if ok, err := NewHasher(Params{}, 0).Verify(context.Background(), enc, "password1"); err != nil || !ok {
		t.Fatalf("verify an older hash: %v %v", ok, err)
	}
}

func TestUnknownUserAndWrongPasswordLookAlike(t *testing.T) {
	h := NewHasher(Params{}, 0)
	ctx := context.Background()
	enc, _ := h.Hash(ctx, "the real one")
	timed := func(encoded string) (bool, time.Duration, error) {
		var best time.Duration
		var ok bool
		var err error
		for i := 0; i < 5; i++ {
			start := time.Now()
			ok, err = h.Verify(ctx, encoded, "a guess!")
			if d := time.Since(start); best == 0 || d < best {
				best = d
			}
		}
		return ok, best, err
	}
	okWrong, dWrong, errWrong := timed(enc)
	okUnknown, dUnknown, errUnknown := timed("")
	if okWrong || okUnknown || errWrong != nil || errUnknown != nil {
		t.Fatalf("wrong password %v %v, unknown user %v %v: want false, nil for both", okWrong, errWrong, okUnknown, errUnknown)
	}
	ratio := float64(dUnknown) / float64(dWrong)
	t.Logf("verify: wrong password %v, unknown user %v", dWrong, dUnknown)
	if ratio < 0.5 || ratio > 2 {
		t.Fatalf("unknown user took %v, wrong password %v: timing tells them apart", dUnknown, dWrong)
	}
}

func TestCorruptHashesAreRefused(t *testing.T) {
	h := NewHasher(Params{}, 0)
	for _, enc := range []string{
		"plain", "$argon2i$v=19$m=1,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",
		"$argon2id$v=19$m=4294967295,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"$argon2id$v=19$m=1024,t=1,p=1$!!$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	} {
		if ok, err := h.Verify(context.Background(), enc, "whatever1"); ok || err == nil {
			t.Errorf("Verify(%q) = %v, %v; want an error", enc, ok, err)
		}
	}
}

func TestPasswordRules(t *testing.T) {
	for pw, ok := range map[string]bool{
		"1234567": false, "12345678": true, strings.Repeat("x", 128): true, strings.Repeat("x", 129): false,
		"abc\x00defgh": false, "abc\xffdefgh": false, "pässwörd": true,
	} {
		if err := CheckPassword(pw); (err == nil) != ok {
			t.Errorf("CheckPassword(%q) = %v, want ok=%v", pw, err, ok)
		}
	}
}

func TestHashWaitsForRoomAndGivesUpWithItsContext(t *testing.T) {
	h := NewHasher(Params{}, 1)
	h.sem <- struct{}{} // the only slot is taken
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.Hash(ctx, "password1"); err == nil {
		t.Fatal("hash ran without a free slot")
	}
}

func BenchmarkVerify(b *testing.B) {
	h := NewHasher(Params{}, 0)
	enc, _ := h.Hash(context.Background(), "password1")
	b.ReportAllocs()
	for b.Loop() {
		_, _ = h.Verify(context.Background(), enc, "password1")
	}
}
