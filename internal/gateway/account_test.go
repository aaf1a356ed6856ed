package gateway

import (
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/switchboard-chat/switchboard/internal/auth"
	"github.com/switchboard-chat/switchboard/internal/chat"
)

// FuzzCredentialsBody feeds register and login bodies through the REST
// decoder and the registration rules: nothing panics, and whatever is
// accepted is a valid user id with a password within the rules that
// survives a round trip.
func FuzzCredentialsBody(f *testing.F) {
	for _, seed := range []string{
		`{"username":"alice","password":"correct horse"}`,
		`{"username":"alice","password":"short"}`,
		`{"username":"Alice","password":"correct horse"}`,
		`{"username":"alice","password":"correct horse","admin":true}`,
		`{"username":"alice"`,
		`{"username":"\ud800","password":"\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000"}`,
		`{"username":"public","password":"correct horse"}`,
		`{"username":"bob","password":"pässwörd"}{}`,
		`[]`, `null`, `{"username":1,"password":true}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var c credentials
		if err := decodeStrict(body, &c); err != nil {
			return
		}
		u, err := c.check()
		if err != nil {
			return
		}
		if _, err := chat.ParseUserID(string(u)); err != nil || string(u) != c.Username {
			t.Fatalf("accepted user %q: %v", u, err)
		}
		if n := len(c.Password); n < auth.MinPasswordBytes || n > auth.MaxPasswordBytes || !utf8.ValidString(c.Password) {
			t.Fatalf("accepted password of %d bytes (valid UTF-8: %v)", n, utf8.ValidString(c.Password))
		}
		again, _ := json.Marshal(c)
		var back credentials
		if err := decodeStrict(again, &back); err != nil || back != c {
			t.Fatalf("round trip of %q: %v %q", again, err, back)
		}
	})
}
