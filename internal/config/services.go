package config

import (
	"errors"
	"fmt"
	"time"

	"github.com/switchboard-chat/switchboard/internal/auth"
	"github.com/switchboard-chat/switchboard/internal/chat"
)

// Gateway is the gateway's configuration.
type Gateway struct {
	Common
	ServerID       chat.ServerID // SERVER_ID, required
	AuthMode       string        // AUTH_MODE: jwt (default) or open
	JWTSecret      string        // AUTH_JWT_SECRET: signing secret, kid "default"
	JWTKeys        []string      // AUTH_JWT_KEYS: kid:secret list; the first signs
	JWTTTL         time.Duration // AUTH_JWT_TTL
	LoginPerUser   auth.Limit    // AUTH_LOGIN_USER_EVERY, AUTH_LOGIN_USER_BURST
	LoginPerIP     auth.Limit    // AUTH_LOGIN_IP_EVERY, AUTH_LOGIN_IP_BURST
	AllowedOrigins []string      // ALLOWED_ORIGINS, comma separated host patterns

	TopicPartitions int           // KAFKA_TOPIC_PARTITIONS: of messages-<SERVER_ID>
	TopicRetention  time.Duration // KAFKA_TOPIC_RETENTION
	ProduceTimeout  time.Duration // KAFKA_PRODUCE_TIMEOUT

	SendQueueBytes  int           // GATEWAY_SEND_QUEUE_BYTES
	PingInterval    time.Duration // GATEWAY_PING_INTERVAL
	PingTimeout     time.Duration // GATEWAY_PING_TIMEOUT
	DrainWindow     time.Duration // GATEWAY_DRAIN_WINDOW
	ShutdownTimeout time.Duration // GATEWAY_SHUTDOWN_TIMEOUT
	ConnectRate     float64       // GATEWAY_CONNECT_RATE
	ConnectBurst    int           // GATEWAY_CONNECT_BURST

	HTTPReadTimeout    time.Duration // HTTP_READ_TIMEOUT
	HTTPWriteTimeout   time.Duration // HTTP_WRITE_TIMEOUT
	HTTPIdleTimeout    time.Duration // HTTP_IDLE_TIMEOUT
	MaxHeaderBytes     int           // HTTP_MAX_HEADER_BYTES
	MaxBodyBytes       int64         // HTTP_MAX_BODY_BYTES
	MaxConnsPerIP      int           // GATEWAY_MAX_CONNS_PER_IP (negative: unlimited)
	MessageRate        float64       // GATEWAY_MESSAGE_RATE (negative: unlimited)
	MessageBurst       int           // GATEWAY_MESSAGE_BURST
	MaxSessionsPerUser int           // GATEWAY_MAX_SESSIONS_PER_USER (negative: unlimited)
	AuditTopic         string        // KAFKA_AUDIT_TOPIC
}

var gatewayDefaults = map[string]any{
	"server_id":                     "",
	"http_addr":                     ":8080",
	"auth.mode":                     "jwt",
	"auth.jwt_secret":               "",
	"auth.jwt_keys":                 []string{},
	"auth.jwt_ttl":                  "24h",
	"auth.login_user_every":         "12s",
	"auth.login_user_burst":         5,
	"auth.login_ip_every":           "3s",
	"auth.login_ip_burst":           20,
	"allowed_origins":               []string{},
	"kafka.topic_partitions":        1,
	"kafka.topic_retention":         "24h",
	"kafka.produce_timeout":         "5s",
	"gateway.send_queue_bytes":      1 << 20,
	"gateway.ping_interval":         "20s",
	"gateway.ping_timeout":          "10s",
	"gateway.drain_window":          "5s",
	"gateway.shutdown_timeout":      "20s",
	"gateway.connect_rate":          200,
	"gateway.connect_burst":         400,
	"http.read_timeout":             "30s",
	"http.write_timeout":            "30s",
	"http.idle_timeout":             "60s",
	"http.max_header_bytes":         16384,
	"http.max_body_bytes":           65536,
	"gateway.max_conns_per_ip":      256,
	"gateway.message_rate":          50,
	"gateway.message_burst":         100,
	"gateway.max_sessions_per_user": 20,
	"kafka.audit_topic":             "chat-audit",
}

