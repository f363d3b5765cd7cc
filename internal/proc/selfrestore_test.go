//go:build linux && amd64

package proc

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// tracerChild is the test binary re-run as a tracer (PROC_TEST_TRACER =
// "PID:TID:MODE[:FN]"): it stops process PID and lends thread TID to an
// injected mmap (MODE syscall) or a call of FN (MODE call). With
// HOTPATCH_TEST_INJECT_STALL set, it announces the instant on stderr and
// waits there for the test to kill it.
func tracerChild(spec string) int {
	f := strings.Split(spec, ":")
	pid, _ := strconv.Atoi(f[0])
	tid, _ := strconv.Atoi(f[1])
	if os.Getenv("PROC_TEST_NO_SELFRESTORE") != "" {
		selfRestoreOff = true
	}
	p, err := Attach(pid, Options{Timeout: 5 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, "attach:", err)
		return 1
	}
	defer p.Detach()
	if err := p.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stop:", err)
		return 1
	}
	p.do(func() error { p.injectTID = tid; return nil })
	switch f[2] {
	case "syscall":
		_, err = p.Mmap(0, 4096, unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, -1, 0)
	case "call":
		fn, _ := strconv.ParseUint(f[3], 0, 64)
		err = p.CallVoid(fn, nil, 1)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "inject:", err)
		return 1
	}
	if s := p.NotSelfRestoring(); s != "" {
		fmt.Fprintln(os.Stderr, "not self-restoring:", s)
	}
	return 0
}

// TestTracerKilledMidInjection kills the tracer (SIGKILL, so the kernel
// detaches the tracee and lets it run, kernel/ptrace.c exit_ptrace) at each
// instant of an injected system call and of an injected function call, on a
// thread running user code and on threads blocked in nanosleep, read and
// futex. The target's threads check their general and ymm registers, signal
// mask and errno around every step; each must go on running correctly.
// Without the self-restoring frame (PROC_TEST_NO_SELFRESTORE) the thread
// runs on with borrowed registers and the target dies at set, entry, exit
// and call.
func TestTracerKilledMidInjection(t *testing.T) {
	requirePtrace(t)
	needInjection(t)
	if b, _ := os.ReadFile("/proc/cpuinfo"); !strings.Contains(string(b), " avx") {
		t.Skip("no AVX")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	roles := []string{"user", "nanosleep", "read", "futex"}
	for _, stage := range []string{"set", "entry", "exit", "restored", "call"} {
		for role := range roles {
			t.Run(stage+"/"+roles[role], func(t *testing.T) {
				killTracerAt(t, exe, stage, role)
			})
		}
	}
}

// killTracerAt starts a selfcheck target, lends its thread of the given
// role to an injected call, kills the tracer at stage, and checks that every
// thread of the target goes on correctly.
func killTracerAt(t *testing.T, exe, stage string, role int) {
	tg := start(t, "selfcheck")
	f := strings.Fields(tg.readUntil(t, "tids"))
	tg.readUntil(t, "ready")
	pid := tg.pid()
	tid, _ := strconv.Atoi(f[1+role])
	counters, calls := tg.addr(t, "counters"), tg.addr(t, "calls")
	mode := "syscall"
	if stage == "call" {
		mode = "call:" + tg.vals["bump"]
	}
	// Let the threads block in their system calls.
	countersAdvanceBy(t, tg, counters, 2)
	before := readU64s(t, pid, counters, 4)
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(),
		fmt.Sprintf("PROC_TEST_TRACER=%d:%d:%s", pid, tid, mode),
		"HOTPATCH_TEST_INJECT_STALL="+stage+":60s")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := waitLine(stderr, StallAnnounce, 10*time.Second)
	cmd.Process.Kill()
	cmd.Wait()
	if err != nil {
		t.Fatalf("tracer: %v (%s)", err, line)
	}
	after := countersAdvanceBy(t, tg, counters, 2)
	if after == nil {
		return
	}
	if stage == "call" {
		if got := readU64s(t, pid, calls, 1)[0]; got != 1 {
			t.Errorf("bump ran %d times, want 1 (the callee runs to its end when the tracer dies)", got)
		}
	}
	_ = before
}

// countersAdvanceBy waits until every selfcheck thread has done n more
// checked steps (writing a line for the reader each time), and fails if the
// target dies meanwhile.
func countersAdvanceBy(t *testing.T, tg *target, counters uint64, n uint64) []uint64 {
	t.Helper()
	pid := tg.pid()
	before := readU64s(t, pid, counters, 4)
	deadline := time.Now().Add(5 * time.Second)
	for {
		io.WriteString(tg.stdin, "ping\n")
		if st, err := taskState(pid, pid); err != nil || st == 'Z' {
			t.Errorf("target died: %v", tg.cmd.Wait())
			return nil
		}
		now := readU64s(t, pid, counters, 4)
		ok := true
		for i := range now {
			if now[i] < before[i]+n {
				ok = false
			}
		}
		if ok {
			return now
		}
		if time.Now().After(deadline) {
			t.Errorf("counters %v -> %v in 5 s", before, now)
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitLine reads r until a line containing want, or d passes.
func waitLine(r io.Reader, want string, d time.Duration) (string, error) {
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var seen []string
	timeout := time.After(d)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				return strings.Join(seen, "\n"), fmt.Errorf("tracer exited before %q", want)
			}
			if strings.Contains(l, want) {
				go io.Copy(io.Discard, r)
				return l, nil
			}
			seen = append(seen, l)
		case <-timeout:
			return strings.Join(seen, "\n"), fmt.Errorf("no %q within %v", want, d)
		}
	}
}

