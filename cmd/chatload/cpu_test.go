package main

import (
	"net"
	"os"
	"slices"
	"testing"
)

func TestStatCPUIsCountedFromTheLastParenthesisOfTheCommandName(t *testing.T) {
	stat := "1234 (java (kafka) x) S 1 1234 1234 0 -1 4194304 1000 0 0 0 250 50 0 0 20 0 60 0 100 0 0"
	got, err := parseStatCPU(stat)
	if err != nil || got != 3.0 {
		t.Fatalf("parseStatCPU = %v, %v; want 3 s (250+50 ticks)", got, err)
	}
	if _, err := parseStatCPU("1234 (x S 1"); err == nil {
		t.Error("a truncated stat line parsed")
	}
}

func TestCPUSpecGroupsPortsByName(t *testing.T) {
	comps, err := parseCPUSpec("gateway:8080,gateway:8081,redis:6379,self")
	if err != nil {
		t.Fatal(err)
	}
	if len(comps) != 3 || comps[0].name != "gateway" || !slices.Equal(comps[0].ports, []int{8080, 8081}) ||
		comps[2].name != "chatload" || comps[2].pids[0] != os.Getpid() {
		t.Fatalf("parsed %+v", comps)
	}
	for _, bad := range []string{"gateway", "gateway:x", ":80", "g:70000"} {
		if _, err := parseCPUSpec(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestAListeningPortLeadsToItsProcess(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	pids := pidsByPort([]int{port})[port]
	if !slices.Contains(pids, os.Getpid()) {
		t.Fatalf("port %d: pids %v, want this process %d", port, pids, os.Getpid())
	}
	if v, err := procCPU(os.Getpid()); err != nil || v < 0 {
		t.Fatalf("procCPU(self) = %v, %v", v, err)
	}
}