// LoadGateway loads the gateway's configuration; see ConfigFile for how
// file and required are chosen.
func LoadGateway(file string, required bool) (*Gateway, error) {
	v, err := load(file, required, gatewayDefaults)
	if err != nil {
		return nil, err
	}
	c, err := common(v)
	if err != nil {
		return nil, err
	}
	g := &Gateway{
		Common:          c,
		AuthMode:        v.GetString("auth.mode"),
		AllowedOrigins:  list(v.GetStringSlice("allowed_origins")),
		TopicPartitions: v.GetInt("kafka.topic_partitions"),
		SendQueueBytes:  v.GetInt("gateway.send_queue_bytes"),
		ConnectRate:     v.GetFloat64("gateway.connect_rate"),
		ConnectBurst:    v.GetInt("gateway.connect_burst"),

		MaxHeaderBytes:     v.GetInt("http.max_header_bytes"),
		MaxBodyBytes:       v.GetInt64("http.max_body_bytes"),
		MaxConnsPerIP:      v.GetInt("gateway.max_conns_per_ip"),
		MessageRate:        v.GetFloat64("gateway.message_rate"),
		MessageBurst:       v.GetInt("gateway.message_burst"),
		MaxSessionsPerUser: v.GetInt("gateway.max_sessions_per_user"),
		AuditTopic:         v.GetString("kafka.audit_topic"),
	}
	raw := v.GetString("server_id")
	if raw == "" {
		return nil, fmt.Errorf("SERVER_ID (server_id) is required: every gateway needs a unique id, e.g. SERVER_ID=gw-1")
	}
	if g.ServerID, err = chat.ParseServerID(raw); err != nil {
		return nil, fmt.Errorf("SERVER_ID (server_id): %v", err)
	}
	g.JWTSecret = v.GetString("auth.jwt_secret")
	g.JWTKeys = list(v.GetStringSlice("auth.jwt_keys"))
	g.LoginPerUser.Burst = v.GetInt("auth.login_user_burst")
	g.LoginPerIP.Burst = v.GetInt("auth.login_ip_burst")
	switch g.AuthMode {
	case "open":
	case "jwt":
		if g.JWTSecret == "" && len(g.JWTKeys) == 0 {
			return nil, errors.New("AUTH_MODE=jwt needs AUTH_JWT_SECRET (auth.jwt_secret, at least 32 bytes) or AUTH_JWT_KEYS (kid:secret,…); or set AUTH_MODE=open for a local demo")
		}
	default:
		return nil, fmt.Errorf("AUTH_MODE (auth.mode) %q: want jwt or open", g.AuthMode)
	}
	for _, d := range []struct {
		key string
		dst *time.Duration
	}{
		{"kafka.topic_retention", &g.TopicRetention},
		{"kafka.produce_timeout", &g.ProduceTimeout},
		{"gateway.ping_interval", &g.PingInterval},
		{"gateway.ping_timeout", &g.PingTimeout},
		{"gateway.drain_window", &g.DrainWindow},
		{"gateway.shutdown_timeout", &g.ShutdownTimeout},
		{"http.read_timeout", &g.HTTPReadTimeout},
		{"http.write_timeout", &g.HTTPWriteTimeout},
		{"http.idle_timeout", &g.HTTPIdleTimeout},
		{"auth.jwt_ttl", &g.JWTTTL},
		{"auth.login_user_every", &g.LoginPerUser.Every},
		{"auth.login_ip_every", &g.LoginPerIP.Every},
	} {
		if *d.dst, err = duration(v, d.key); err != nil {
			return nil, err
		}
	}
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

// Router is the router's configuration.
type Router struct {
	Common
	GroupID         string        // ROUTER_GROUP_ID
	JanitorInterval time.Duration // ROUTER_JANITOR_INTERVAL
	DeadAfter       time.Duration // ROUTER_DEAD_AFTER
	OrphanGrace     time.Duration // ROUTER_ORPHAN_GRACE
	HistoryWindow   int           // ROUTER_HISTORY_WINDOW

	CheckpointTopic    string        // KAFKA_CHECKPOINT_TOPIC ("": chat-checkpoint)
	CheckpointInterval time.Duration // ROUTER_CHECKPOINT_INTERVAL
	// ProduceTimeout is the gateways' KAFKA_PRODUCE_TIMEOUT: after a Redis
	// loss the router waits this long before sends are accepted again.
	ProduceTimeout time.Duration // KAFKA_PRODUCE_TIMEOUT
	DedupeLookback time.Duration // ROUTER_DEDUPE_LOOKBACK
	AdminToken     string        // ADMIN_TOKEN: the ops page's bearer token
	AuditTopic     string        // KAFKA_AUDIT_TOPIC: shown on the ops page
}

var routerDefaults = map[string]any{
	"http_addr":                  ":9090",
	"router.group_id":            "router",
	"router.janitor_interval":    "5s",
	"router.dead_after":          "0s",
	"router.orphan_grace":        "1h",
	"router.history_window":      1000,
	"kafka.checkpoint_topic":     "",
	"router.checkpoint_interval": "10s",
	"kafka.produce_timeout":      "5s",
	"router.dedupe_lookback":     "60s",
	"admin.token":                "",
	"kafka.audit_topic":          "chat-audit",
}

// LoadRouter loads the router's configuration.
func LoadRouter(file string, required bool) (*Router, error) {
	v, err := load(file, required, routerDefaults)
	if err != nil {
		return nil, err
	}
	c, err := common(v)
	if err != nil {
		return nil, err
	}
	r := &Router{Common: c, GroupID: v.GetString("router.group_id"), HistoryWindow: v.GetInt("router.history_window"),
		CheckpointTopic: v.GetString("kafka.checkpoint_topic"), AdminToken: v.GetString("admin.token"),
		AuditTopic: v.GetString("kafka.audit_topic")}
	for _, d := range []struct {
		key string
		dst *time.Duration
	}{
		{"router.janitor_interval", &r.JanitorInterval},
		{"router.dead_after", &r.DeadAfter},
		{"router.orphan_grace", &r.OrphanGrace},
		{"router.checkpoint_interval", &r.CheckpointInterval},
		{"kafka.produce_timeout", &r.ProduceTimeout},
		{"router.dedupe_lookback", &r.DedupeLookback},
	} {
		if *d.dst, err = duration(v, d.key); err != nil {
			return nil, err
		}
	}
	return r, nil
}
