//go:build linux

package proc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hotpatch/hotpatch/internal/seccomp"
)

// Seccomp: never inject a system call the target's filters would refuse.
//
// A system call hotpatch injects runs in the target thread, so that
// thread's seccomp filters judge it like any of the thread's own calls
// (seccomp(2)). A filter that kills on memfd_create or mprotect(PROT_EXEC)
// (systemd's SystemCallFilter=, MemoryDenyWriteExecute=) would kill the
// process in the middle of an apply; one that traps would deliver SIGSYS to
// code that never made the call; SECCOMP_RET_USER_NOTIF would block the
// thread until a supervisor answers, with the process stopped around it.
//
// So before every injected call, the thread's filters are run here, in
// internal/seccomp, on exactly what the kernel will give them: the call's
// number and six arguments (unused ones zero, as prepareSyscall sets them),
// AUDIT_ARCH of the native convention and the instruction pointer just after
// the borrowed system call instruction (either gadget inject1 may use). Anything but SECCOMP_RET_ALLOW or
// SECCOMP_RET_LOG is not injected: the call returns a *SeccompError
// (ErrSeccomp) and the process stays attached and stopped, untouched, so the
// caller can undo what it did and choose another way.
//
// The filters are read with PTRACE_SECCOMP_GET_FILTER (ptrace(2); Linux 4.4,
// CONFIG_CHECKPOINT_RESTORE): addr is the filter's index, 0 the oldest, and
// the call returns its number of instructions, -ENOENT past the newest. The
// kernel allows it only to a tracer with CAP_SYS_ADMIN that is not under
// seccomp itself (kernel/seccomp.c, get_nth_filter's callers), and only on a
// thread in a ptrace-stop; without it nothing is injected
// (ErrSeccompUnreadable). /proc/PID/task/TID/status says whether a thread
// has filters (Seccomp: 2) and how many (Seccomp_filters:, Linux 5.9), so
// the filters are read once per session and again only when the count
// changed. A thread's chain only grows (a new filter, or SECCOMP_FILTER_FLAG_TSYNC
// from another thread, which requires the new chain to extend the old), and
// filter i is immutable, so reading index by index is consistent. The limit:
// another thread may attach a filter with TSYNC between the check and the
// call; a process that does that during an apply is not protected.

// threadSeccomp is what was read of one thread's seccomp state.
type threadSeccomp struct {
	mode    int // 0 disabled, 1 strict, 2 filter (Seccomp: in status)
	count   int // Seccomp_filters:, -1 when the kernel does not say
	filters []seccomp.Program
	err     error  // why the filters could not be read
	window  uint64 // the stop window (Process.window) the status was last read in
}

// seccompStatus reads a thread's seccomp mode and filter count. A kernel
// without CONFIG_SECCOMP has no Seccomp: line: mode 0.
func seccompStatus(pid, tid int) (mode, count int, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/status", pid, tid))
	if err != nil {
		return 0, 0, err
	}
	mode, count = parseSeccompStatus(data)
	return mode, count, nil
}

// threadSeccompStatus is seccompStatus of stopped thread t. In a window of
// every thread (not OneThread) the status read earlier in the window serves
// (windowStatus: no thread runs its own code, the reason seccompOf's cache
// holds for the window); with OneThread the other threads run, and it is
// read now.
func (p *Process) threadSeccompStatus(t *thread) (mode, count int, err error) {
	var data []byte
	if p.opt.OneThread {
		data, err = p.freshStatus(t)
	} else {
		data, err = p.windowStatus(t)
	}
	if err != nil {
		return 0, 0, err
	}
	mode, count = parseSeccompStatus(data)
	return mode, count, nil
}

