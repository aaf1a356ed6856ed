package deploy

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// compose is the part of docker-compose.yml the tests read (anchors and
// merge keys resolved by the YAML decoder).
type compose struct {
	Services map[string]service `yaml:"services"`
	Volumes  map[string]any     `yaml:"volumes"`
}

type service struct {
	Image       string                       `yaml:"image"`
	Build       any                          `yaml:"build"`
	Command     []string                     `yaml:"command"`
	Environment map[string]string            `yaml:"environment"`
	Ports       []string                     `yaml:"ports"`
	Expose      []string                     `yaml:"expose"`
	Volumes     []string                     `yaml:"volumes"`
	DependsOn   map[string]map[string]string `yaml:"depends_on"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

func readCompose(t *testing.T) compose {
	t.Helper()
	raw, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return c
}

var (
	gateways = []string{"gw-1", "gw-2", "gw-3"}
	brokers  = []string{"kafka-1", "kafka-2", "kafka-3"}
)

func TestComposeStartsTheProductionLikeCluster(t *testing.T) {
	c := readCompose(t)
	want := append(append([]string{"redis", "router", "nginx", "kafka-ui", "prometheus", "grafana"}, gateways...), brokers...)
	var got []string
	for name := range c.Services {
		got = append(got, name)
	}
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Fatalf("services %v, want %v", got, want)
	}
	for name, s := range c.Services {
		if s.Image == "" {
			t.Errorf("%s: no image", name)
		}
		if s.Healthcheck == nil && name != "kafka-ui" { // kafka-ui: nothing depends on it
			t.Errorf("%s: no healthcheck", name)
		}
		for dep, cond := range s.DependsOn {
			d, ok := c.Services[dep]
			switch {
			case !ok:
				t.Errorf("%s depends on %s, which is not a service", name, dep)
			case cond["condition"] != "service_healthy":
				t.Errorf("%s depends on %s with condition %q, want service_healthy", name, dep, cond["condition"])
			case d.Healthcheck == nil:
				t.Errorf("%s waits for %s to be healthy, which has no healthcheck", name, dep)
			}
		}
		for _, v := range s.Volumes {
			src := strings.Split(v, ":")[0]
			if strings.HasPrefix(src, "./") {
				if _, err := os.Stat("../" + src); err != nil {
					t.Errorf("%s mounts %s: %v", name, src, err)
				}
			} else if _, ok := c.Volumes[src]; !ok {
				t.Errorf("%s mounts volume %s, which is not declared", name, src)
			}
		}
		for _, arg := range s.Command {
			if arg == "go" || strings.HasSuffix(arg, "/go") {
				t.Errorf("%s: runs the go tool (%v); compose runs the built image", name, s.Command)
			}
		}
	}
}

func TestComposePublishesTheDocumentedPorts(t *testing.T) {
	c := readCompose(t)
	want := map[string][]string{
		"nginx":      {"8080:8080"},
		"router":     {"9090:9090"},
		"kafka-ui":   {"8090:8080"},
		"prometheus": {"9091:9090"},
		"grafana":    {"3000:3000"},
	}
	host := map[string]string{}
	for name, s := range c.Services {
		if !slices.Equal(s.Ports, want[name]) {
			t.Errorf("%s publishes %v, want %v", name, s.Ports, want[name])
		}
		for _, p := range s.Ports {
			h := strings.Split(p, ":")[0]
			if other, dup := host[h]; dup {
				t.Errorf("host port %s published by %s and %s", h, other, name)
			}
			host[h] = name
		}
	}
}

// runShArgs returns the arguments deploy/local/run.sh (make run) starts
// bin/<binary> with.
func runShArgs(t *testing.T, binary string) []string {
	t.Helper()
	raw, err := os.ReadFile("local/run.sh")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`"\$bin/` + binary + `"((?:\s+[^\s>&\\]+)*)`)
	m := re.FindStringSubmatch(string(raw))
	if m == nil {
		t.Fatalf("deploy/local/run.sh no longer starts \"$bin/%s\": update this test and docker-compose.yml together", binary)
	}
	return strings.Fields(m[1])
}

func TestComposeRunsTheSameCommandsAsMakeRun(t *testing.T) {
	c := readCompose(t)
	members := map[string]string{"router": "router"}
	for _, gw := range gateways {
		members[gw] = "gateway"
	}
	configKeys := map[string]map[string]bool{"gateway": configEnv(t, "gateway"), "router": configEnv(t, "router")}
	serverIDs := map[string]bool{}
	for name, binary := range members {
		s := c.Services[name]
		want := append([]string{"/app/bin/" + binary}, runShArgs(t, binary)...)
		if !slices.Equal(s.Command, want) {
			t.Errorf("%s: command %q, want %q (deploy/local/run.sh's)", name, s.Command, want)
		}
		if s.Build == nil || s.Image != c.Services["router"].Image {
			t.Errorf("%s: want build: . and the one switchboard image, got build %v image %q", name, s.Build, s.Image)
		}
		// Only environment overrides, and only of keys the service reads.
		for key := range s.Environment {
			if !configKeys[binary][key] && !pendingKeys[key] {
				t.Errorf("%s: %s is not a key of configs/%s.yaml", name, key, binary)
			}
		}
		env := s.Environment
		if got, want := env["KAFKA_BROKERS"], hostPorts(brokers, 9092); got != want {
			t.Errorf("%s: KAFKA_BROKERS %q, want every broker %q", name, got, want)
		}
		if env["KAFKA_REPLICATION_FACTOR"] != "3" || env["KAFKA_MIN_INSYNC_REPLICAS"] != "2" {
			t.Errorf("%s: want KAFKA_REPLICATION_FACTOR 3 and KAFKA_MIN_INSYNC_REPLICAS 2, got %q and %q",
				name, env["KAFKA_REPLICATION_FACTOR"], env["KAFKA_MIN_INSYNC_REPLICAS"])
		}
		if env["REDIS_ADDR"] != "redis:6379" {
			t.Errorf("%s: REDIS_ADDR %q", name, env["REDIS_ADDR"])
		}
		for _, dep := range append([]string{"redis"}, brokers...) {
			if _, ok := s.DependsOn[dep]; !ok {
				t.Errorf("%s does not wait for %s", name, dep)
			}
		}
		if binary == "gateway" {
			if env["SERVER_ID"] != name || serverIDs[env["SERVER_ID"]] {
				t.Errorf("%s: SERVER_ID %q, want the service's name, unique", name, env["SERVER_ID"])
			}
			serverIDs[env["SERVER_ID"]] = true
			if !strings.Contains(env["AUTH_JWT_SECRET"], "${AUTH_JWT_SECRET:?") {
				t.Errorf("%s: AUTH_JWT_SECRET must come from the environment, required: %q", name, env["AUTH_JWT_SECRET"])
			}
			if len(s.Ports) != 0 {
				t.Errorf("%s: gateways are reached through nginx only, but it publishes %v", name, s.Ports)
			}
		}
		// The admin address serves /metrics and the probes on the compose
		// network; it is never published.
		port := strings.TrimPrefix(env["ADMIN_ADDR"], ":")
		if port == "" || port == env["HTTP_ADDR"] || strings.HasPrefix(env["ADMIN_ADDR"], "127.") {
			t.Errorf("%s: ADMIN_ADDR %q: want a port of its own, reachable by Prometheus", name, env["ADMIN_ADDR"])
		}
		if hc := strings.Join(s.Healthcheck.Test, " "); !strings.Contains(hc, "127.0.0.1:"+port+"/readyz") {
			t.Errorf("%s: healthcheck %q does not probe /readyz on its ADMIN_ADDR %q", name, hc, env["ADMIN_ADDR"])
		}
		for _, p := range s.Ports {
			if strings.HasSuffix(p, ":"+port) {
				t.Errorf("%s publishes its admin port (%s)", name, p)
			}
		}
	}
}

// pendingKeys are environment variables the product gains with issue 9
// (replicated topics) that configs/*.yaml may not list yet.
var pendingKeys = map[string]bool{"KAFKA_REPLICATION_FACTOR": true, "KAFKA_MIN_INSYNC_REPLICAS": true}

// configEnv returns the environment variable of every key in
// configs/<name>.yaml: the key path upper-cased, dots as underscores.
func configEnv(t *testing.T, name string) map[string]bool {
	t.Helper()
	raw, err := os.ReadFile("../configs/" + name + ".yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				walk(prefix+k+"_", sub)
				continue
			}
			keys[strings.ToUpper(prefix+k)] = true
		}
	}
	walk("", doc)
	return keys
}

func hostPorts(hosts []string, port int) string {
	var out []string
	for _, h := range hosts {
		out = append(out, fmt.Sprintf("%s:%d", h, port))
	}
	return strings.Join(out, ",")
}

func TestComposeKafkaIsThreeReplicatedBrokers(t *testing.T) {
	c := readCompose(t)
	pom, err := os.ReadFile("kafka/pom.xml")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`<kafka.version>(\d+\.\d+)\.\d+</kafka.version>`).FindSubmatch(pom)
	if m == nil {
		t.Fatal("deploy/kafka/pom.xml: no <kafka.version>")
	}
	line := string(m[1])
	var voters []string
	for i, b := range brokers {
		voters = append(voters, fmt.Sprintf("%d@%s:9093", i+1, b))
	}
	clusterIDs := map[string]bool{}
	for i, b := range brokers {
		s := c.Services[b]
		if !strings.HasPrefix(s.Image, "apache/kafka:"+line+".") {
			t.Errorf("%s: image %s, want apache/kafka of the %s line (deploy/kafka's)", b, s.Image, line)
		}
		env := s.Environment
		for key, want := range map[string]string{
			"KAFKA_NODE_ID":                                  fmt.Sprint(i + 1),
			"KAFKA_PROCESS_ROLES":                            "broker,controller",
			"KAFKA_CONTROLLER_QUORUM_VOTERS":                 strings.Join(voters, ","),
			"KAFKA_ADVERTISED_LISTENERS":                     "PLAINTEXT://" + b + ":9092",
			"KAFKA_DEFAULT_REPLICATION_FACTOR":               "3",
			"KAFKA_MIN_INSYNC_REPLICAS":                      "2",
			"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR":         "3",
			"KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "3",
			"KAFKA_TRANSACTION_STATE_LOG_MIN_ISR":            "2",
			"KAFKA_AUTO_CREATE_TOPICS_ENABLE":                "false",
		} {
			if env[key] != want {
				t.Errorf("%s: %s=%q, want %q", b, key, env[key], want)
			}
		}
		clusterIDs[env["CLUSTER_ID"]] = true
		if len(s.Ports) != 0 {
			t.Errorf("%s publishes %v: the brokers advertise compose-network names, unusable from the host", b, s.Ports)
		}
	}
	if len(clusterIDs) != 1 || clusterIDs[""] {
		t.Errorf("the brokers need one shared CLUSTER_ID, got %v", clusterIDs)
	}
	ui := c.Services["kafka-ui"]
	if !strings.HasPrefix(ui.Image, "kafbat/kafka-ui:") || strings.HasSuffix(ui.Image, ":latest") {
		t.Errorf("kafka-ui: image %s, want a pinned kafbat/kafka-ui", ui.Image)
	}
	if got := ui.Environment["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"]; got != hostPorts(brokers, 9092) {
		t.Errorf("kafka-ui: bootstrap servers %q, want every broker", got)
	}
}

func TestComposeRedisIsPersistedLikeRedisSh(t *testing.T) {
	raw, err := os.ReadFile("redis/redis.sh")
	if err != nil {
		t.Fatal(err)
	}
	script := string(raw)
	cmd := readCompose(t).Services["redis"].Command
	for _, flag := range []string{"--appendonly", "--appendfsync", "--save"} {
		m := regexp.MustCompile(regexp.QuoteMeta(flag) + `\s+('[^']*'|\S+)`).FindStringSubmatch(script)
		if m == nil {
			t.Fatalf("redis.sh no longer passes %s", flag)
		}
		want := strings.Trim(m[1], "'")
		i := slices.Index(cmd, flag)
		if i < 0 || i+1 >= len(cmd) || cmd[i+1] != want {
			t.Errorf("compose redis: %s must be %q as in deploy/redis/redis.sh; command %q", flag, want, cmd)
		}
	}
}

