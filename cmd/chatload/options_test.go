package main

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

func TestTodaysFlagsStillParse(t *testing.T) {
	o, err := parseOptions([]string{"-users", "100", "-rate", "2000", "-duration", "20s", "-public", "0.02", "-cpu", "off"})
	if err != nil {
		t.Fatal(err)
	}
	if o.scenario != "mixed" || o.users != 100 || o.rate != 2000 || o.publicRatio != 0.02 || len(o.gateways) != 2 {
		t.Fatalf("parsed %+v", o)
	}
	o, err = parseOptions([]string{"-idle", "2000", "-cpu", "off"})
	if err != nil || o.scenario != "connect" || o.conns != 2000 {
		t.Fatalf("-idle 2000: %+v, %v", o, err)
	}
}

func TestTheSpecNamesAndTheOldNamesRunTheSameScenarios(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-scenario", "private"}, "private"},
		{[]string{"-scenario", "dm"}, "private"},
		{[]string{"-scenario", "connect", "-conns", "10"}, "connect"},
		{[]string{"-scenario", "idle", "-conns", "10"}, "connect"},
		{[]string{"-scenario", "dm", "-idle", "10"}, "connect"},
		{[]string{"-scenario", "public"}, "public"},
		{[]string{"-scenario", "mixed"}, "mixed"},
		{[]string{"-scenario", "storm"}, "storm"},
		{[]string{"-scenario", "sync"}, "sync"},
		{[]string{"-scenario", "dm", "-target", "centrifugo"}, "private"},
		{[]string{"-scenario", "private", "-target", "centrifugo"}, "private"},
		{[]string{"-scenario", "idle", "-conns", "10", "-target", "centrifugo"}, "connect"},
		{[]string{"-scenario", "connect", "-conns", "10", "-target", "centrifugo"}, "connect"},
	} {
		o, err := parseOptions(append(tc.args, "-cpu", "off"))
		if err != nil || o.scenario != tc.want {
			t.Errorf("%v: scenario %q, %v; want %q", tc.args, o.scenario, err, tc.want)
			continue
		}
		if scenarios[o.scenario] == nil {
			t.Errorf("%v: no run for %q", tc.args, o.scenario)
		}
	}
	if len(scenarios) != 6 {
		t.Errorf("scenarios %v: want the six canonical names only", slices.Collect(maps.Keys(scenarios)))
	}
	for alias, name := range scenarioAliases {
		if _, ok := scenarios[alias]; ok || scenarios[name] == nil {
			t.Errorf("alias %q → %q: an alias must not be a scenario of its own and must name one", alias, name)
		}
	}
}

func TestAnUnknownScenarioIsRefusedWithTheNamesToUse(t *testing.T) {
	_, err := parseOptions([]string{"-scenario", "flood", "-cpu", "off"})
	if err == nil || !strings.Contains(err.Error(), "connect, private, public, mixed, storm or sync") {
		t.Fatalf("error %v", err)
	}
}

func TestBadArgumentsAreRefusedWithTheFlagNamed(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-scenario", "flood"}, "-scenario"},
		{[]string{"-target", "nats"}, "-target"},
		{[]string{"-target", "centrifugo", "-scenario", "storm"}, "centrifugo"},
		{[]string{"-rate", "0"}, "-rate"},
		{[]string{"-rate", "1e9"}, "-rate"},
		{[]string{"-duration", "1h"}, "-duration"},
		{[]string{"-drain", "-1s"}, "-drain"},
		{[]string{"-public", "2"}, "-public"},
		{[]string{"-users", "1"}, "-users"},
		{[]string{"-scenario", "dm", "-pairs", "0"}, "-pairs"},
		{[]string{"-scenario", "private", "-pairs", "0"}, "-pairs"},
		{[]string{"-scenario", "idle", "-conns", "300000"}, "-conns"},
		{[]string{"-scenario", "connect", "-conns", "0"}, "-conns"},
		{[]string{"-target", "centrifugo", "-scenario", "mixed"}, "centrifugo"},
		{[]string{"-scenario", "storm", "-clients", "0"}, "-clients"},
		{[]string{"-auth", "basic"}, "-auth"},
		{[]string{"-gateways", "ws://10.0.0.1:8080"}, "loopback"},
		{[]string{"-gateways", "http://127.0.0.1:8080"}, "ws://"},
		{[]string{"-gateways", "ws://localhost:8080", "-source-addrs", "4"}, "127.0.0.1"},
		{[]string{"-cpu", "gateway"}, "name:port"},
		{[]string{"extra"}, "unexpected"},
	} {
		_, err := parseOptions(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one mentioning %q", tc.args, err, tc.want)
		}
	}
}

func TestRemoteTargetsNeedAllowRemote(t *testing.T) {
	if _, err := parseOptions([]string{"-gateways", "ws://10.0.0.1:8080", "-allow-remote", "-cpu", "off"}); err != nil {
		t.Fatal(err)
	}
}

func TestAutoCPUNamesEveryComponentByItsPort(t *testing.T) {
	t.Setenv("GW1_PORT", "38080")
	t.Setenv("ROUTER_PORT", "39500")
	t.Setenv("REDIS_PORT", "36379")
	t.Setenv("KAFKA_PORT", "39092")
	o, err := parseOptions([]string{"-scenario", "dm"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range o.cpu {
		got = append(got, c.name)
	}
	if strings.Join(got, ",") != "gateway,router,redis,kafka,chatload" || o.cpu[0].ports[1] != 38081 || o.cpu[3].ports[0] != 39092 {
		t.Fatalf("components %+v", o.cpu)
	}
	o, err = parseOptions([]string{"-scenario", "dm", "-target", "centrifugo", "-gateways", "ws://127.0.0.1:38800"})
	if err != nil || len(o.cpu) != 3 || o.cpu[0].name != "centrifugo" || o.metrics[0] != "http://127.0.0.1:38800/metrics" {
		t.Fatalf("centrifugo: %+v, %v", o, err)
	}
}