// parseSeccompStatus returns the Seccomp: and Seccomp_filters: values of a
// status file (count -1 when the kernel does not say).
func parseSeccompStatus(data []byte) (mode, count int) {
	count = -1
	for len(data) > 0 {
		var line []byte
		line, data, _ = bytes.Cut(data, []byte("\n"))
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		switch string(k) {
		case "Seccomp":
			mode, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		case "Seccomp_filters":
			count, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	return mode, count
}

// seccompOf returns thread t's seccomp state (on the ptrace goroutine, t
// stopped), from the cache while the filter count is unchanged.
//
// Within one stop window of every thread (not OneThread), the state read at
// the first check is used for the whole window without asking the kernel
// again (seccompUnchanged or the status file; a window injects several
// calls, each checked, on a thread whose state cannot change): a thread's
// filters change only by its own seccomp(2)/prctl(2), or by another thread
// of its process with SECCOMP_FILTER_FLAG_TSYNC (seccomp(2)), and in such a
// window no thread of the process runs its own code (every task is stopped,
// and a stopped task creates none; the lending thread runs only the calls
// injected, which are never seccomp or prctl). With OneThread the other
// threads run, so the status is read at every check, as it always was.
func (p *Process) seccompOf(t *thread) (*threadSeccomp, error) {
	if c := p.seccomp[t.tid]; c != nil && !p.opt.OneThread && p.stopped && c.window == p.window {
		return c, c.err
	}
	if c := p.seccomp[t.tid]; c != nil && c.err == nil && seccompUnchanged(t.tid, c, c.window == p.window) {
		c.window = p.window
		return c, nil
	}
	mode, count, err := p.threadSeccompStatus(t)
	if err != nil {
		return nil, fmt.Errorf("read the seccomp state of thread %d: %w", t.tid, err)
	}
	if c := p.seccomp[t.tid]; c != nil && c.mode == mode && c.count == count && count >= 0 {
		c.window = p.window
		return c, c.err
	}
	st := &threadSeccomp{mode: mode, count: count, window: p.window}
	if mode == 2 {
		st.filters, st.err = readFilters(t.tid)
	}
	if p.seccomp == nil {
		p.seccomp = map[int]*threadSeccomp{}
	}
	p.seccomp[t.tid] = st
	return st, st.err
}

// seccompUnchanged reports whether stopped thread tid still has the seccomp
// state c, with one PTRACE_SECCOMP_GET_FILTER instead of reading and
// parsing /proc/PID/task/TID/status (which every injected call checks: a
// fleet apply read it a dozen times per process). The thread is stopped, so
// only another thread of its process can change its state, and only by
// adding filters (seccomp(2) SECCOMP_FILTER_FLAG_TSYNC; strict mode and
// the first filter of a thread's own come from the thread itself, and
// filters are never removed). The kernel's get_nth_filter (kernel/seccomp.c)
// answers EINVAL for a thread not in filter mode and ENOENT for an index
// past its chain: for one with count filters ENOENT at index count means no
// filter was added. EINVAL answers strict mode too, which the thread enters
// itself (prctl(2) PR_SET_SECCOMP): for a thread we saw without filters it
// means it still has none only if the thread has not run since (sameWindow:
// c was read in this stop window); a thread in strict mode is killed by the
// kernel at any other call injected. Anything else (a filter there, EACCES
// without CAP_SYS_ADMIN, EIO on a kernel without the request) is answered
// by reading the status file as before.
func seccompUnchanged(tid int, c *threadSeccomp, sameWindow bool) bool {
	switch {
	case c.mode == 0:
		if !sameWindow {
			return false
		}
		_, err := getFilter(tid, 0, nil)
		return errors.Is(err, unix.EINVAL)
	case c.mode == 2 && c.count >= 0:
		_, err := getFilter(tid, c.count, nil)
		return errors.Is(err, unix.ENOENT)
	}
	return false
}

// maxFilters bounds the chain read: the kernel limits a chain to 32768
// instructions counting 4 per filter (MAX_INSNS_PER_PATH).
const maxFilters = 32768 / 5

// readFilters reads every filter of stopped thread tid, oldest first.
func readFilters(tid int) ([]seccomp.Program, error) {
	var progs []seccomp.Program
	for i := 0; ; i++ {
		if i > maxFilters {
			return nil, fmt.Errorf("thread %d: more than %d seccomp filters: %w", tid, maxFilters, ErrSeccompUnreadable)
		}
		n, err := getFilter(tid, i, nil)
		if errors.Is(err, unix.ENOENT) {
			return progs, nil
		}
		if err == nil && (n == 0 || n > seccomp.MaxInstructions) {
			err = fmt.Errorf("kernel reported %d instructions", n)
		}
		var buf []byte
		if err == nil {
			buf = make([]byte, n*seccomp.InstructionSize)
			n, err = getFilter(tid, i, buf)
		}
		if err != nil {
			return nil, filterReadErr(tid, i, err)
		}
		prog, err := seccomp.Decode(buf[:n*seccomp.InstructionSize])
		if err != nil {
			return nil, fmt.Errorf("thread %d: seccomp filter %d: %w: %v", tid, i, ErrSeccompUnreadable, err)
		}
		progs = append(progs, prog)
	}
}

// getFilter is PTRACE_SECCOMP_GET_FILTER: with buf nil it returns filter
// i's length in instructions, otherwise it also copies it into buf (which
// must hold that many).
func getFilter(tid, i int, buf []byte) (int, error) {
	var data uintptr
	if len(buf) > 0 {
		data = uintptr(unsafe.Pointer(&buf[0]))
	}
	n, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SECCOMP_GET_FILTER, uintptr(tid), uintptr(i), data, 0, 0)
	if e != 0 {
		return 0, e
	}
	if len(buf) > 0 && int(n)*seccomp.InstructionSize > len(buf) {
		return 0, fmt.Errorf("filter grew to %d instructions", n) // cannot happen: filters are immutable
	}
	return int(n), nil
}

// filterReadErr explains why filter i of thread tid cannot be read.
func filterReadErr(tid, i int, err error) error {
	why := ""
	switch {
	case errors.Is(err, unix.EACCES):
		if mode, _, serr := seccompStatus(os.Getpid(), unix.Gettid()); serr == nil && mode != 0 {
			why = ": hotpatch itself runs under seccomp, and the kernel lets no such process read filters"
		} else {
			why = ": reading another process's seccomp filters needs CAP_SYS_ADMIN (run hotpatch as root)"
		}
		err = fmt.Errorf("%w: %w", err, ErrPermission)
	case errors.Is(err, unix.EIO), errors.Is(err, unix.EINVAL):
		why = ": the kernel does not provide PTRACE_SECCOMP_GET_FILTER (CONFIG_CHECKPOINT_RESTORE)"
	}
	return fmt.Errorf("thread %d has seccomp filters, so nothing is injected into it unchecked: %w: PTRACE_SECCOMP_GET_FILTER(%d): %w%s",
		tid, ErrSeccompUnreadable, i, err, why)
}

// seccompCheck returns nil when thread t's filters let system call nr with
// args run from the borrowed system call instruction; otherwise a
// *SeccompError, or ErrSeccompUnreadable. Runs on the ptrace goroutine with
// t stopped.
func (p *Process) seccompCheck(t *thread, nr uint64, args []uint64) error {
	return p.seccompCheckAt(t, nr, args, 0)
}

// seccompCheckAt is seccompCheck for a system call made from the
// instruction ending at ip (0: the one an injected system call on t uses).
func (p *Process) seccompCheckAt(t *thread, nr uint64, args []uint64, ip uint64) error {
	st, err := p.seccompOf(t)
	if err != nil {
		return fmt.Errorf("%s: %w", syscallName(nr), err)
	}
	switch st.mode {
	case 0:
		return nil
	case 1:
		return &SeccompError{Call: syscallName(nr), TID: t.tid, Strict: true}
	}
	// The call runs from the bare `syscall` gadget or, self-restoring,
	// from `syscall; ret` (inject1): the filters must allow it from both;
	// or from the instruction ending at ip when given.
	ips := []uint64{ip}
	if ip == 0 {
		g, err := p.gadgets()
		if err != nil {
			return err
		}
		ips = ips[:0]
		for _, pc := range []uint64{g.syscall, g.syscallRet} {
			if pc != 0 {
				ips = append(ips, pc+uint64(len(syscallInsn)))
			}
		}
	}
	for _, ip := range ips {
		d := seccomp.Data{Nr: int32(nr), Arch: hostAuditArch, IP: ip}
		copy(d.Args[:], args)
		res, err := seccomp.Eval(st.filters, d)
		if err != nil {
			return fmt.Errorf("%s on thread %d: %w: %v", syscallName(nr), t.tid, ErrSeccompUnreadable, err)
		}
		if !res.Runs() {
			return &SeccompError{Call: syscallName(nr), TID: t.tid, Result: res}
		}
	}
	return nil
}

// SeccompCheck reports whether system call nr with args (unused ones zero)
// would be injected: nil, or the error the injection would return without
// running (ErrSeccomp, ErrSeccompUnreadable). It is judged on the thread
// Syscall would run it on, now; the process must be stopped. Callers use it
// to choose, before changing anything, a sequence of calls the filters
// allow.
func (p *Process) SeccompCheck(nr uint64, args ...uint64) error {
	if len(args) > 6 {
		return fmt.Errorf("system call %d: %d arguments, at most 6", nr, len(args))
	}
	return p.do(func() error {
		t, err := p.injectionThread()
		if err != nil {
			return err
		}
		return p.seccompCheck(t, nr, args)
	})
}

// callSyscalls are system calls an injected function call (such as
// libgcc's __register_frame: malloc, a mutex) may plausibly make. What a
// function does cannot be foreseen; these are checked so that a filter that
// refuses them refuses the call before it runs. A call the function makes
// that is not listed here is not checked: that is the limit.
var callSyscalls = []struct {
	nr   uint64
	args []uint64
}{
	{unix.SYS_FUTEX, []uint64{0, futexWaitPrivate, 0}},
	{unix.SYS_FUTEX, []uint64{0, futexWakePrivate, 1}},
	{unix.SYS_BRK, []uint64{0}},
	{unix.SYS_MMAP, []uint64{0, 1 << 20, unix.PROT_READ | unix.PROT_WRITE, unix.MAP_PRIVATE | unix.MAP_ANONYMOUS, ^uint64(0), 0}},
	{unix.SYS_MUNMAP, []uint64{0, 1 << 20}},
}

// FUTEX_WAIT_PRIVATE and FUTEX_WAKE_PRIVATE (linux/futex.h): a mutex's calls.
const (
	futexWaitPrivate = 0 | 128
	futexWakePrivate = 1 | 128
)

// seccompCheckCall checks, before an injected function call at fn runs on
// t, the system calls it may make (callSyscalls).
func (p *Process) seccompCheckCall(t *thread, fn uint64) error {
	for _, c := range callSyscalls {
		if err := p.seccompCheck(t, c.nr, c.args); err != nil {
			var se *SeccompError
			if errors.As(err, &se) {
				se.For = fmt.Sprintf("the function at %#x", fn)
			}
			return err
		}
	}
	return nil
}

// preferUnfiltered orders the threads OneThread may seize so that threads
// without seccomp filters come first (their order kept otherwise): a thread
// that installed a filter after starting the others (without TSYNC) should
// not be the only one hotpatch tries.
func preferUnfiltered(pid int, tids []int) []int {
	var free, filtered []int
	for _, tid := range tids {
		if mode, _, err := seccompStatus(pid, tid); err == nil && mode == 0 {
			free = append(free, tid)
		} else {
			filtered = append(filtered, tid)
		}
	}
	return append(free, filtered...)
}

// syscallNames are the names of the system calls hotpatch injects, for errors.
var syscallNames = map[uint64]string{
	unix.SYS_MMAP: "mmap", unix.SYS_MUNMAP: "munmap", unix.SYS_MPROTECT: "mprotect",
	unix.SYS_MEMFD_CREATE: "memfd_create", unix.SYS_FTRUNCATE: "ftruncate", unix.SYS_CLOSE: "close",
	unix.SYS_FUTEX: "futex", unix.SYS_BRK: "brk", unix.SYS_RT_SIGRETURN: "rt_sigreturn",
}

func syscallName(nr uint64) string {
	if n, ok := syscallNames[nr]; ok {
		return n
	}
	return fmt.Sprintf("system call %d", nr)
}

func errnoOf(data uint16) error { return unix.Errno(min(data, 4095)) }

func runUndo(undo func() error) error {
	if undo == nil {
		return nil
	}
	return undo()
}
