//go:build linux && amd64

package proc

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hotpatch/hotpatch/internal/seccomp"
)

// TestSeccompBlockedCallsNotInjected: a call the target's filter would
// refuse is never injected (the target neither dies nor gets SIGSYS nor
// hangs); the error names the call and the action; allowed calls still run.
func TestSeccompBlockedCallsNotInjected(t *testing.T) {
	requirePtrace(t)
	tests := []struct {
		policy, scope string
		action        seccomp.Action
		errno         error
	}{
		{"kill-memfd", "tsync", seccomp.KillProcess, nil},
		{"errno-memfd", "tsync", seccomp.Errno, unix.EPERM},
		{"trap-memfd", "tsync", seccomp.Trap, nil},
		{"notif-memfd", "main", seccomp.UserNotif, nil},
	}
	for _, tc := range tests {
		t.Run(tc.policy, func(t *testing.T) {
			tg := start(t, "seccomped", tc.policy, tc.scope)
			tg.readUntil(t, "ready")
			pid := tg.pid()
			p, err := Attach(pid, Options{Timeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Detach()
			if err := p.Stop(); err != nil {
				t.Fatal(err)
			}
			// On the main thread: it has the filter in every scope.
			p.injectTID = pid
			_, err = p.MemfdCreate("hotpatch:test", unix.MFD_CLOEXEC)
			var se *SeccompError
			if !errors.Is(err, ErrSeccomp) || !errors.As(err, &se) {
				t.Fatalf("memfd_create: %v, want ErrSeccomp", err)
			}
			if se.Call != "memfd_create" || se.Result.Action != tc.action || se.TID != pid {
				t.Errorf("error %+v: want memfd_create, %v, thread %d", se, tc.action, pid)
			}
			if !strings.Contains(err.Error(), "memfd_create is blocked by the target's seccomp filter ("+tc.action.String()) {
				t.Errorf("message %q", err)
			}
			if tc.errno != nil && !errors.Is(err, tc.errno) {
				t.Errorf("%v does not wrap %v", err, tc.errno)
			}
			if err := p.SeccompCheck(unix.SYS_MEMFD_CREATE, 0, unix.MFD_CLOEXEC); tc.scope == "tsync" && !errors.Is(err, ErrSeccomp) {
				t.Errorf("SeccompCheck: %v", err)
			}
			// Still attached and stopped: allowed calls run.
			ret, err := p.syscallOn(pid, unix.SYS_GETPID)
			if err != nil || int(ret) != pid {
				t.Fatalf("getpid after the refusal: %d, %v", ret, err)
			}
			if err := p.Detach(); err != nil {
				t.Fatal(err)
			}
			countersAdvance(t, pid, tg.addr(t, "counters"), 4)
			if n := readU64s(t, pid, tg.addr(t, "sigsys"), 1)[0]; n != 0 {
				t.Errorf("%d SIGSYS delivered", n)
			}
		})
	}
}

// TestSeccompMDWE: under a MemoryDenyWriteExecute-style filter, a
// read-execute mmap runs and mprotect(PROT_EXEC) is refused.
func TestSeccompMDWE(t *testing.T) {
	requirePtrace(t)
	tg := start(t, "seccomped", "mdwe", "tsync")
	tg.readUntil(t, "ready")
	pid := tg.pid()
	p, err := Attach(pid, Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Detach()
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	addr, err := p.Mmap(0, 4096, unix.PROT_READ|unix.PROT_EXEC, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, -1, 0)
	if err != nil {
		t.Fatalf("mmap r-x: %v", err)
	}
	if _, err := p.Mmap(0, 4096, unix.PROT_READ|unix.PROT_WRITE|unix.PROT_EXEC, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, -1, 0); !errors.Is(err, ErrSeccomp) {
		t.Errorf("mmap rwx: %v, want ErrSeccomp", err)
	}
	if err := p.Mprotect(addr, 4096, unix.PROT_READ); err != nil {
		t.Errorf("mprotect r: %v", err)
	}
	if err := p.Mprotect(addr, 4096, unix.PROT_READ|unix.PROT_EXEC); !errors.Is(err, ErrSeccomp) || !strings.Contains(err.Error(), "mprotect is blocked") {
		t.Errorf("mprotect r-x: %v, want ErrSeccomp", err)
	}
	if err := p.Munmap(addr, 4096); err != nil {
		t.Fatal(err)
	}
	p.Detach()
	countersAdvance(t, pid, tg.addr(t, "counters"), 4)
}

// TestSeccompOneThreadPrefersUnfiltered: with a filter on the main thread
// only, a one-thread session seizes an unfiltered thread, where memfd_create
// is allowed.
func TestSeccompOneThreadPrefersUnfiltered(t *testing.T) {
	requirePtrace(t)
	tg := start(t, "seccomped", "kill-memfd", "main")
	tg.readUntil(t, "ready")
	pid := tg.pid()
	p, err := Attach(pid, Options{Timeout: 2 * time.Second, OneThread: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Detach()
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	fd, err := p.MemfdCreate("hotpatch:test", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatalf("memfd_create on an unfiltered thread: %v", err)
	}
	if err := p.Close(fd); err != nil {
		t.Fatal(err)
	}
	p.Detach()
	countersAdvance(t, pid, tg.addr(t, "counters"), 4)
}

// TestSeccompUnreadable: when hotpatch runs under seccomp itself, the
// kernel refuses PTRACE_SECCOMP_GET_FILTER; nothing is injected into a
// filtered target. The tracer runs in a child process of the test that puts
// itself under an allow-all filter.
func TestSeccompUnreadable(t *testing.T) {
	requirePtrace(t)
	if pid := os.Getenv("SECCOMP_UNREADABLE_PID"); pid != "" {
		unreadableChild(t, pid)
		return
	}
	tg := start(t, "seccomped", "kill-memfd", "tsync")
	tg.readUntil(t, "ready")
	cmd := exec.Command(os.Args[0], "-test.run=^TestSeccompUnreadable$", "-test.v")
	cmd.Env = append(os.Environ(), "SECCOMP_UNREADABLE_PID="+strconv.Itoa(tg.pid()))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "child ok") {
		t.Fatalf("child did not check:\n%s", out)
	}
	countersAdvance(t, tg.pid(), tg.addr(t, "counters"), 4)
}

func unreadableChild(t *testing.T, pidStr string) {
	allow := []uint64{uint64(seccomp.Allow)<<32 | 6} // {code BPF_RET|BPF_K, jt 0, jf 0, k ALLOW}
	prog := struct {
		len    uint16
		filter unsafe.Pointer
	}{1, unsafe.Pointer(&allow[0])}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, _, e := unix.Syscall(unix.SYS_SECCOMP, 1 /* SECCOMP_SET_MODE_FILTER */, 1 /* TSYNC */, uintptr(unsafe.Pointer(&prog))); e != 0 {
		t.Fatalf("seccomp: %v", e)
	}
	pid, _ := strconv.Atoi(pidStr)
	p, err := Attach(pid, Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Detach()
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	_, err = p.Syscall(unix.SYS_GETPID)
	if !errors.Is(err, ErrSeccompUnreadable) || !errors.Is(err, ErrPermission) || !strings.Contains(err.Error(), "runs under seccomp") {
		t.Fatalf("getpid in a filtered target from a filtered tracer: %v", err)
	}
	t.Logf("child ok: %v", err)
}

// TestSeccompFilterAddedWhileStopped: a thread of the target adds a filter
// to every thread (SECCOMP_FILTER_FLAG_TSYNC) while the one thread of a
// OneThread session is stopped and its seccomp state known: the next check
// sees the new filter (the state is not trusted from before).
func TestSeccompFilterAddedWhileStopped(t *testing.T) {
	requirePtrace(t)
	tg := start(t, "seccomped", "errno-memfd", "late")
	tg.readUntil(t, "ready")
	pid := tg.pid()
	p, err := Attach(pid, Options{Timeout: 2 * time.Second, OneThread: true, preferTID: pid})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Detach()
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := p.SeccompCheck(unix.SYS_MEMFD_CREATE, 0, unix.MFD_CLOEXEC); err != nil {
		t.Fatalf("before the filter: %v", err)
	}
	if _, err := io.WriteString(tg.stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	tg.readUntil(t, "installed")
	if err := p.SeccompCheck(unix.SYS_MEMFD_CREATE, 0, unix.MFD_CLOEXEC); !errors.Is(err, ErrSeccomp) {
		t.Fatalf("after another thread added a filter to the stopped one: %v, want ErrSeccomp", err)
	}
	if _, err := p.MemfdCreate("hotpatch:test", unix.MFD_CLOEXEC); !errors.Is(err, ErrSeccomp) {
		t.Fatalf("memfd_create: %v, want ErrSeccomp (not injected)", err)
	}
}

// TestSeccompStrictBetweenWindows: a thread seen without seccomp in one stop
// window enters strict mode while it runs; in the next window a check sees
// it (an injected call other than read/write/exit would make the kernel kill
// the process).
func TestSeccompStrictBetweenWindows(t *testing.T) {
	requirePtrace(t)
	tg := start(t, "strictlate")
	tg.readUntil(t, "ready")
	pid := tg.pid()
	p, err := Attach(pid, Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Detach()
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := p.SeccompCheck(unix.SYS_GETPID); err != nil {
		t.Fatalf("before strict mode: %v", err)
	}
	if err := p.Resume(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(tg.stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	tg.readUntil(t, "strict")
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	var se *SeccompError
	if err := p.SeccompCheck(unix.SYS_GETPID); !errors.As(err, &se) || !se.Strict {
		t.Fatalf("after the thread entered strict mode: %v, want a strict-mode SeccompError", err)
	}
}
