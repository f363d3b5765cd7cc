//go:build linux && amd64

package proc

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var (
	ptraceOnce sync.Once
	ptraceErr  error
)

// requirePtrace skips the test only when ptrace is really unavailable:
// PTRACE_SEIZE of our own child fails with EPERM.
func requirePtrace(tb testing.TB) {
	tb.Helper()
	ptraceOnce.Do(func() {
		cmd := exec.Command("sleep", "10")
		if err := cmd.Start(); err != nil {
			ptraceErr = err
			return
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		done := make(chan error)
		go func() {
			// The thread dies with the goroutine, which detaches the child.
			runtime.LockOSThread()
			done <- unix.PtraceSeize(cmd.Process.Pid)
		}()
		if err := <-done; errors.Is(err, unix.EPERM) {
			ptraceErr = err
		}
	})
	if ptraceErr != nil {
		tb.Skipf("ptrace unavailable: PTRACE_SEIZE of a child: %v", ptraceErr)
	}
}

var (
	buildMu  sync.Mutex
	buildDir string
	built    = map[string]string{}
)

// build compiles testdata/name.c once per test binary run.
func build(tb testing.TB, name string) string {
	tb.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if exe, ok := built[name]; ok {
		return exe
	}
	if buildDir == "" {
		d, err := os.MkdirTemp("", "proc-test-")
		if err != nil {
			tb.Fatal(err)
		}
		buildDir = d
	}
	exe := filepath.Join(buildDir, name)
	out, err := exec.Command("gcc", "-O1", "-g", "-pthread", "-Wall", "-o", exe, filepath.Join("testdata", name+".c")).CombinedOutput()
	if err != nil {
		tb.Fatalf("gcc %s: %v\n%s", name, err, out)
	}
	built[name] = exe
	return exe
}

func TestMain(m *testing.M) {
	if spec := os.Getenv("PROC_TEST_TRACER"); spec != "" {
		os.Exit(tracerChild(spec))
	}
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// target is a running test program.
type target struct {
	cmd   *exec.Cmd
	out   *bufio.Reader
	stdin io.WriteCloser
	vals  map[string]string // "key value" lines printed before "ready"
}

func start(tb testing.TB, name string, args ...string) *target {
	tb.Helper()
	cmd := exec.Command(build(tb, name), args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tg := &target{cmd: cmd, out: bufio.NewReader(stdout), stdin: stdin, vals: map[string]string{}}
	tb.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return tg
}

func (tg *target) pid() int { return tg.cmd.Process.Pid }

// readUntil reads "key value" lines until a line starting with stop.
func (tg *target) readUntil(tb testing.TB, stop string) string {
	tb.Helper()
	for {
		line, err := tg.out.ReadString('\n')
		if err != nil {
			tb.Fatalf("target output: %v", err)
		}
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, stop) {
			return line
		}
		if k, v, ok := strings.Cut(line, " "); ok {
			tg.vals[k] = v
		}
	}
}

func (tg *target) addr(tb testing.TB, key string) uint64 {
	tb.Helper()
	v, err := strconv.ParseUint(strings.TrimPrefix(tg.vals[key], "0x"), 16, 64)
	if err != nil {
		tb.Fatalf("address %s: %q: %v", key, tg.vals[key], err)
	}
	return v
}

func readU64s(tb testing.TB, pid int, addr uint64, n int) []uint64 {
	tb.Helper()
	b := make([]byte, 8*n)
	if err := ReadMem(pid, addr, b); err != nil {
		tb.Fatalf("ReadMem: %v", err)
	}
	out := make([]uint64, n)
	for i := range out {
		for j := 7; j >= 0; j-- {
			out[i] = out[i]<<8 | uint64(b[8*i+j])
		}
	}
	return out
}

// taskStates returns the state letter of every task of pid.
func taskStates(tb testing.TB, pid int) map[int]byte {
	tb.Helper()
	tids, err := listTasks(pid)
	if err != nil {
		tb.Fatalf("list tasks: %v", err)
	}
	m := map[int]byte{}
	for _, tid := range tids {
		if st, err := taskState(pid, tid); err == nil {
			m[tid] = st
		}
	}
	return m
}

func checkRunning(tb testing.TB, pid int) {
	tb.Helper()
	for tid, st := range taskStates(tb, pid) {
		if st == 't' || st == 'T' || st == 'Z' || st == 'X' {
			tb.Errorf("task %d of %d in state %c after detach", tid, pid, st)
		}
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	st, err := parseStatus(data)
	if err != nil {
		tb.Fatal(err)
	}
	if st.TracerPid != 0 {
		tb.Errorf("process %d still traced by %d", pid, st.TracerPid)
	}
}

func checkAllStopped(tb testing.TB, p *Process) {
	tb.Helper()
	known := map[int]bool{}
	for _, th := range p.Threads() {
		known[th.TID] = true
	}
	for tid, st := range taskStates(tb, p.Pid()) {
		if st == 'Z' || st == 'X' {
			continue
		}
		if st != 't' {
			tb.Errorf("task %d in state %c after Stop, want t", tid, st)
		}
		if !known[tid] {
			tb.Errorf("task %d not in Threads() after Stop", tid)
		}
	}
}

func TestStopResumeDetachMultithreaded(t *testing.T) {
	requirePtrace(t)
	const n = 8
	for _, opt := range []Options{{}, {Realtime: true, Timeout: 3 * time.Second}} {
		t.Run(fmt.Sprintf("realtime=%v", opt.Realtime), func(t *testing.T) {
			tg := start(t, "threads", strconv.Itoa(n))
			tg.readUntil(t, "ready")
			counters := tg.addr(t, "counters")

			p, err := Attach(tg.pid(), opt)
			if err != nil {
				t.Fatalf("Attach: %v", err)
			}
			defer p.Detach()
			for round := 0; round < 5; round++ {
				if err := p.Stop(); err != nil {
					t.Fatalf("Stop: %v", err)
				}
				ths := p.Threads()
				if len(ths) != n+1 {
					t.Fatalf("round %d: %d threads, want %d", round, len(ths), n+1)
				}
				checkAllStopped(t, p)
				if opt.Realtime {
					checkPolicy(t, p, unix.SCHED_FIFO)
				}
				before := readU64s(t, tg.pid(), counters, n)
				time.Sleep(20 * time.Millisecond)
				after := readU64s(t, tg.pid(), counters, n)
				for i := range before {
					if before[i] != after[i] {
						t.Errorf("counter %d moved while stopped: %d -> %d", i, before[i], after[i])
					}
				}
				for _, th := range ths {
					if th.Regs.PC() == 0 || th.Regs.SP() == 0 {
						t.Errorf("thread %d: pc %#x sp %#x", th.TID, th.Regs.PC(), th.Regs.SP())
					}
				}
				if err := p.Resume(); err != nil {
					t.Fatalf("Resume: %v", err)
				}
				checkPolicy(t, p, unix.SCHED_NORMAL)
				if p.Pause() <= 0 {
					t.Errorf("Pause() = %v", p.Pause())
				}
				if p.Threads() != nil {
					t.Errorf("Threads() not nil while running")
				}
				time.Sleep(10 * time.Millisecond)
			}
			if err := p.Detach(); err != nil {
				t.Fatalf("Detach: %v", err)
			}
			if err := p.Detach(); err != nil {
				t.Fatalf("second Detach: %v", err)
			}
			if err := p.Stop(); !errors.Is(err, ErrDetached) {
				t.Errorf("Stop after Detach: %v, want ErrDetached", err)
			}
			countersAdvance(t, tg.pid(), counters, n)
			checkRunning(t, tg.pid())
		})
	}
}

func TestDetachWhileRunningAndStopped(t *testing.T) {
	requirePtrace(t)
	for _, stop := range []bool{false, true} {
		t.Run(fmt.Sprintf("stopped=%v", stop), func(t *testing.T) {
			tg := start(t, "threads", "3")
			tg.readUntil(t, "ready")
			p, err := Attach(tg.pid(), Options{})
			if err != nil {
				t.Fatal(err)
			}
			if stop {
				if err := p.Stop(); err != nil {
					t.Fatal(err)
				}
			}
			if err := p.Detach(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond)
			checkRunning(t, tg.pid())
		})
	}
}

func TestThreadsCreatedContinuously(t *testing.T) {
	requirePtrace(t)
	tg := start(t, "spawner")
	tg.readUntil(t, "ready")
	spawned := tg.addr(t, "spawned")
	p, err := Attach(tg.pid(), Options{})
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	defer p.Detach()
	// While attached and running, new threads must keep running (they are
	// auto-attached and must be let go).
	// A deadline, not a fixed sleep: on a loaded 2-core CI machine every
	// new thread waits for the tracer to be scheduled twice (the clone event
	// and the thread's first stop), which can take tens of milliseconds.
	countersAdvanceWhile(t, tg.pid(), spawned, 1, "while attached")
	for round := 0; round < 20; round++ {
		if err := p.Stop(); err != nil {
			t.Fatalf("round %d: Stop: %v", round, err)
		}
		checkAllStopped(t, p)
		if err := p.Resume(); err != nil {
			t.Fatalf("round %d: Resume: %v", round, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := p.Detach(); err != nil {
		t.Fatalf("Detach: %v", err)
	}
	countersAdvanceWhile(t, tg.pid(), spawned, 1, "after detach")
	checkRunning(t, tg.pid())
}

// regsOf reads the current registers of every stopped thread.
func regsOf(t *testing.T, p *Process) map[int]Regs {
	t.Helper()
	m := map[int]Regs{}
	err := p.do(func() error {
		for tid := range p.threads {
			r, err := getRegs(tid)
			if err != nil {
				return err
			}
			m[tid] = r
		}
		return nil
	})
	if err != nil {
		t.Fatalf("getRegs: %v", err)
	}
	return m
}

func mapsOf(t *testing.T, pid int) string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func findMapping(t *testing.T, pid int, addr uint64) (mapping, bool) {
	t.Helper()
	ms, err := parseMaps([]byte(mapsOf(t, pid)))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if addr >= m.Start && addr < m.End {
			return m, true
		}
	}
	return mapping{}, false
}

func TestInjectMemorySyscalls(t *testing.T) {
	requirePtrace(t)
	tg := start(t, "threads", "4")
	tg.readUntil(t, "ready")
	pid := tg.pid()
	p, err := Attach(pid, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Detach()
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	before := regsOf(t, p)
	// Every thread's red zone (the 128 bytes below rsp that leaf code may
	// use) stays as it was; below it lie the self-restoring frame and the
	// scratch name (dead stack by the psABI).
	const scratchLen = redZone
	stacks := map[int][]byte{}
	for _, th := range p.Threads() {
		b := make([]byte, scratchLen)
		if err := p.ReadMem(th.Regs.SP()-scratchLen, b); err != nil {
			t.Fatal(err)
		}
		stacks[th.TID] = b
	}
	const page = 4096

	addr, err := p.Mmap(0, 4*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, -1, 0)
	if err != nil {
		t.Fatalf("Mmap: %v", err)
	}
	if m, ok := findMapping(t, pid, addr); !ok || m.Perms != "rw-p" {
		t.Fatalf("mapping at %#x: %+v %v", addr, m, ok)
	}
	if err := p.WriteMem(addr, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := p.Mprotect(addr, page, unix.PROT_READ|unix.PROT_EXEC); err != nil {
		t.Fatalf("Mprotect: %v", err)
	}
	if m, ok := findMapping(t, pid, addr); !ok || m.Perms != "r-xp" {
		t.Fatalf("after mprotect, mapping at %#x: %+v", addr, m)
	}
	if err := p.Munmap(addr, 4*page); err != nil {
		t.Fatalf("Munmap: %v", err)
	}
	if _, ok := findMapping(t, pid, addr); ok {
		t.Fatalf("mapping at %#x still there after munmap", addr)
	}
	// An errno result.
	if err := p.Munmap(1, page); !errors.Is(err, unix.EINVAL) {
		t.Errorf("munmap(1): %v, want EINVAL", err)
	}

	fd, err := p.MemfdCreate("hotpatch-test", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatalf("MemfdCreate: %v", err)
	}
	if err := p.Ftruncate(fd, 2*page); err != nil {
		t.Fatalf("Ftruncate: %v", err)
	}
	faddr, err := p.Mmap(0, 2*page, unix.PROT_READ|unix.PROT_EXEC, unix.MAP_PRIVATE, fd, 0)
	if err != nil {
		t.Fatalf("Mmap memfd: %v", err)
	}
	if err := p.Close(fd); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := p.Close(fd); !errors.Is(err, unix.EBADF) {
		t.Errorf("second close: %v, want EBADF", err)
	}
	m, ok := findMapping(t, pid, faddr)
	if !ok || m.Path != "/memfd:hotpatch-test (deleted)" || m.Perms != "r-xp" {
		t.Fatalf("memfd mapping at %#x: %+v\n%s", faddr, m, mapsOf(t, pid))
	}
	// Writing through /proc/PID/mem into the read-only private mapping.
	if err := p.WriteMem(faddr, []byte{0xc3}); err != nil {
		t.Fatal(err)
	}

	after := regsOf(t, p)
	if len(after) != len(before) {
		t.Fatalf("threads: %d before, %d after", len(before), len(after))
	}
	for tid, r := range before {
		if after[tid] != r {
			t.Errorf("thread %d registers changed:\nbefore %+v\nafter  %+v", tid, r, after[tid])
		}
	}
	for tid, want := range stacks {
		b := make([]byte, scratchLen)
		if err := p.ReadMem(before[tid].SP()-scratchLen, b); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, want) {
			t.Errorf("thread %d: red zone changed", tid)
		}
	}
	if err := p.Munmap(faddr, 2*page); err != nil {
		t.Fatal(err)
	}
	if err := p.Detach(); err != nil {
		t.Fatal(err)
	}
	countersAdvance(t, pid, tg.addr(t, "counters"), 4)
	checkRunning(t, pid)
}

func TestRestartableSyscalls(t *testing.T) {
	requirePtrace(t)
	tg := start(t, "restart")
	line := tg.readUntil(t, "tids")
	f := strings.Fields(line)
	if len(f) != 5 {
		t.Fatalf("bad line %q", line)
	}
	tids := make([]int, 4)
	for i := range tids {
		tids[i], _ = strconv.Atoi(f[i+1])
	}
	pid := tg.pid()
	// Let every thread block in its system call.
	time.Sleep(200 * time.Millisecond)

	p, err := Attach(pid, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Detach()
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	before := regsOf(t, p)
	for _, th := range p.Threads() {
		if !th.Regs.inSyscall() {
			t.Errorf("thread %d not in a system call (orig_rax %d)", th.TID, int64(th.Regs.Orig_rax))
		}
	}
	// The default choice works when every thread is blocked.
	if got, err := p.Syscall(unix.SYS_GETPID); err != nil || got != uint64(pid) {
		t.Fatalf("getpid: %d, %v", got, err)
	}
	for _, tid := range tids {
		got, err := p.syscallOn(tid, unix.SYS_GETTID)
		if err != nil || got != uint64(tid) {
			t.Fatalf("gettid on %d: %d, %v", tid, got, err)
		}
		a, err := p.syscallOn(tid, unix.SYS_MMAP, 0, 4096, unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
		if err != nil {
			t.Fatalf("mmap on %d: %v", tid, err)
		}
		if _, err := p.syscallOn(tid, unix.SYS_MUNMAP, a, 4096); err != nil {
			t.Fatalf("munmap on %d: %v", tid, err)
		}
	}
	after := regsOf(t, p)
	for tid, r := range before {
		if after[tid] != r {
			t.Errorf("thread %d registers changed", tid)
		}
	}
	if err := p.Resume(); err != nil {
		t.Fatal(err)
	}
	// A second window with injections, then detach from the stopped state.
	time.Sleep(20 * time.Millisecond)
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, tid := range tids {
		if _, err := p.syscallOn(tid, unix.SYS_GETPPID); err != nil {
			t.Fatalf("getppid on %d: %v", tid, err)
		}
	}
	if err := p.Detach(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(tg.stdin, "hello\n"); err != nil {
		t.Fatal(err)
	}
	results := map[string]string{}
	for {
		l, err := tg.out.ReadString('\n')
		if err != nil {
			t.Fatalf("output: %v (so far %v)", err, results)
		}
		l = strings.TrimSpace(l)
		if l == "done" {
			break
		}
		k, v, _ := strings.Cut(l, " ")
		results[k] = v
	}
	kv := func(key string) map[string]string {
		m := map[string]string{}
		for _, f := range strings.Fields(results[key]) {
			k, v, _ := strings.Cut(f, "=")
			m[k] = v
		}
		return m
	}
	s := kv("sleep")
	ns, _ := strconv.ParseInt(s["ns"], 10, 64)
	if s["ret"] != "0" || s["errno"] != "0" {
		t.Errorf("nanosleep: %s", results["sleep"])
	}
	if ns < 2e9 || ns > 3e9 {
		t.Errorf("nanosleep(2s) lasted %v", time.Duration(ns))
	}
	r := kv("read")
	if r["ret"] != "6" || r["errno"] != "0" || r["data"] != "hello" {
		t.Errorf("read: %s", results["read"])
	}
	if fx := kv("futex"); fx["bad"] != "0" {
		t.Errorf("futex: %s", results["futex"])
	}
	if err := tg.cmd.Wait(); err != nil {
		t.Errorf("target: %v", err)
	}
}

func TestWriteReadOnlyText(t *testing.T) {
	requirePtrace(t)
	tg := start(t, "threads", "2")
	tg.readUntil(t, "ready")
	pid := tg.pid()
	fn := tg.addr(t, "never")
	if m, ok := findMapping(t, pid, fn); !ok || m.Perms != "r-xp" {
		t.Fatalf("never_called at %#x in %+v", fn, m)
	}
	p, err := Attach(pid, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Detach()
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	orig := make([]byte, 8)
	if err := p.ReadMem(fn, orig); err != nil {
		t.Fatal(err)
	}
	patch := []byte{0xb8, 0x2a, 0, 0, 0, 0xc3, 0x90, 0x90} // mov $42,%eax; ret
	if err := p.WriteMem(fn, patch); err != nil {
		t.Fatalf("WriteMem to text: %v", err)
	}
	got := make([]byte, len(patch))
	if err := p.ReadMem(fn, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, patch) {
		t.Fatalf("read back % x, want % x", got, patch)
	}
	if err := ReadMem(pid, fn, got); err != nil || !bytes.Equal(got, patch) {
		t.Fatalf("ReadMem(pid): % x, %v", got, err)
	}
	if m, _ := findMapping(t, pid, fn); m.Perms != "r-xp" {
		t.Errorf("text protection changed to %s", m.Perms)
	}
	if err := p.WriteMem(fn, orig); err != nil {
		t.Fatal(err)
	}
	if err := p.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := p.WriteMem(0, []byte{1}); err == nil {
		t.Errorf("WriteMem at 0 succeeded")
	}
	if err := p.ReadMem(0, got); err == nil {
		t.Errorf("ReadMem at 0 succeeded")
	}
}

func TestAttachErrors(t *testing.T) {
	requirePtrace(t)
	// A pid that has exited and been reaped.
	cmd := exec.Command(build(t, "exiter"), "0")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := cmd.Process.Pid

	// A zombie: exited, not reaped.
	zcmd := exec.Command(build(t, "exiter"), "0")
	if err := zcmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer zcmd.Wait()
	for i := 0; ; i++ {
		if !anyLiveTask(zcmd.Process.Pid) {
			break
		}
		if i > 500 {
			t.Fatal("child never became a zombie")
		}
		time.Sleep(5 * time.Millisecond)
	}

	tests := []struct {
		name string
		pid  int
		want error
	}{
		{"reaped", dead, ErrNoProcess},
		{"beyond pid_max", 1 << 30, ErrNoProcess},
		{"negative", -1, ErrNoProcess},
		{"zombie", zcmd.Process.Pid, ErrExited},
		{"self", os.Getpid(), ErrPermission},
		{"kernel thread", 2, ErrKernelThread},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Attach(tc.pid, Options{})
			if err == nil {
				p.Detach()
				t.Fatalf("Attach(%d) succeeded", tc.pid)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Attach(%d): %v, want %v", tc.pid, err, tc.want)
			}
		})
	}
	if err := ReadMem(dead, 0x1000, make([]byte, 8)); !errors.Is(err, ErrNoProcess) {
		t.Errorf("ReadMem(dead): %v", err)
	}

	t.Run("already traced", func(t *testing.T) {
		tg := start(t, "threads", "2")
		tg.readUntil(t, "ready")
		p, err := Attach(tg.pid(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Detach()
		p2, err := Attach(tg.pid(), Options{})
		if err == nil {
			p2.Detach()
			t.Fatal("second Attach succeeded")
		}
		if !errors.Is(err, ErrAlreadyTraced) || !strings.Contains(err.Error(), "traced by process") {
			t.Fatalf("second Attach: %v", err)
		}
		// The first attachment is unaffected.
		if err := p.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := p.Detach(); err != nil {
			t.Fatal(err)
		}
		checkRunning(t, tg.pid())
	})
}

func TestProcessExits(t *testing.T) {
	requirePtrace(t)
	t.Run("killed before Stop", func(t *testing.T) {
		tg := start(t, "threads", "4")
		tg.readUntil(t, "ready")
		p, err := Attach(tg.pid(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Detach()
		tg.cmd.Process.Kill()
		time.Sleep(20 * time.Millisecond)
		t0 := time.Now()
		err = p.Stop()
		if !errors.Is(err, ErrExited) {
			t.Fatalf("Stop: %v, want ErrExited", err)
		}
		if d := time.Since(t0); d > time.Second {
			t.Errorf("Stop took %v", d)
		}
		if err := p.Detach(); err != nil {
			t.Errorf("Detach: %v", err)
		}
	})
	t.Run("exits during stop cycles", func(t *testing.T) {
		tg := start(t, "exiter", "300")
		tg.readUntil(t, "ready")
		p, err := Attach(tg.pid(), Options{Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Detach()
		deadline := time.Now().Add(5 * time.Second)
		for {
			if err := p.Stop(); err != nil {
				if !errors.Is(err, ErrExited) {
					t.Fatalf("Stop: %v, want ErrExited", err)
				}
				break
			}
			if err := p.Resume(); err != nil {
				if !errors.Is(err, ErrExited) && !errors.Is(err, ErrDetached) {
					t.Fatalf("Resume: %v", err)
				}
			}
			if time.Now().After(deadline) {
				t.Fatal("process never reported as exited")
			}
			time.Sleep(time.Millisecond)
		}
		if err := tg.cmd.Wait(); err != nil {
			t.Errorf("target exit status: %v", err)
		}
	})
}

func BenchmarkStopResume(b *testing.B) {
	requirePtrace(b)
	for _, bc := range []struct {
		n  int
		rt bool
	}{{1, false}, {64, false}, {1, true}, {64, true}} {
		b.Run(fmt.Sprintf("threads=%d/realtime=%v", bc.n, bc.rt), func(b *testing.B) {
			tg := start(b, "threads", strconv.Itoa(bc.n))
			tg.readUntil(b, "ready")
			p, err := Attach(tg.pid(), Options{Realtime: bc.rt})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Detach()
			var pause time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := p.Stop(); err != nil {
					b.Fatal(err)
				}
				if err := p.Resume(); err != nil {
					b.Fatal(err)
				}
				pause += p.Pause()
			}
			b.ReportMetric(float64(pause.Nanoseconds())/float64(b.N), "pause-ns/op")
		})
	}
}

func dumpTasks(t testing.TB, pid int) {
	tids, _ := listTasks(pid)
	for _, tid := range tids {
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/stat", pid, tid))
		sc, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/syscall", pid, tid))
		wc, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/wchan", pid, tid))
		t.Logf("task %d: %.60s | syscall %s | wchan %s", tid, st, bytes.TrimSpace(sc), wc)
	}
}

// countersAdvance checks that every counter of the threads program moves
// (the machine may be busy: allow up to 3 s).
func countersAdvance(t testing.TB, pid int, addr uint64, n int) {
	t.Helper()
	countersAdvanceWhile(t, pid, addr, n, "after detach")
}

// countersAdvanceWhile waits until each of the n counters at addr has moved;
// the deadline is generous because the test machine may be loaded.
func countersAdvanceWhile(t testing.TB, pid int, addr uint64, n int, when string) {
	t.Helper()
	before := readU64s(t, pid, addr, n)
	start := time.Now()
	deadline := start.Add(10 * time.Second)
	for {
		time.Sleep(10 * time.Millisecond)
		after := readU64s(t, pid, addr, n)
		stuck := -1
		for i := range before {
			if after[i] <= before[i] {
				stuck = i
			}
		}
		if stuck < 0 {
			t.Logf("counters moved %s after %v", when, time.Since(start))
			return
		}
		if time.Now().After(deadline) {
			dumpTasks(t, pid)
			t.Fatalf("counter %d stuck %s: %d -> %d", stuck, when, before[stuck], after[stuck])
		}
	}
}

func waitU64(t *testing.T, pid int, addr uint64, want uint64) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		got := readU64s(t, pid, addr, 1)[0]
		if got == want {
			return
		}
		if got > want || time.Now().After(deadline) {
			t.Fatalf("value at %#x = %d, want %d", addr, got, want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Signals that arrive while the threads are stopped or during an injected
// system call are delivered exactly once after Resume or Detach.
func TestSignalsRedelivered(t *testing.T) {
	requirePtrace(t)
	for _, tc := range []struct {
		name   string
		inject bool
		detach bool
	}{
		{"resume", false, false},
		{"detach", false, true},
		{"inject then resume", true, false},
		{"inject then detach", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := start(t, "threads", "2")
			tg.readUntil(t, "ready")
			pid := tg.pid()
			usr1 := tg.addr(t, "usr1")
			p, err := Attach(pid, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Detach()
			if err := p.Stop(); err != nil {
				t.Fatal(err)
			}
			if tc.inject {
				// The signal is pending on the main thread; it shows up as
				// a signal-delivery-stop before our system call runs.
				if err := unix.Tgkill(pid, pid, unix.SIGUSR1); err != nil {
					t.Fatal(err)
				}
				if got, err := p.syscallOn(pid, unix.SYS_GETPID); err != nil || got != uint64(pid) {
					t.Fatalf("getpid: %d %v", got, err)
				}
			} else if err := unix.Kill(pid, unix.SIGUSR1); err != nil {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond)
			if got := readU64s(t, pid, usr1, 1)[0]; got != 0 {
				t.Fatalf("handler ran %d times while stopped", got)
			}
			if tc.detach {
				err = p.Detach()
			} else {
				err = p.Resume()
			}
			if err != nil {
				t.Fatal(err)
			}
			waitU64(t, pid, usr1, 1)
			if !tc.detach {
				// More signals while attached and running, and around stops.
				for i := uint64(2); i <= 10; i++ {
					if err := unix.Kill(pid, unix.SIGUSR1); err != nil {
						t.Fatal(err)
					}
					if err := p.Stop(); err != nil {
						t.Fatal(err)
					}
					if err := p.Resume(); err != nil {
						t.Fatal(err)
					}
					waitU64(t, pid, usr1, i)
				}
				if err := p.Detach(); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(20 * time.Millisecond)
			if got := readU64s(t, pid, usr1, 1)[0]; got != map[bool]uint64{true: 1, false: 10}[tc.detach] {
				t.Errorf("handler ran %d times", got)
			}
			checkRunning(t, pid)
		})
	}
}

// checkPolicy checks the scheduling policy of the ptrace thread (as root,
// SCHED_FIFO is always granted).
func checkPolicy(t *testing.T, p *Process, want uint32) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	attr, err := unix.SchedGetAttr(p.tracerTID, 0)
	if err != nil {
		t.Fatalf("sched_getattr: %v", err)
	}
	if attr.Policy != want {
		t.Errorf("ptrace thread policy %d, want %d", attr.Policy, want)
	}
	if want == unix.SCHED_FIFO && attr.Flags&unix.SCHED_FLAG_RESET_ON_FORK == 0 {
		t.Errorf("SCHED_RESET_ON_FORK not set")
	}
}

// A clone(2) without CLONE_THREAD creates a process the kernel attaches to us
// (PTRACE_O_TRACECLONE); it must be let go, not treated as a thread.
func TestCloneOfProcessIsReleased(t *testing.T) {
	requirePtrace(t)
	tg := start(t, "cloner")
	tg.readUntil(t, "ready")
	pid := tg.pid()
	done := tg.addr(t, "done")
	p, err := Attach(pid, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Detach()
	for i := 0; i < 10; i++ {
		c0 := readU64s(t, pid, done, 1)[0]
		deadline := time.Now().Add(3 * time.Second)
		for readU64s(t, pid, done, 1)[0] < c0+2 {
			if time.Now().After(deadline) {
				t.Fatalf("children stopped running while attached")
			}
			time.Sleep(time.Millisecond)
		}
		if err := p.Stop(); err != nil {
			t.Fatal(err)
		}
		if n := len(p.Threads()); n != 1 {
			t.Errorf("%d threads, want 1", n)
		}
		if err := p.Resume(); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Detach(); err != nil {
		t.Fatal(err)
	}
	countersAdvanceWhile(t, pid, done, 1, "after detach")
	if err := tg.cmd.Process.Signal(unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
}

func TestZombieLeader(t *testing.T) {
	requirePtrace(t)
	tg := start(t, "leaderexit")
	tg.readUntil(t, "ready")
	pid := tg.pid()
	for i := 0; ; i++ {
		if st, err := taskState(pid, pid); err == nil && st == 'Z' {
			break
		}
		if i > 500 {
			t.Fatal("leader never became a zombie")
		}
		time.Sleep(2 * time.Millisecond)
	}
	p, err := Attach(pid, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Detach()
	for i := 0; i < 3; i++ {
		if err := p.Stop(); err != nil {
			t.Fatal(err)
		}
		if n := len(p.Threads()); n != 2 {
			t.Errorf("%d threads, want 2", n)
		}
		if _, err := p.Syscall(unix.SYS_GETPID); err != nil {
			t.Fatal(err)
		}
		if err := p.Resume(); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Detach(); err != nil {
		t.Fatal(err)
	}
	countersAdvance(t, pid, tg.addr(t, "counters"), 2)
}

// attachThreads starts testdata/threads with n counting threads, waits for
// it to be ready and attaches with opts; the test's end detaches.
func attachThreads(tb testing.TB, n int, opts Options) (*target, *Process) {
	tb.Helper()
	tg := start(tb, "threads", strconv.Itoa(n))
	tg.readUntil(tb, "ready")
	p, err := Attach(tg.pid(), opts)
	if err != nil {
		tb.Fatalf("Attach: %v", err)
	}
	tb.Cleanup(func() { p.Detach() })
	return tg, p
}

// BenchmarkInjectedSyscall measures one system call run inside a stopped
// target (getppid): set the registers, resume to the syscall-exit stop, read
// the result, restore the registers.
func BenchmarkInjectedSyscall(b *testing.B) {
	requirePtrace(b)
	_, p := attachThreads(b, 1, Options{})
	if err := p.Stop(); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := p.Syscall(unix.SYS_GETPPID); err != nil {
			b.Fatal(err)
		}
	}
}

// TestWindow: inside Window every request runs on the ptrace goroutine
// (nested calls, memory reads and writes, an injected system call, Resume
// and Detach), and a panic in it reaches the caller while the process stays
// attached and is detached cleanly afterwards, its threads running again.
func TestWindow(t *testing.T) {
	requirePtrace(t)
	const n = 4
	tg, p := attachThreads(t, n, Options{})
	counters := tg.addr(t, "counters")
	err := p.Window(func() error {
		if err := p.Stop(); err != nil {
			return err
		}
		if len(p.Threads()) != n+1 {
			return fmt.Errorf("%d threads, want %d", len(p.Threads()), n+1)
		}
		checkAllStopped(t, p)
		b := make([]byte, 8)
		if err := p.ReadMem(counters, b); err != nil {
			return err
		}
		if err := p.WriteMem(counters, b); err != nil {
			return err
		}
		if pid, err := p.Syscall(unix.SYS_GETPID); err != nil || int(pid) != tg.pid() {
			return fmt.Errorf("getpid in the target: %d, %v", pid, err)
		}
		return p.Resume()
	})
	if err != nil {
		t.Fatalf("Window: %v", err)
	}
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v, want the panic of the window", r)
			}
		}()
		p.Window(func() error {
			if err := p.Stop(); err != nil {
				t.Errorf("Stop: %v", err)
			}
			panic("boom")
		})
	}()
	// Still attached and stopped after the panic: a plain call works, and
	// Detach lets the threads run again.
	if len(p.Threads()) != n+1 {
		t.Fatalf("after the panic: %d threads stopped, want %d", len(p.Threads()), n+1)
	}
	if err := p.Window(func() error { return p.Detach() }); err != nil {
		t.Fatalf("Detach in a window: %v", err)
	}
	if err := p.Detach(); err != nil {
		t.Fatalf("Detach again: %v", err)
	}
	countersAdvance(t, tg.pid(), counters, n)
}

// TestReadMemv: the segments read in one call hold what ReadMem reads one
// by one, and an unreadable segment fails the call with an error.
func TestReadMemv(t *testing.T) {
	requirePtrace(t)
	const n = 4
	tg, p := attachThreads(t, n, Options{})
	counters := tg.addr(t, "counters")
	if err := p.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	segs := []Segment{{counters, make([]byte, 8)}, {counters + 8, make([]byte, 16)}, {counters, nil}, {counters + 3, make([]byte, 5)}}
	if err := p.ReadMemv(segs); err != nil {
		t.Fatalf("ReadMemv: %v", err)
	}
	for _, sg := range segs {
		want := make([]byte, len(sg.Buf))
		if err := p.ReadMem(sg.Addr, want); err != nil {
			t.Fatal(err)
		}
		if string(want) != string(sg.Buf) {
			t.Errorf("segment at %#x: % x, ReadMem reads % x", sg.Addr, sg.Buf, want)
		}
	}
	bad := []Segment{{counters, make([]byte, 8)}, {0x1000, make([]byte, 8)}}
	if err := p.ReadMemv(bad); err == nil {
		t.Errorf("ReadMemv of an unmapped page succeeded")
	}
}

// BenchmarkInjectedSyscallOneThread: injected system calls inside one
// Window of a OneThread Process (the one-thread session that maps a
// region): no hand-over per call (compare BenchmarkInjectedSyscall).
func BenchmarkInjectedSyscallOneThread(b *testing.B) {
	requirePtrace(b)
	_, p := attachThreads(b, 1, Options{OneThread: true})
	err := p.Window(func() error {
		if err := p.Stop(); err != nil {
			return err
		}
		for b.Loop() {
			if _, err := p.Syscall(unix.SYS_GETPPID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}
