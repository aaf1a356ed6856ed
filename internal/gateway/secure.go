package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/switchboard-chat/switchboard/internal/protocol"
)

// DefaultAllowedOrigins are the origins accepted when ALLOWED_ORIGINS is
// empty: pages served from loopback on any port, which is what `make run`
// and the browser test use. A deployment behind a public name must list
// its own (https://chat.example.com).
var DefaultAllowedOrigins = []string{"http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"}

// originMatcher decides whether a browser Origin may use the gateway
// (WebSocket upgrade and CORS). The patterns are configured; nothing is
// derived from the request, so a DNS-rebinding page (Origin and Host both
// evil.example) is refused.
//
// A pattern with "://" is matched against the whole origin
// (scheme://host[:port]); one without is matched against host[:port] for
// http and https. '*' matches any run of characters except '/'
// (path.Match syntax), so "https://*.example.com" and
// "http://127.0.0.1:*" work. Matching is case-insensitive.
type originMatcher struct{ patterns []string }

func newOriginMatcher(patterns []string) originMatcher {
	if len(patterns) == 0 {
		patterns = DefaultAllowedOrigins
	}
	m := originMatcher{}
	for _, p := range patterns {
		// '[' and ']' are literal (IPv6 hosts), not character classes.
		p = strings.NewReplacer("[", `\[`, "]", `\]`).Replace(strings.ToLower(strings.TrimRight(p, "/")))
		m.patterns = append(m.patterns, p)
	}
	return m
}

// allowed reports whether origin (an Origin header value) matches.
func (m originMatcher) allowed(origin string) bool {
	u, err := url.Parse(strings.ToLower(origin))
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || u.Path != "" || u.User != nil {
		return false
	}
	full := u.Scheme + "://" + u.Host
	for _, p := range m.patterns {
		target := u.Host
		if strings.Contains(p, "://") {
			target = full
		}
		if ok, _ := path.Match(p, target); ok {
			return true
		}
	}
	return false
}

// originAllowed accepts requests without Origin (non-browser clients) and
// those whose Origin matches ALLOWED_ORIGINS.
func (s *Server) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	return origin == "" || s.origins.allowed(origin)
}

// contentSecurityPolicy suits the embedded web client: its own scripts,
// styles and WebSocket only; no framing, plugins or inline code.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// secure sets the security headers on every response, answers CORS for
// the REST API (/api/), and refuses a browser request to it from an origin
// not in ALLOWED_ORIGINS.
func (s *Server) secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
		if r.TLS != nil {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		if strings.HasPrefix(r.URL.Path, "/api/") && !s.cors(w, r) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

// cors handles the Origin of a REST request: an allowed one gets the CORS
// headers (and a preflight its answer), a disallowed one 403. It reports
// whether the request should go on to its handler.
func (s *Server) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	h := w.Header()
	h.Add("Vary", "Origin")
	if !s.origins.allowed(origin) {
		s.m.connects.WithLabelValues("forbidden_origin_api").Inc()
		writeError(w, http.StatusForbidden, protocol.CodeForbidden, "origin not allowed")
		return false
	}
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Expose-Headers", "Retry-After")
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return false
	}
	return true
}

// DefaultMaxBodyBytes bounds a REST request body (GATEWAY_MAX_BODY_BYTES).
const DefaultMaxBodyBytes = 64 << 10

// readJSON decodes the JSON object in r's body into v for a REST handler:
// at most MaxBodyBytes (413 too_large beyond), Content-Type
// application/json when given, exactly one value, no unknown fields, and
// text that is valid UTF-8 without lone surrogate escapes. On failure it
// has written the error answer and returns false.
func (s *Server) readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if !jsonContent(w, r) {
		return false
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, protocol.CodeTooLarge,
			fmt.Sprintf("request body over %d bytes", s.cfg.MaxBodyBytes))
		return false
	case err != nil:
		writeError(w, http.StatusBadRequest, protocol.CodeBadRequest, "could not read the request body")
		return false
	}
	if err := decodeStrict(data, v); err != nil {
		writeError(w, http.StatusBadRequest, protocol.CodeBadRequest, err.Error())
		return false
	}
	return true
}

// jsonContent refuses (415, and reports false) a request whose
// Content-Type is given and is not application/json; no Content-Type is
// taken as JSON.
func jsonContent(w http.ResponseWriter, r *http.Request) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, protocol.CodeBadRequest, "Content-Type must be application/json")
		return false
	}
	return true
}

// decodeStrict decodes exactly one JSON value into v, refusing unknown
// fields, trailing data, invalid UTF-8 and lone surrogates.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("malformed JSON body: %s", clipError(err))
	}
	if dec.More() {
		return errors.New("malformed JSON body: more than one value")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("malformed JSON body: data after the value")
	}
	if err := protocol.CheckText(data); err != nil {
		return err
	}
	return nil
}

// clipError bounds an error message that may quote the client's input.
func clipError(err error) string {
	const n = 200
	msg := err.Error()
	if len(msg) > n {
		msg = msg[:n] + "…"
	}
	return msg
}