func TestNginxBalancesEveryGateway(t *testing.T) {
	raw, err := os.ReadFile("nginx/nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	conf := string(raw)
	var servers []string
	for _, m := range regexp.MustCompile(`(?m)^\s*server\s+([\w.-]+):(\d+)\s+([^;]*);`).FindAllStringSubmatch(conf, -1) {
		servers = append(servers, m[1]+":"+m[2])
		if !strings.Contains(m[3], "max_fails=") || !strings.Contains(m[3], "fail_timeout=") {
			t.Errorf("upstream server %s:%s has no passive health check (max_fails, fail_timeout)", m[1], m[2])
		}
	}
	if got, want := strings.Join(servers, ","), hostPorts(gateways, 8080); got != want {
		t.Errorf("nginx upstream servers %s, want %s", got, want)
	}
	for _, directive := range []string{
		"proxy_http_version 1.1;",
		"proxy_set_header Upgrade $http_upgrade;",
		"proxy_set_header Connection $connection_upgrade;",
		"proxy_read_timeout 1h;",
		"listen 8080;",
	} {
		if !strings.Contains(conf, directive) {
			t.Errorf("nginx.conf lacks %q", directive)
		}
	}
}

func TestPrometheusScrapesEveryService(t *testing.T) {
	raw, err := os.ReadFile("prometheus/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	targets := map[string]bool{}
	for _, sc := range p.ScrapeConfigs {
		if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
			t.Errorf("job %s scrapes %s", sc.JobName, sc.MetricsPath)
		}
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				targets[target] = true
			}
		}
	}
	c := readCompose(t)
	for _, name := range append([]string{"router"}, gateways...) {
		target := name + c.Services[name].Environment["ADMIN_ADDR"]
		if !targets[target] {
			t.Errorf("prometheus does not scrape %s (%s)", name, target)
		}
	}
}

