package config

import (
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/spf13/viper"

	"github.com/switchboard-chat/switchboard/internal/config/setting"
	"github.com/switchboard-chat/switchboard/internal/gateway"
	"github.com/switchboard-chat/switchboard/internal/kafkabus"
	"github.com/switchboard-chat/switchboard/internal/route"
	"github.com/switchboard-chat/switchboard/internal/router"
)

// services are the two loaders with the file that documents each.
var services = []struct {
	name, file string
	load       func(file string) (any, error)
}{
	{"gateway", "../../configs/gateway.yaml", func(f string) (any, error) { return LoadGateway(f, f != "") }},
	{"router", "../../configs/router.yaml", func(f string) (any, error) { return LoadRouter(f, f != "") }},
}

// stableEnv sets what a gateway needs to load and clears every other
// variable a key reads, so the machine's environment cannot mask a
// difference.
func stableEnv(t *testing.T, keys []string) {
	for _, k := range keys {
		if _, ok := os.LookupEnv(EnvName(k)); ok {
			t.Setenv(EnvName(k), "")
		}
	}
	t.Setenv("SERVER_ID", "gw-test")
	t.Setenv("AUTH_JWT_SECRET", strings.Repeat("s", 32))
}

func keysOf(cfg any) []string {
	seen := map[string]bool{}
	var keys []string
	for _, f := range setting.Fields(cfg) {
		if f.Key != "" && !seen[f.Key] {
			seen[f.Key] = true
			keys = append(keys, f.Key)
		}
	}
	sort.Strings(keys)
	return keys
}

func TestTheYAMLFilesListEveryKeyWithItsDefault(t *testing.T) {
	for _, svc := range services {
		t.Run(svc.name, func(t *testing.T) {
			stableEnv(t, keysOf(&Gateway{}))
			stableEnv(t, keysOf(&Router{}))
			def, err := svc.load("")
			if err != nil {
				t.Fatal(err)
			}
			want := keysOf(def)
			v := viper.New()
			v.SetConfigFile(svc.file)
			if err := v.ReadInConfig(); err != nil {
				t.Fatal(err)
			}
			got := v.AllKeys()
			sort.Strings(got)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s keys differ from the configuration's:\n  only in the file: %v\n  not in the file: %v",
					svc.file, minus(got, want), minus(want, got))
			}
			fromFile, err := svc.load(svc.file)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(fromFile, def) {
				t.Errorf("%s differs from the defaults:\n file:     %+v\n defaults: %+v", svc.file, fromFile, def)
			}
		})
	}
}

func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestTheReadmeNamesEveryVariable(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []any{&Gateway{}, &Router{}} {
		for _, k := range keysOf(cfg) {
			if !strings.Contains(string(readme), "`"+EnvName(k)+"`") {
				t.Errorf("README.md does not name %s (%s)", EnvName(k), k)
			}
		}
	}
}

// A service Config built in a test with zero fields must behave as the
// one the service gets from its files: the keyed defaults agree.
func TestServiceConfigsDefaultAsTheLoadedConfiguration(t *testing.T) {
	stableEnv(t, keysOf(&Gateway{}))
	stableEnv(t, keysOf(&Router{}))
	g, err := LoadGateway("", false)
	if err != nil {
		t.Fatal(err)
	}
	r, err := LoadRouter("", false)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name         string
		loaded, zero any
	}{
		{"gateway.Config", &g.Server, &gateway.Config{ServerID: g.Server.ServerID, LoginPerUser: g.Server.LoginPerUser, LoginPerIP: g.Server.LoginPerIP}},
		{"router.Config", &r.Router, &router.Config{}},
		{"route.Config (gateway)", &g.Route, &route.Config{}},
		{"route.Config (router)", &r.Route, &route.Config{}},
		{"kafkabus.Config", &g.Bus, &kafkabus.Config{}},
	} {
		setting.Fill(tc.zero)
		zero := setting.Fields(tc.zero)
		for i, f := range setting.Fields(tc.loaded) {
			if f.Key == "" {
				continue
			}
			if got, want := f.Value.Interface(), zero[i].Value.Interface(); !reflect.DeepEqual(got, want) {
				t.Errorf("%s %s: loaded default %v, zero field defaults to %v", tc.name, f.Name, got, want)
			}
		}
	}
}

func TestAKeyHasOneDefault(t *testing.T) {
	type twice struct {
		A int `key:"x.y" default:"1"`
		B int `key:"x.y" default:"2"`
	}
	if err := load("", false, &twice{}); err == nil || !strings.Contains(err.Error(), "x.y") {
		t.Fatalf("err = %v, want one naming x.y", err)
	}
}
