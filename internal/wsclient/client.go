// Package wsclient is a small Go client of the Switchboard WebSocket
// protocol, used by the integration tests and the load tester.
package wsclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/coder/websocket"
)

// Frame is any server frame; only the fields of its Type are set.
type Frame struct {
	Type string `json:"type"`
	// hello
	User        string `json:"user,omitempty"`
	Server      string `json:"server,omitempty"`
	Session     string `json:"session,omitempty"`
	HeartbeatMS int64  `json:"heartbeat_ms,omitempty"`
	// sent, message, error
	CID     string `json:"cid,omitempty"`
	ID      string `json:"id,omitempty"`
	Conv    string `json:"conv,omitempty"`
	Seq     int64  `json:"seq,omitempty"`
	TS      int64  `json:"ts,omitempty"`
	From    string `json:"from,omitempty"`
	To      string `json:"to,omitempty"`
	Body    string `json:"body,omitempty"`
	Deleted bool   `json:"deleted,omitempty"`
	Batch   int    `json:"batch,omitempty"` // set on messages sent by a sync
	// error
	Code         string `json:"code,omitempty"`
	Message      string `json:"message,omitempty"`
	RetryAfterMS int64  `json:"retry_after_ms,omitempty"`
	// receipt, typing, presence
	Status string `json:"status,omitempty"`
	State  string `json:"state,omitempty"`
	Online bool   `json:"online,omitempty"`
	// synced, reconnect, pong
	Convs   map[string]int64 `json:"convs,omitempty"`
	AfterMS int64            `json:"after_ms,omitempty"`
	Reason  string           `json:"reason,omitempty"`
	T       json.RawMessage  `json:"t,omitempty"`
	// history
	Before     int64   `json:"before,omitempty"`
	Messages   []Frame `json:"messages,omitempty"`
	NextBefore int64   `json:"next_before,omitempty"`
	// Raw is the frame as received.
	Raw []byte `json:"-"`
}

// Client is one WebSocket session. Frames are read in the background into
// a buffer; Next returns them in order. Safe for one reader and any number
// of concurrent writers.
type Client struct {
	ws     *websocket.Conn
	Hello  Frame
	frames chan Frame
	done   chan struct{}

	mu  sync.Mutex
	err error // why the reader stopped
}

// Buffer is how many unread frames a Client holds; the reader blocks
// (and the server eventually sees a slow consumer) past it.
const Buffer = 1 << 16

// Dial connects to url (ws://host/ws?user=…) and waits for hello. The
// handshake's HTTP response is returned on failure, when there was one.
func Dial(ctx context.Context, url string, header http.Header) (*Client, *http.Response, error) {
	ws, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: header})
	if err != nil {
		return nil, resp, fmt.Errorf("dial %s: %w", url, err)
	}
	ws.SetReadLimit(1 << 20)
	c := &Client{ws: ws, frames: make(chan Frame, Buffer), done: make(chan struct{})}
	go c.readLoop()
	f, err := c.Next(ctx)
	if err != nil {
		c.Close()
		return nil, resp, fmt.Errorf("wait for hello: %w", err)
	}
	if f.Type != "hello" {
		c.Close()
		return nil, resp, fmt.Errorf("first frame is %s, want hello", f.Raw)
	}
	c.Hello = f
	return c, resp, nil
}

func (c *Client) readLoop() {
	defer close(c.done)
	defer close(c.frames)
	for {
		_, data, err := c.ws.Read(context.Background())
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		var f Frame
		if err := json.Unmarshal(data, &f); err != nil {
			f = Frame{Type: "invalid"}
		}
		f.Raw = data
		c.frames <- f
	}
}

// ErrClosed is returned by Next once the connection ended; CloseStatus
// tells how.
var ErrClosed = errors.New("connection closed")

// Next returns the next frame, waiting until ctx is done.
func (c *Client) Next(ctx context.Context) (Frame, error) {
	select {
	case f, ok := <-c.frames:
		if !ok {
			return Frame{}, fmt.Errorf("%w: %v", ErrClosed, c.Err())
		}
		return f, nil
	case <-ctx.Done():
		return Frame{}, ctx.Err()
	}
}

// WaitFor returns the first frame for which match is true, discarding the
// frames before it.
func (c *Client) WaitFor(ctx context.Context, match func(Frame) bool) (Frame, error) {
	for {
		f, err := c.Next(ctx)
		if err != nil {
			return f, err
		}
		if match(f) {
			return f, nil
		}
	}
}

// Err returns why the connection ended, or nil while it is open.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Done is closed when the connection has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// SendJSON writes v as one text frame.
func (c *Client) SendJSON(ctx context.Context, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.ws.Write(ctx, websocket.MessageText, b)
}

// SendRaw writes data as one text frame.
func (c *Client) SendRaw(ctx context.Context, data []byte) error {
	return c.ws.Write(ctx, websocket.MessageText, data)
}

// Send is a send frame.
type Send struct {
	Type string `json:"type"` // "send"
	CID  string `json:"cid"`
	Body string `json:"body"`
	To   string `json:"to,omitempty"`
	Conv string `json:"conv,omitempty"`
}

// SendTo sends a direct message.
func (c *Client) SendTo(ctx context.Context, cid, to, body string) error {
	return c.SendJSON(ctx, Send{Type: "send", CID: cid, Body: body, To: to})
}

// SendConv sends a message to a conversation.
func (c *Client) SendConv(ctx context.Context, cid, conv, body string) error {
	return c.SendJSON(ctx, Send{Type: "send", CID: cid, Body: body, Conv: conv})
}

// Close closes the connection normally.
func (c *Client) Close() {
	_ = c.ws.Close(websocket.StatusNormalClosure, "")
	<-c.done
}

// CloseNow drops the connection without a close handshake.
func (c *Client) CloseNow() {
	_ = c.ws.CloseNow()
	<-c.done
}