// TestSelfRestoringCalls runs injected system calls and function calls on
// every selfcheck thread with the tracer alive: registers and extended state
// come back exactly (the threads check them), each frame is self-restoring,
// and a safe predicate that refuses every thread gives ErrNoSafeThread.
func TestSelfRestoringCalls(t *testing.T) {
	requirePtrace(t)
	needInjection(t)
	tg := start(t, "selfcheck")
	f := strings.Fields(tg.readUntil(t, "tids"))
	tg.readUntil(t, "ready")
	pid := tg.pid()
	counters, calls := tg.addr(t, "counters"), tg.addr(t, "calls")
	bump, _ := strconv.ParseUint(tg.vals["bump"], 0, 64)
	countersAdvanceBy(t, tg, counters, 2)
	p, err := Attach(pid, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Detach()
	for round := 0; round < 2; round++ {
		if err := p.Stop(); err != nil {
			t.Fatal(err)
		}
		before := regsOf(t, p)
		for _, s := range f[1:] {
			tid, _ := strconv.Atoi(s)
			p.do(func() error { p.injectTID = tid; return nil })
			if _, err := p.Mmap(0, 4096, unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, -1, 0); err != nil {
				t.Fatal(err)
			}
			if why := p.NotSelfRestoring(); why != "" {
				t.Errorf("system call on thread %d not self-restoring: %s", tid, why)
			}
			if err := p.CallVoid(bump, nil, 1); err != nil {
				t.Fatal(err)
			}
			if why := p.NotSelfRestoring(); why != "" {
				t.Errorf("call on thread %d not self-restoring: %s", tid, why)
			}
		}
		p.do(func() error { p.injectTID = 0; return nil })
		err := p.CallVoid(bump, func(th Thread) error { return fmt.Errorf("refused") }, 1)
		if !errors.Is(err, ErrNoSafeThread) || !strings.Contains(err.Error(), "refused") {
			t.Errorf("all threads refused: %v", err)
		}
		for tid, r := range regsOf(t, p) {
			if before[tid] != r {
				t.Errorf("thread %d: registers changed", tid)
			}
		}
		if err := p.Resume(); err != nil {
			t.Fatal(err)
		}
		countersAdvanceBy(t, tg, counters, 2)
	}
	if got := readU64s(t, pid, calls, 1)[0]; got != 8 {
		t.Errorf("bump ran %d times, want 8", got)
	}
}

// TestSeccompBlocksRestorer: a thread whose seccomp filter refuses
// rt_sigreturn cannot use a self-restoring frame (the ERRNO action would
// even let it run on after a failed rt_sigreturn): the injected call runs
// the old way, and NotSelfRestoring says why.
func TestSeccompBlocksRestorer(t *testing.T) {
	requirePtrace(t)
	needInjection(t)
	tg := start(t, "seccomped", "errno-sigreturn", "tsync")
	tg.readUntil(t, "ready")
	p, err := Attach(tg.pid(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Detach()
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Mmap(0, 4096, unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, -1, 0); err != nil {
		t.Fatal(err)
	}
	if why := p.NotSelfRestoring(); !strings.Contains(why, "rt_sigreturn not allowed") {
		t.Errorf("NotSelfRestoring = %q", why)
	}
	if err := p.Detach(); err != nil {
		t.Fatal(err)
	}
	countersAdvance(t, tg.pid(), tg.addr(t, "counters"), 4)
}

// BenchmarkLendFrame measures a stop with one self-restoring injected system
// call: stop, writing the frame (PTRACE_GETREGSET of the XSAVE area, the
// mask, one write of the frame) and the call, resume. With
// PROC_TEST_NO_SELFRESTORE set, the same without the frame.
func BenchmarkLendFrame(b *testing.B) {
	requirePtrace(b)
	needInjection(b)
	selfRestoreOff = os.Getenv("PROC_TEST_NO_SELFRESTORE") != ""
	defer func() { selfRestoreOff = false }()
	tg := start(b, "threads", "1")
	tg.readUntil(b, "ready")
	p, err := Attach(tg.pid(), Options{OneThread: true})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Detach()
	for b.Loop() {
		if err := p.Stop(); err != nil {
			b.Fatal(err)
		}
		if _, err := p.Syscall(unix.SYS_GETPPID); err != nil {
			b.Fatal(err)
		}
		if err := p.Resume(); err != nil {
			b.Fatal(err)
		}
	}
}

func needInjection(tb testing.TB) {
	if !injectionSupported {
		tb.Skip("system call injection is not implemented on this host")
	}
}

// TestGivenUpCallDoesNotRunLater: a thread lent to an injected system call
// that is not scheduled within the timeout (a loaded machine; here its CPU
// quota is used up by a sibling in a throttled cgroup) must not be let go
// with the call's registers: detached so, it performs the call later, after
// the caller has concluded it failed and moved on. For a munmap that is
// what killed patch-ready targets: the region was unmapped after the next
// apply had mapped a new one at the same address. The call here unmaps a
// scratch page; whatever the outcome, the page must not change after the
// call has returned.
func TestGivenUpCallDoesNotRunLater(t *testing.T) {
	requirePtrace(t)
	needInjection(t)
	const cpuCg = "/sys/fs/cgroup/cpu"
	if _, err := os.Stat(cpuCg + "/cpu.cfs_quota_us"); err != nil {
		t.Skipf("no cgroup v1 cpu controller to throttle a thread with: %v", err)
	}
	tg := start(t, "selfcheck")
	f := strings.Fields(tg.readUntil(t, "tids"))
	tg.readUntil(t, "ready")
	pid := tg.pid()
	spinner, _ := strconv.Atoi(f[1]) // role 0: a busy loop
	cg := fmt.Sprintf("%s/hotpatch-test-%d", cpuCg, pid)
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Skipf("cannot create a cpu cgroup: %v", err)
	}
	t.Cleanup(func() {
		for _, tid := range []int{pid, spinner} {
			os.WriteFile(cpuCg+"/tasks", []byte(strconv.Itoa(tid)), 0)
		}
		os.Remove(cg)
	})
	write := func(name, v string) {
		t.Helper()
		if err := os.WriteFile(cg+"/"+name, []byte(v), 0); err != nil {
			t.Skipf("cgroup %s: %v", name, err)
		}
	}
	mapped := func(addr uint64) bool {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
		if err != nil {
			t.Fatal(err)
		}
		return strings.Contains(string(data), fmt.Sprintf("%x-", addr))
	}
	write("cpu.cfs_period_us", "1000000")
	write("cpu.cfs_quota_us", "1000") // 1 ms of CPU a second, used up by the spinner
	write("tasks", strconv.Itoa(spinner))
	timeouts := 0
	for try := 0; try < 10 && timeouts < 3; try++ {
		p, err := Attach(pid, Options{Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Stop(); err != nil {
			t.Fatal(err)
		}
		page, err := p.Mmap(0, 4096, unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, -1, 0)
		if err != nil {
			t.Fatal(err)
		}
		p.Detach()
		// The main thread (taken first) is stopped, then joins the spinner's
		// cgroup: resumed into the munmap, it is not scheduled for up to a
		// second, far past the 100 ms timeout.
		p, err = Attach(pid, Options{Timeout: 100 * time.Millisecond, OneThread: true, preferTID: pid})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Stop(); err != nil {
			t.Fatal(err)
		}
		write("tasks", strconv.Itoa(pid))
		// Resume it just after the spinner was throttled: the quota is gone
		// for the rest of the period.
		throttled := func() string {
			data, _ := os.ReadFile(cg + "/cpu.stat")
			for _, l := range strings.Split(string(data), "\n") {
				if strings.HasPrefix(l, "nr_throttled ") {
					return l
				}
			}
			return ""
		}
		for n0, deadline := throttled(), time.Now().Add(3*time.Second); throttled() == n0 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		err = p.Munmap(page, 4096)
		p.Detach()
		now := mapped(page)
		t.Logf("try %d: %v; mapped %v", try, err, now)
		if err != nil && !errors.Is(err, ErrTimeout) {
			t.Fatalf("munmap: %v", err)
		}
		if err != nil {
			timeouts++
			time.Sleep(1500 * time.Millisecond) // the throttled thread runs within a period (1 s)
			if later := mapped(page); later != now {
				t.Fatalf("the munmap given up on (%v) ran after it returned: page %#x mapped %v when it returned, %v later", err, page, now, later)
			}
		}
		os.WriteFile(cpuCg+"/tasks", []byte(strconv.Itoa(pid)), 0)
		// Wait until no tracer is left on the main thread before attaching again.
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if checkTracer(pid, pid, 0) == nil {
				break
			}
		}
	}
	if timeouts == 0 {
		t.Skip("the throttled thread always ran the call in time")
	}
	for _, tid := range []int{pid, spinner} {
		os.WriteFile(cpuCg+"/tasks", []byte(strconv.Itoa(tid)), 0)
	}
	countersAdvanceBy(t, tg, tg.addr(t, "counters"), 2)
}
