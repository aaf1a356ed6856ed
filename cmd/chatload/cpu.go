package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// CPU per component: each component is found by the TCP port it listens
// on (/proc/net/tcp{,6} gives the socket's inode, /proc/<pid>/fd the
// process holding it), and its CPU time is utime+stime of /proc/<pid>/stat
// (all threads) read before and after the run. Needs permission to read
// the processes' fd directories (the same user, or root).

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// CPUUse is one component's CPU over a run.
type CPUUse struct {
	Name          string  `json:"name"`
	PIDs          []int   `json:"pids"`
	Seconds       float64 `json:"cpu_s"`
	PctCore       float64 `json:"pct_core"` // of one core, over the measured interval
	USPerMsg      float64 `json:"us_per_msg"`
	USPerDelivery float64 `json:"us_per_delivery"`
}

// component is a name and the ports of its processes.
type component struct {
	name  string
	ports []int
	pids  []int
}

// parseCPUSpec parses "name:port,name:port…"; a name may repeat (its
// processes are summed); "self" is the load tester.
func parseCPUSpec(spec string) ([]component, error) {
	var out []component
	idx := map[string]int{}
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if part == "self" {
			idx["chatload"] = len(out)
			out = append(out, component{name: "chatload", pids: []int{os.Getpid()}})
			continue
		}
		name, p, ok := strings.Cut(part, ":")
		port, err := strconv.Atoi(p)
		if !ok || name == "" || err != nil || port <= 0 || port > 65535 {
			return nil, fmt.Errorf("-cpu %q: want name:port[,name:port…]", part)
		}
		if i, seen := idx[name]; seen {
			out[i].ports = append(out[i].ports, port)
			continue
		}
		idx[name] = len(out)
		out = append(out, component{name: name, ports: []int{port}})
	}
	return out, nil
}

// listenInodes maps listening TCP ports to socket inodes.
func listenInodes() map[int][]string {
	out := map[int][]string{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) < 10 || fs[3] != "0A" { // LISTEN
				continue
			}
			_, hexPort, _ := strings.Cut(fs[1], ":")
			port, err := strconv.ParseInt(hexPort, 16, 32)
			if err == nil {
				out[int(port)] = append(out[int(port)], fs[9])
			}
		}
	}
	return out
}

// pidsByPort finds the processes listening on each port.
func pidsByPort(ports []int) map[int][]int {
	inodes := listenInodes()
	want := map[string]int{}
	for _, p := range ports {
		for _, ino := range inodes[p] {
			want["socket:["+ino+"]"] = p
		}
	}
	out := map[int][]int{}
	if len(want) == 0 {
		return out
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, dir := range procs {
		pid, _ := strconv.Atoi(filepath.Base(dir))
		fds, _ := os.ReadDir(dir + "/fd")
		for _, fd := range fds {
			link, err := os.Readlink(dir + "/fd/" + fd.Name())
			if err != nil {
				continue
			}
			if port, ok := want[link]; ok {
				out[port] = append(out[port], pid)
				break
			}
		}
	}
	return out
}

// procCPU returns utime+stime of pid in seconds.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(b))
}

// parseStatCPU reads utime and stime (fields 14 and 15) from a
// /proc/<pid>/stat line; the command name (field 2) may hold spaces and
// parentheses, so fields are counted from its closing parenthesis.
func parseStatCPU(stat string) (float64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("stat: no command name")
	}
	fs := strings.Fields(stat[i+1:])
	if len(fs) < 13 {
		return 0, errors.New("stat: too few fields")
	}
	ut, err1 := strconv.ParseUint(fs[11], 10, 64)
	st, err2 := strconv.ParseUint(fs[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("stat: utime %q stime %q", fs[11], fs[12])
	}
	return float64(ut+st) / clockTicks, nil
}

// cpuSampler measures the components' CPU between start and stop.
type cpuSampler struct {
	comps  []component
	before map[int]float64
	t0     time.Time
}

func newCPUSampler(o *options) *cpuSampler {
	return &cpuSampler{comps: o.cpu}
}

// start resolves the ports to processes and reads their CPU.
func (c *cpuSampler) start() {
	if len(c.comps) == 0 {
		return
	}
	var ports []int
	for _, comp := range c.comps {
		ports = append(ports, comp.ports...)
	}
	byPort := pidsByPort(ports)
	c.before = map[int]float64{}
	for i := range c.comps {
		for _, p := range c.comps[i].ports {
			c.comps[i].pids = append(c.comps[i].pids, byPort[p]...)
		}
		for _, pid := range c.comps[i].pids {
			if v, err := procCPU(pid); err == nil {
				c.before[pid] = v
			}
		}
	}
	c.t0 = time.Now()
}

// stop reads the CPU again and divides by the messages and deliveries.
// A component whose processes were not found is left out; one that
// restarted in between is left out too (its counter went back).
func (c *cpuSampler) stop(msgs int, deliveries int64) []CPUUse {
	if c.before == nil {
		return nil
	}
	wall := time.Since(c.t0).Seconds()
	var out []CPUUse
	for _, comp := range c.comps {
		var sum float64
		var pids []int
		for _, pid := range comp.pids {
			b, ok := c.before[pid]
			a, err := procCPU(pid)
			if !ok || err != nil || a < b {
				continue
			}
			sum += a - b
			pids = append(pids, pid)
		}
		if len(pids) == 0 {
			continue
		}
		u := CPUUse{Name: comp.name, PIDs: pids, Seconds: sum, PctCore: 100 * sum / wall}
		if msgs > 0 {
			u.USPerMsg = sum * 1e6 / float64(msgs)
		}
		if deliveries > 0 {
			u.USPerDelivery = sum * 1e6 / float64(deliveries)
		}
		out = append(out, u)
	}
	return out
}