func TestDockerfileBuildsASmallImageWithGoModsGo(t *testing.T) {
	raw, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(raw)
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go (\d+)\.(\d+)`).FindStringSubmatch(string(mod))
	argLine := regexp.MustCompile(`(?m)^ARG GO_VERSION=(\d+)\.(\d+)\.(\d+)$`).FindStringSubmatch(df)
	if goLine == nil || argLine == nil {
		t.Fatalf("want go.mod's go line and the Dockerfile's ARG GO_VERSION=x.y.z")
	}
	if goLine[1] != argLine[1] || goLine[2] != argLine[2] {
		t.Errorf("Dockerfile GO_VERSION %s.%s.%s, want go.mod's go %s.%s", argLine[1], argLine[2], argLine[3], goLine[1], goLine[2])
	}
	froms := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(df, -1)
	if len(froms) < 2 || !strings.HasPrefix(froms[0][1], "golang:${GO_VERSION}") {
		t.Fatalf("want a multi-stage build from golang:${GO_VERSION}, got %v", froms)
	}
	final := froms[len(froms)-1][1]
	if strings.HasPrefix(final, "golang") || strings.HasSuffix(final, ":latest") || !strings.Contains(final, ":") {
		t.Errorf("final stage %s: want a small pinned base image", final)
	}
	for _, want := range []string{"CGO_ENABLED=0", "./cmd/gateway", "./cmd/router", "./cmd/chatload", "ca-certificates", "COPY configs/"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	users := regexp.MustCompile(`(?m)^USER\s+(\S+)`).FindAllStringSubmatch(df, -1)
	if len(users) == 0 || strings.HasPrefix(users[len(users)-1][1], "0") || users[len(users)-1][1] == "root" {
		t.Errorf("the final image must run as a non-root user, got %v", users)
	}
	for _, name := range append([]string{"router"}, gateways...) {
		if bin := readCompose(t).Services[name].Command[0]; !strings.Contains(df, "/app/bin/") || !strings.HasPrefix(bin, "/app/bin/") {
			t.Errorf("%s runs %s, which the image does not hold", name, bin)
		}
	}
}
