//go:build integration

package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// tool finds a validator, or fails: make test installs them first
// (deploy/validators.sh); a missing one is never a silent pass.
func tool(t *testing.T, name, pkg string, extra ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range extra {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatalf("%s not found: run deploy/validators.sh (apt-get install %s); make test does", name, pkg)
	return ""
}

func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// nginx -t on a copy whose upstream hosts are 127.0.0.1: the gateways'
// compose names cannot resolve here, and nginx resolves them while
// checking. Everything else is the file as compose mounts it.
func TestNginxConfigPassesNginxT(t *testing.T) {
	nginx := tool(t, "nginx", "nginx", "/usr/sbin/nginx")
	raw, err := os.ReadFile("nginx/nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^(\s*server\s+)(gw-\d+)(:\d+)`)
	if n := len(re.FindAllIndex(raw, -1)); n != len(gateways) {
		t.Fatalf("want %d upstream servers to stub, found %d", len(gateways), n)
	}
	conf := re.ReplaceAll(raw, []byte("${1}127.0.0.1${3}"))
	dir := t.TempDir()
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	out := run(t, dir, nil, nginx, "-t", "-q", "-p", dir, "-c", path)
	t.Logf("nginx -t: ok %s", out)
}

func TestPrometheusConfigPassesPromtool(t *testing.T) {
	promtool := tool(t, "promtool", "prometheus")
	t.Log(strings.TrimSpace(run(t, ".", nil, promtool, "check", "config", "prometheus/prometheus.yml")))
}

// docker-compose (v1, Debian's) validates the file against the compose
// schema, resolves the anchors and interpolation, and checks the build
// context, without an engine.
func TestComposeFilePassesDockerComposeConfig(t *testing.T) {
	dc := tool(t, "docker-compose", "docker-compose")
	env := []string{"AUTH_JWT_SECRET=" + strings.Repeat("x", 32), "COMPOSE_PROJECT_NAME=switchboard"}
	run(t, "..", env, dc, "-f", "docker-compose.yml", "config", "-q")
	got := strings.Fields(run(t, "..", env, dc, "-f", "docker-compose.yml", "config", "--services"))
	var want []string
	for name := range readCompose(t).Services {
		want = append(want, name)
	}
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("docker-compose sees services %v, the YAML reader %v", got, want)
	}
	// Without the secret, compose refuses to start the gateways.
	cmd := exec.Command(dc, "-f", "docker-compose.yml", "config", "-q")
	cmd.Dir = ".."
	cmd.Env = append(slices.DeleteFunc(os.Environ(), func(s string) bool { return strings.HasPrefix(s, "AUTH_JWT_SECRET=") }), env[1])
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "AUTH_JWT_SECRET") {
		t.Errorf("docker-compose config without AUTH_JWT_SECRET: err %v, output %s", err, out)
	}
}
