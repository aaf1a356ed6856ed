package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// centrifugo speaks Centrifugo's JSON client protocol (one command or
// reply per line): each user connects with an HS256 token whose channels
// claim subscribes it, server-side, to its personal channel u_<user> and
// to the shared channel public. A direct message is a client publish
// into the recipient's channel, acknowledged by the publish reply; its
// data carries the load tester's cid, so deliveries are matched as they
// are against Switchboard.
type centrifugo struct {
	nodes  []string // ws://host:port
	secret []byte
	run    string
}

// connectID is the request id of the connect command; publishes use
// idx+1, which stays below it.
const connectID = 1 << 31

func newCentrifugo(nodes []string, secretFile, run string) (*centrifugo, error) {
	b, err := os.ReadFile(secretFile)
	if err != nil {
		return nil, fmt.Errorf("centrifugo secret (deploy/bench/centrifugo.sh writes it): %w", err)
	}
	return &centrifugo{nodes: nodes, secret: bytes.TrimSpace(b), run: run}, nil
}

func (t *centrifugo) endpoints() int { return len(t.nodes) }

func (t *centrifugo) url(_ context.Context, gw int, _ string) (string, error) {
	return strings.TrimSuffix(t.nodes[gw], "/") + "/connection/websocket", nil
}

func (t *centrifugo) token(user string) (string, error) {
	claims := jwt.MapClaims{
		"sub":      user,
		"exp":      time.Now().Add(24 * time.Hour).Unix(),
		"channels": []string{"u_" + user, "public"},
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(t.secret)
}

func (t *centrifugo) handshake(ctx context.Context, s *session) error {
	tok, err := t.token(s.name)
	if err != nil {
		return err
	}
	if err := s.write(ctx, fmt.Appendf(nil, `{"id":%d,"connect":{"token":%q}}`, connectID, tok)); err != nil {
		return err
	}
	for {
		b, err := s.readRaw(ctx)
		if err != nil {
			return err
		}
		for line := range bytes.Lines(b) {
			line = bytes.TrimSpace(line)
			if intField(line, "id") != connectID {
				continue
			}
			if bytes.Contains(line, []byte(`"error":`)) {
				return fmt.Errorf("connect refused: %s", line)
			}
			return nil
		}
	}
}

func (t *centrifugo) cid(idx int) string { return t.run + "." + strconv.Itoa(idx) }

func (t *centrifugo) idx(cid string) int {
	sb := switchboard{run: t.run}
	return sb.idx(cid)
}

func (t *centrifugo) dm(idx int, from, to string) []byte {
	return fmt.Appendf(nil, `{"id":%d,"publish":{"channel":"u_%s","data":{"c":%q,"f":%q}}}`, idx+1, to, t.cid(idx), from)
}

func (t *centrifugo) public(idx int, from string) []byte {
	return fmt.Appendf(nil, `{"id":%d,"publish":{"channel":"public","data":{"c":%q,"f":%q}}}`, idx+1, t.cid(idx), from)
}

// pong answers the server's ping (an empty command) with an empty reply.
func (t *centrifugo) pong(b []byte) []byte {
	if string(bytes.TrimSpace(b)) == "{}" {
		return []byte("{}")
	}
	return nil
}

func (t *centrifugo) decode(b []byte, emit func(event)) {
	for line := range bytes.Lines(b) {
		line = bytes.TrimSpace(line)
		switch {
		case len(line) == 0:
		case bytes.Contains(line, []byte(`"push":`)):
			if bytes.Contains(line, []byte(`"pub":`)) {
				emit(event{kind: evDeliver, idx: t.idx(stringField(line, "c")), conv: stringField(line, "channel")})
			} else {
				emit(event{kind: evOther, idx: -1})
			}
		case bytes.Contains(line, []byte(`"error":`)):
			var f struct {
				ID    int `json:"id"`
				Error struct {
					Code int `json:"code"`
				} `json:"error"`
			}
			_ = json.Unmarshal(line, &f)
			emit(event{kind: evError, idx: f.ID - 1, code: "centrifugo_" + strconv.Itoa(f.Error.Code)})
		case bytes.Contains(line, []byte(`"publish":`)):
			emit(event{kind: evAck, idx: int(intField(line, "id")) - 1})
		default:
			emit(event{kind: evOther, idx: -1})
		}
	}
}
