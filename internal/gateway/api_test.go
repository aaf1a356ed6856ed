package gateway

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/switchboard-chat/switchboard/internal/auth"
	"github.com/switchboard-chat/switchboard/internal/chat"
	"github.com/switchboard-chat/switchboard/internal/protocol"
)

func TestAPostedMessageWithAnUnknownFieldIsRefused(t *testing.T) {
	for _, body := range []string{
		`{"cid":"a","to":"bob","body":"x","extra":1}`,
		`{"cid":"a","conv":"public","body":"x","batch":1}`,
		`{"cid":"a","conv":"public","body":"x","since":{}}`,
	} {
		if _, perr := decodePost([]byte(body)); perr == nil || perr.Code != protocol.CodeBadRequest {
			t.Errorf("%s: got %v, want bad_request", body, perr)
		}
	}
	if _, perr := decodePost([]byte(`{"cid":"a","to":"bob","body":"x"}`)); perr != nil {
		t.Fatalf("a valid body: %v", perr)
	}
}

func TestARESTBodyThatIsNotJSONIsRefusedBeforeTheHandler(t *testing.T) {
	s := &Server{identity: auth.Open{}}
	called := false
	h := s.api(func(*http.Request, chat.UserID) (int, any, *protocol.Error) {
		called = true
		return http.StatusNoContent, nil, nil
	})
	for _, tc := range []struct {
		ct   string
		want int
	}{
		{"text/plain", http.StatusUnsupportedMediaType},
		{"application/x-www-form-urlencoded", http.StatusUnsupportedMediaType},
		{"application/json; charset=utf-8", http.StatusNoContent},
		{"", http.StatusNoContent},
	} {
		called = false
		req := httptest.NewRequest("POST", "/api/messages?user=alice", strings.NewReader(`{"cid":"a","to":"bob","body":"x"}`))
		if tc.ct != "" {
			req.Header.Set("Content-Type", tc.ct)
		}
		rec := httptest.NewRecorder()
		h(rec, req)
		if rec.Code != tc.want || called != (tc.want == http.StatusNoContent) {
			t.Errorf("Content-Type %q: %d (handler called %v), want %d", tc.ct, rec.Code, called, tc.want)
		}
	}
}
