//go:build linux

// Package proc controls a live process with ptrace: it seizes every thread,
// stops and resumes them, reads their registers, reads and writes the
// process's memory, runs system calls inside the process (mmap, mprotect,
// memfd_create, ...) and detaches leaving no trace.
//
// # Threading
//
// Linux accepts ptrace requests for a tracee only from the thread that
// attached to it (ptrace(2): "the tracer" is a thread, not a process). Every
// ptrace request of a Process therefore runs on one goroutine locked to its
// OS thread with runtime.LockOSThread; the exported methods send closures to
// it over a channel and wait for their result, as go-delve does. That
// goroutine never unlocks its thread. When it returns (after Detach, or after
// a failed Attach) the Go runtime terminates the locked thread, and the kernel
// detaches every tracee still attached to it (exit_ptrace, kernel/exit.c):
// even in the worst case the target is left running.
//
// # States
//
// Attach seizes every thread with PTRACE_SEIZE, which does not stop them.
// While the process runs, the ptrace goroutine services the stops the kernel
// still reports to us (new threads created with PTRACE_O_TRACECLONE, signals
// that must be passed on, group-stops) so the program keeps running normally;
// it wakes up on SIGCHLD and on a short tick.
//
// Stop interrupts every thread with PTRACE_INTERRUPT and waits for each of
// them with wait4(tid, __WALL|WNOHANG), never wait4(-1): the caller may have
// children of its own. Resume continues them; Detach detaches them, from
// either state.
package proc

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hotpatch/hotpatch/internal/statecache"
)

// Options tune a Process.
type Options struct {
	// Timeout bounds every wait on the target (stopping the threads, an
	// injected system call). Zero means DefaultTimeout.
	Timeout time.Duration
	// Realtime raises the ptrace thread to SCHED_FIFO for the stop window
	// only (from Stop to Resume or Detach), so that the target's threads are
	// stopped for as short a time as possible on a busy machine. Without the
	// privilege (EPERM) it is silently ignored.
	Realtime bool
	// Meter, when set, also receives this Process's stop figures (Stall,
	// Pause), so that an operation made of several sessions (map the region
	// with one thread, then stop all; free a region after a revert) reports
	// the worst of them all. A Meter may be shared by several Processes.
	Meter *Meter
	// CacheDir, when set, is where what can be reused between runs is
	// kept (the places of the gadgets, gadgetcache.go): the user's state
	// directory. Its content is checked against the process before use.
	CacheDir statecache.Dir
	// OneThread seizes a single thread of the process (the first live one
	// that is not traced already) instead of all of them: Stop then stops
	// only that thread, whose registers injected system calls borrow, and
	// every other thread keeps running. For operations that need a system
	// call in the target but no consistency check (patch-ready redirects).
	OneThread bool

	// Tests only. preferTID, when it names a live thread, is the thread
	// OneThread seizes first. beforeStop runs on the ptrace goroutine at the
	// start of every stopAll, before any thread is interrupted.
	preferTID  int
	beforeStop func()
}

// DefaultTimeout is the wait timeout when Options.Timeout is zero.
const DefaultTimeout = 2 * time.Second

// Thread is one stopped thread.
type Thread struct {
	TID  int
	Regs Regs
}

// stopKind says in which kind of ptrace-stop a thread is (ptrace(2),
// "Stopped states"); it decides how the thread may be resumed.
type stopKind int

const (
	running     stopKind = iota
	stopEvent            // PTRACE_EVENT_STOP after PTRACE_INTERRUPT or as a new thread
	stopSignal           // signal-delivery-stop; the signal is in sigs[0]
	stopGroup            // group-stop (PTRACE_EVENT_STOP with a stopping signal)
	stopSyscall          // syscall-exit-stop at the end of an injected system call
)

type thread struct {
	tid   int
	state stopKind
	// sigs are signals we intercepted and owe the thread: re-delivered when
	// it is resumed or detached.
	sigs []int
	// regs are the registers when the thread stopped (valid while stopped).
	regs Regs
	// injected: we ran a system call on the thread in this stop window. Its
	// registers have been restored to regs, but it sits in a
	// syscall-exit-stop, so the restart fixup must be applied when it leaves.
	injected bool
	// frame is the address of the self-restoring rt_sigframe written on the
	// thread's stack in this stop (0: none yet, or frameErr says why none
	// can be); xstate is the extended state it was built from. See lend.
	frame        uint64
	frameErr     error
	frameChecked bool // the seccomp check of its rt_sigreturn done
	xstate       []byte
	// status is /proc/PID/task/TID/status as read in stop window
	// statusWindow (Process.window); see windowStatus.
	status       []byte
	statusWindow uint64
	// stopSince is when we first asked the thread to stop (its
	// PTRACE_INTERRUPT, or when we first saw it stopped if it came stopped,
	// as a new clone does); zero while it runs free. release turns it into a
	// stall figure (stall.go).
	stopSince time.Time
	// stillSince, when set, is when the thread last ran: the start of an
	// earlier stop it has not run since (stoptime.go).
	stillSince time.Time
}

// Process is a process we are attached to. Its methods are safe for use by
// one goroutine at a time (calls are serialised).
type Process struct {
	pid    int
	memTID int // a live thread, for process_vm_readv (see Attach)
	opt    Options

	mu       sync.Mutex // serialises calls, guards detached
	detached bool
	reqs     chan func()
	mem      *os.File // /proc/PID/mem, O_RDWR

	pauseNs  atomic.Int64 // the longest window so far (see Pause)
	stallNs  atomic.Int64 // the longest stop of one thread so far (see Stall)
	meter    *Meter       // opt.Meter, or this Process's own
	inWindow atomic.Bool  // set while Window runs f on the ptrace goroutine

	// Owned by the ptrace goroutine.
	tracerTID  int
	threads    map[int]*thread
	stopped    bool
	window     uint64 // counts the stop windows (Stop), for seccompOf's cache
	exited     bool
	finished   bool // the loop must return
	pauseStart time.Time
	lastWake   time.Time  // the latest thread woken in this window (stoptime.go)
	waitClock  *waitClock // this thread's run_delay (stoptime.go)
	realtime   bool
	gad        gadgets   // instruction sequences borrowed for injection
	maps       []mapping // the mappings when gad was found or a stack checked
	fallback   string    // why the last injection was not self-restoring
	// injectTID, when non-zero, forces the thread Syscall runs on (tests).
	injectTID int
	// seccomp caches each thread's filters (seccomp_linux.go).
	seccomp map[int]*threadSeccomp
}

// Attach seizes every thread of process pid with PTRACE_SEIZE. The threads
// keep running; call Stop to stop them. The returned Process must be
// detached with Detach.
func Attach(pid int, opt Options) (*Process, error) {
	if opt.Timeout <= 0 {
		opt.Timeout = DefaultTimeout
	}
	if pid <= 0 {
		return nil, fmt.Errorf("process %d does not exist: %w", pid, ErrNoProcess)
	}
	if pid == os.Getpid() {
		return nil, fmt.Errorf("attach to process %d: cannot trace ourselves: %w", pid, ErrPermission)
	}
	leaderLive, err := checkAttachable(pid)
	if err != nil {
		return nil, err
	}
	memTID, mem, err := openTaskMem(pid, leaderLive)
	if err != nil {
		return nil, err
	}
	p := &Process{
		pid:     pid,
		memTID:  memTID,
		opt:     opt,
		reqs:    make(chan func()),
		mem:     mem,
		threads: map[int]*thread{},
		meter:   opt.Meter,
	}
	if p.meter == nil {
		p.meter = new(Meter)
	}
	ready := make(chan error, 1)
	go p.loop(ready)
	if err := <-ready; err != nil {
		mem.Close()
		p.detached = true
		return nil, err
	}
	// Find the instruction sequences injected calls borrow now, while the
	// process runs, to keep the stop short (errors surface at first use).
	p.do(func() error {
		p.gadgets()
		return nil
	})
	return p, nil
}

// openTaskMem opens the memory of process pid for reading and writing.
//
// The memory is reached through a live thread: when the main thread has
// called pthread_exit, it is a zombie without an mm, and both /proc/PID/mem
// and process_vm_readv(PID) fail with ESRCH. The thread chosen may itself
// exit (a process that creates short-lived threads) before the open: then
// another is chosen. Once open, the file keeps working after that thread
// exits: it holds a reference to the address space, not to the thread
// (proc_mem_open takes the mm; mem_rw needs only mm_users > 0, i.e. some
// live thread, fs/proc/base.c).
//
// leaderLive says that checkAttachable has just seen the main thread alive:
// the first try then opens its file without reading its state again. It
// may have called pthread_exit since (the status read of checkTracer lies
// between), as it may between liveTask's read and the open: then the file
// has no address space (proc_mem_open finds no mm), every read and write
// through it fails (mem_rw returns 0), and the operation ends with an error
// before anything is written; it never reaches other memory.
func openTaskMem(pid int, leaderLive bool) (int, *os.File, error) {
	var err error
	for try := 0; try < 100; try++ {
		tid := pid
		if try > 0 || !leaderLive {
			tid = liveTask(pid)
		}
		var f *os.File
		f, err = os.OpenFile(fmt.Sprintf("/proc/%d/task/%d/mem", pid, tid), os.O_RDWR, 0)
		if err == nil {
			return tid, f, nil
		}
		if tid == pid || !(errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH)) {
			break
		}
	}
	return 0, nil, openErr(pid, err)
}

func openErr(pid int, err error) error {
	switch {
	case errors.Is(err, os.ErrNotExist), errors.Is(err, unix.ESRCH):
		return goneErr(pid)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("open /proc/%d/mem: %w (%v)", pid, ErrPermission, err)
	}
	return fmt.Errorf("open /proc/%d/mem: %w", pid, err)
}

// goneErr describes a process that vanished under us: ErrExited when it is
// still there as a zombie, ErrNoProcess when it is not there at all.
func goneErr(pid int) error {
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		return fmt.Errorf("process %d has exited: %w", pid, ErrExited)
	}
	return fmt.Errorf("process %d does not exist: %w", pid, ErrNoProcess)
}

// checkAttachable refuses zombies, kernel threads and already traced
// processes before anything is done to them. It reports whether the main
// thread was alive (the state in /proc/PID/stat is the leader's).
func checkAttachable(pid int) (leaderLive bool, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) {
			return false, fmt.Errorf("process %d does not exist: %w", pid, ErrNoProcess)
		}
		return false, fmt.Errorf("read /proc/%d/stat: %w", pid, err)
	}
	st, err := parseStat(data)
	if err != nil {
		return false, fmt.Errorf("process %d: %w", pid, err)
	}
	if st.Flags&pfKthread != 0 {
		return false, fmt.Errorf("process %d: %w", pid, ErrKernelThread)
	}
	if st.State == 'Z' || st.State == 'X' {
		// The leader of a live multi-threaded process is a zombie when it
		// called pthread_exit; the process is a zombie only when no task
		// is left alive.
		if !anyLiveTask(pid) {
			return false, fmt.Errorf("process %d is a zombie (it exited and waits for its parent to reap it): %w", pid, ErrExited)
		}
		return false, checkTracer(pid, pid, 0)
	}
	return true, checkTracer(pid, pid, 0)
}

// liveTask returns pid if its main thread is alive, else the live thread
// of the process with the lowest tid (likely its oldest), else pid.
func liveTask(pid int) int {
	if st, err := taskState(pid, pid); err != nil || (st != 'Z' && st != 'X') {
		return pid
	}
	tids, err := listTasks(pid)
	if err != nil {
		return pid
	}
	for _, tid := range tids {
		if st, err := taskState(pid, tid); err == nil && st != 'Z' && st != 'X' {
			return tid
		}
	}
	return pid
}

// anyLiveTask reports whether process pid has a task that is not a zombie:
// whether the process itself is alive. A zombie leader (it called
// pthread_exit) with live threads is a live process; a process whose tasks
// are all zombies, or whose /proc entry is gone, has exited.
func anyLiveTask(pid int) bool {
	if st, err := taskState(pid, pid); err == nil && st != 'Z' && st != 'X' {
		return true
	}
	tids, err := listTasks(pid)
	if err != nil {
		return false
	}
	for _, tid := range tids {
		if st, err := taskState(pid, tid); err == nil && st != 'Z' && st != 'X' {
			return true
		}
	}
	return false
}

// checkTracer returns ErrAlreadyTraced when task tid of pid is traced by
// someone other than self (a tracer thread id, or 0).
func checkTracer(pid, tid, self int) error {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/status", pid, tid))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) {
			if tid != pid {
				// One thread exited; the process may well live on.
				return fmt.Errorf("thread %d of process %d: %w", tid, pid, ErrNoProcess)
			}
			return goneErr(pid)
		}
		return fmt.Errorf("read status of task %d: %w", tid, err)
	}
	st, err := parseStatus(data)
	if err != nil {
		return fmt.Errorf("process %d: %w", pid, err)
	}
	if st.TracerPid != 0 && st.TracerPid != self {
		who := strconv.Itoa(st.TracerPid)
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", st.TracerPid)); err == nil {
			who += " (" + string(bytes.TrimSpace(comm)) + ")"
		}
		return fmt.Errorf("process %d is already traced by process %s; detach the debugger or tracer first: %w",
			pid, who, ErrAlreadyTraced)
	}
	return nil
}

// listTasks returns the tids of process pid in increasing numeric order.
// (os.ReadDir sorts by name, which would put thread 10001 before the
// leader 9999; the kernel allocates tids increasingly until pid_max wraps,
// so low tids are, as a rule, the process's oldest threads.)
func listTasks(pid int) ([]int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil, err
	}
	tids := make([]int, 0, len(ents))
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	sort.Ints(tids)
	return tids, nil
}

func taskState(pid, tid int) (byte, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/stat", pid, tid))
	if err != nil {
		return 0, err
	}
	st, err := parseStat(data)
	if err != nil {
		return 0, err
	}
	return st.State, nil
}

// nap sleeps on the ptrace thread with nanosleep(2) directly: the thread is
// locked to its goroutine anyway, and a direct sleep wakes up far more
// precisely than a Go timer handing the goroutine back to a locked thread.
func nap(d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	unix.Nanosleep(&ts, nil)
}

// spinFor is how long a wait on a tracee yields the CPU before it sleeps.
const spinFor = 100 * time.Microsecond

// pacer paces a loop that polls tracees with wait4(WNOHANG).
//
// Why poll: a blocking wait4 cannot be given a timeout here (the Go runtime
// installs its signal handlers with SA_RESTART, so no signal interrupts it),
// and every wait must have one. Why not just sleep: a ptrace stop or an
// injected system call often completes within tens of microseconds, but
// nanosleep(2) has a floor well above that on virtual machines (a 10 µs sleep
// took ~50 µs on the 2-vCPU CI machine). So the first spinFor of a wait only
// yields the CPU between polls (sched_yield(2)), so that a tracee woken on
// this CPU runs at once; then it sleeps with exponential backoff from 10 µs
// to 1 ms. With the tracer at SCHED_FIFO (Options.Realtime) sched_yield
// yields only to other real-time threads and would starve a tracee sharing
// the CPU, so a real-time wait sleeps from the start. BenchmarkStopResume and
// BenchmarkInjectedSyscall, on one CPU (taskset -c 0): stop and resume 179 ->
// 119 µs, an injected system call 132 -> 60 µs.
type pacer struct {
	start   time.Time
	spin    bool
	backoff time.Duration
}

func (p *Process) newPacer() pacer {
	return pacer{start: time.Now(), spin: !p.realtime, backoff: 10 * time.Microsecond}
}

// wait pauses before the next poll.
func (pc *pacer) wait() {
	if pc.spin && time.Since(pc.start) < spinFor {
		unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
		return
	}
	nap(pc.backoff)
	pc.backoff = min(pc.backoff*2, time.Millisecond)
}

// reset starts over after progress: the next stop is likely close.
func (pc *pacer) reset() { pc.start, pc.backoff = time.Now(), 10*time.Microsecond }

// alive reports whether the process still has a live task.
func (p *Process) alive() bool { return anyLiveTask(p.pid) }

// Pid returns the process id.
func (p *Process) Pid() int { return p.pid }

// Window runs f on the ptrace goroutine, where every call f makes on p
// (Stop, ReadMem, Syscall, Threads, Resume, ...) runs at once instead of
// being handed over to it: a call from another goroutine costs two thread
// wake-ups (the ptrace thread's, then the caller's), each a scheduling
// delay, tens of microseconds to milliseconds on a loaded machine, and a
// stop window makes dozens of calls while the target stands still. f must
// not wait for another goroutine that uses p (that one would wait for f),
// and runs with p.mu held. A panic in f is recovered on the ptrace
// goroutine (which must survive to detach the target) and raised again on
// the caller's, so that the caller's recovery sees it as before.
func (p *Process) Window(f func() error) error {
	var panicked any
	err := p.do(func() (err error) {
		p.inWindow.Store(true)
		defer p.inWindow.Store(false)
		defer func() {
			if r := recover(); r != nil {
				panicked = r
				err = fmt.Errorf("panic: %v", r)
			}
		}()
		return f()
	})
	if panicked != nil {
		panic(panicked)
	}
	return err
}

// inWindowHere reports whether the caller is f of a running Window: only the
// ptrace goroutine runs on its locked OS thread (runtime.LockOSThread), so
// the thread id tells it from every other goroutine.
func (p *Process) inWindowHere() bool {
	return p.inWindow.Load() && unix.Gettid() == p.tracerTID
}

// Pause returns the duration of the longest stop window of this Process
// so far: from the first PTRACE_INTERRUPT of Stop to the last thread resumed
// or detached.
func (p *Process) Pause() time.Duration { return time.Duration(p.pauseNs.Load()) }

// Stall returns the longest time any one thread was stopped, over every
// stop window of this Process so far (stall.go): what the target felt.
func (p *Process) Stall() time.Duration { return time.Duration(p.stallNs.Load()) }

// loop is the ptrace goroutine. It seizes the process, reports on ready,
// then runs requests until Detach.
func (p *Process) loop(ready chan<- error) {
	// Never unlocked: see the package comment. Returning from this goroutine
	// terminates the thread, which detaches whatever is still attached.
	runtime.LockOSThread()
	p.tracerTID = unix.Gettid()
	p.waitClock = openWaitClock()
	defer p.waitClock.close()
	// Our waits are short naps between polls of the tracees (nap): with the
	// default 50 µs timer slack (prctl(2), PR_SET_TIMERSLACK) each would last
	// at least that long, and the target stays stopped meanwhile. This
	// thread exits with the Process, so the setting goes with it.
	unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
	if err := p.seizeAll(); err != nil {
		ready <- err
		return
	}
	// Tracee stops are announced to the tracer with SIGCHLD; a tick covers
	// coalesced or missed signals.
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, unix.SIGCHLD)
	defer signal.Stop(sigc)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	ready <- nil
	for !p.finished {
		select {
		case f := <-p.reqs:
			f()
		case <-sigc:
			p.service()
		case <-tick.C:
			p.service()
		}
	}
}

// do runs f on the ptrace goroutine. Inside Window it is already there, and
// p.mu is held for it: f runs at once.
func (p *Process) do(f func() error) error {
	if p.inWindowHere() {
		if p.finished {
			return fmt.Errorf("process %d: %w", p.pid, ErrDetached)
		}
		return f()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.detached {
		return fmt.Errorf("process %d: %w", p.pid, ErrDetached)
	}
	errc := make(chan error, 1)
	p.reqs <- func() { errc <- f() }
	err := <-errc
	if p.finished {
		p.detached = true
		p.mem.Close()
	}
	return err
}

const seizeOptions = unix.PTRACE_O_TRACECLONE | unix.PTRACE_O_TRACESYSGOOD

func ptrace(req, tid int, addr, data uintptr) error {
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, uintptr(req), uintptr(tid), addr, data, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// seizeAll seizes every task until a scan of /proc/PID/task finds nothing
// new. Threads created by a seized thread are attached by the kernel
// (PTRACE_O_TRACECLONE); the rescans catch threads created by threads not
// yet seized.
func (p *Process) seizeAll() error {
	deadline := time.Now().Add(p.opt.Timeout)
	if p.opt.OneThread {
		return p.seizeOne(deadline)
	}
	for first := true; ; first = false {
		n, err := p.scanTasks(first)
		if err != nil {
			return err
		}
		if n == 0 && !first {
			return nil
		}
		if len(p.threads) == 0 && !p.alive() {
			return fmt.Errorf("process %d: no live thread to attach to: %w", p.pid, ErrExited)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("attach to process %d: thread list does not settle: %w", p.pid, ErrTimeout)
		}
	}
}

// seizeOne seizes one live thread, without PTRACE_O_TRACECLONE: threads it
// creates are not ours. It tries the thread group leader first, then the
// other threads from the lowest tid up (see listTasks): in a process that
// creates short-lived threads, those are its long-lived ones. Any thread may
// still exit before it is stopped; stopAll then calls seizeOne again. It
// fails with ErrExited only when the process itself has exited.
func (p *Process) seizeOne(deadline time.Time) error {
	pace := p.newPacer()
	for {
		tids, err := listTasks(p.pid)
		if err != nil {
			return goneErr(p.pid)
		}
		if st, err := taskState(p.pid, p.pid); err != nil || st == 'Z' || st == 'X' {
			tids = oldestFirst(p.pid, tids)
		}
		// Threads without seccomp filters first (seccomp_linux.go), in the
		// order above otherwise.
		tids = preferUnfiltered(p.pid, preferFirst(tids, p.opt.preferTID, p.pid))
		seized, err := p.seizeFirstLive(tids)
		if err != nil || seized {
			return err
		}
		// Every candidate exited under us, or is exiting.
		if !p.alive() {
			return fmt.Errorf("process %d: no live thread to attach to: %w", p.pid, ErrExited)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("attach to a thread of process %d: every thread tried exited first: %w", p.pid, ErrTimeout)
		}
		pace.wait()
	}
}

// oldestFirst sorts tids by the tasks' start times, oldest first (a task
// that is gone sorts last): when the leader is a zombie, the oldest of the
// other threads is the likeliest to live on, and after pid_max wraps the
// lowest tids are the youngest.
func oldestFirst(pid int, tids []int) []int {
	start := make(map[int]uint64, len(tids))
	for _, tid := range tids {
		start[tid] = ^uint64(0)
		if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/stat", pid, tid)); err == nil {
			if st, err := parseStat(data); err == nil {
				start[tid] = st.StartTime
			}
		}
	}
	out := slices.Clone(tids)
	slices.SortStableFunc(out, func(a, b int) int { return cmp.Compare(start[a], start[b]) })
	return out
}

// preferFirst moves the tids of prefer that are in tids (zeros ignored) to
// the front, in the order given.
func preferFirst(tids []int, prefer ...int) []int {
	var head []int
	for _, want := range prefer {
		if want != 0 && slices.Contains(tids, want) && !slices.Contains(head, want) {
			head = append(head, want)
		}
	}
	out := slices.Clone(head)
	for _, tid := range tids {
		if !slices.Contains(head, tid) {
			out = append(out, tid)
		}
	}
	return out
}

// seizeFirstLive seizes the first task of tids that is alive, reporting
// whether it seized one. A task that exits meanwhile (ESRCH, or EPERM for a
// zombie, ptrace(2)) is skipped.
func (p *Process) seizeFirstLive(tids []int) (bool, error) {
	for _, tid := range tids {
		if st, err := taskState(p.pid, tid); err != nil || st == 'Z' || st == 'X' {
			continue
		}
		err := ptrace(unix.PTRACE_SEIZE, tid, 0, unix.PTRACE_O_TRACESYSGOOD)
		switch {
		case err == nil:
			p.threads[tid] = &thread{tid: tid}
			return true, nil
		case errors.Is(err, unix.ESRCH):
			continue
		case errors.Is(err, unix.EPERM):
			if terr := checkTracer(p.pid, tid, 0); terr != nil {
				if errors.Is(terr, ErrNoProcess) {
					continue
				}
				return false, terr
			}
			if st, err := taskState(p.pid, tid); err != nil || st == 'Z' || st == 'X' {
				continue // exited meanwhile
			}
			return false, fmt.Errorf("attach to a thread of process %d (thread %d): %w; check /proc/sys/kernel/yama/ptrace_scope and CAP_SYS_PTRACE",
				p.pid, tid, ErrPermission)
		default:
			return false, fmt.Errorf("PTRACE_SEIZE %d: %w", tid, err)
		}
	}
	return false, nil
}

// scanTasks seizes or adopts every task of /proc/PID/task we do not know
// yet and returns how many it added.
func (p *Process) scanTasks(first bool) (int, error) {
	tids, err := listTasks(p.pid)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) {
			if first {
				return 0, goneErr(p.pid)
			}
			return 0, fmt.Errorf("process %d: %w", p.pid, ErrExited)
		}
		return 0, fmt.Errorf("list threads of %d: %w", p.pid, err)
	}
	added := 0
	for _, tid := range tids {
		if _, ok := p.threads[tid]; ok {
			continue
		}
		// No state read before the seize: PTRACE_SEIZE refuses an exited
		// task with ESRCH and a zombie (exit_state set) with EPERM
		// (ptrace_attach, kernel/ptrace.c), and the EPERM case reads the
		// state below, so a zombie is skipped as it was by a read here:
		// one /proc read less per thread and session.
		err := ptrace(unix.PTRACE_SEIZE, tid, 0, seizeOptions)
		switch {
		case err == nil:
		case errors.Is(err, unix.ESRCH):
			continue // the thread exited meanwhile
		case errors.Is(err, unix.EPERM):
			// A zombie (a zombie leader: the main thread called
			// pthread_exit), skipped. Otherwise already traced: by us when
			// the kernel attached it as the child of a seized thread
			// (PTRACE_O_TRACECLONE); by someone else otherwise.
			if st, err := taskState(p.pid, tid); err != nil || st == 'Z' || st == 'X' {
				continue
			}
			if terr := checkTracer(p.pid, tid, p.tracerTID); terr != nil {
				if errors.Is(terr, ErrNoProcess) {
					continue
				}
				return 0, terr
			}
			if st, err := taskState(p.pid, tid); err != nil || st == 'Z' || st == 'X' {
				continue
			}
			if !p.tracedByUs(tid) {
				return 0, fmt.Errorf("attach to process %d (thread %d): %w; check /proc/sys/kernel/yama/ptrace_scope and CAP_SYS_PTRACE",
					p.pid, tid, ErrPermission)
			}
		default:
			return 0, fmt.Errorf("PTRACE_SEIZE %d: %w", tid, err)
		}
		p.threads[tid] = &thread{tid: tid}
		added++
	}
	return added, nil
}

// freshStatus reads thread t's /proc/PID/task/TID/status now and keeps it
// for windowStatus.
func (p *Process) freshStatus(t *thread) ([]byte, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/status", p.pid, t.tid))
	if err != nil {
		return nil, err
	}
	t.status, t.statusWindow = data, p.window
	return data, nil
}

// windowStatus is thread t's status file as read once in this stop window
// (freshStatus when it was not): a stopped thread's writeFrame (its shadow
// stack) and seccomp check read it once instead of once each. Only for
// fields that cannot change while t is stopped in this window: its shadow
// stack features change only by its own arch_prctl(2) (ARCH_SHSTK_*, acting
// on the calling thread), and the code injected on it never makes that call;
// its seccomp state, only in a window of every thread (see seccompOf).
func (p *Process) windowStatus(t *thread) ([]byte, error) {
	if t.status != nil && p.stopped && t.statusWindow == p.window {
		return t.status, nil
	}
	return p.freshStatus(t)
}

func (p *Process) tracedByUs(tid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/status", p.pid, tid))
	if err != nil {
		return false
	}
	st, err := parseStatus(data)
	return err == nil && st.TracerPid == p.tracerTID
}

// stopEv is a decoded wait status.
type stopEv int

const (
	evNone    stopEv = iota
	evGone           // the thread exited (or is no longer ours)
	evInt            // PTRACE_EVENT_STOP with SIGTRAP: interrupt or new thread
	evGroup          // PTRACE_EVENT_STOP with a stopping signal: group-stop
	evSignal         // signal-delivery-stop
	evSyscall        // syscall-entry/exit-stop (SIGTRAP|0x80)
	evClone          // PTRACE_EVENT_CLONE
	evOther          // other ptrace-event-stop (exec, ...)
)

// poll does one wait4(tid, __WALL|WNOHANG) and decodes the result. It
// records exits (removing the thread) and new threads announced by
// PTRACE_EVENT_CLONE.
func (p *Process) poll(t *thread) (stopEv, int, error) {
	if t.tid == p.pid {
		// Never reap the leader's exit status: when the caller is also the
		// real parent (a test that started the target with os/exec), the
		// status would be lost to it. Peek with WNOWAIT; once we detach (our
		// thread exits), the kernel hands the zombie to the real parent
		// (exit_ptrace).
		exited, err := peekExit(t.tid)
		if err != nil {
			if errors.Is(err, unix.ECHILD) {
				p.gone(t.tid)
				return evGone, 0, nil
			}
			return evNone, 0, nil
		}
		if exited {
			p.gone(t.tid)
			return evGone, 0, nil
		}
	}
	var ws unix.WaitStatus
	wpid, err := unix.Wait4(t.tid, &ws, unix.WALL|unix.WNOHANG, nil)
	if err != nil {
		if errors.Is(err, unix.EINTR) {
			return evNone, 0, nil
		}
		if errors.Is(err, unix.ECHILD) {
			p.gone(t.tid)
			return evGone, 0, nil
		}
		return evNone, 0, fmt.Errorf("wait4 %d: %w", t.tid, err)
	}
	if wpid == 0 {
		return evNone, 0, nil
	}
	switch {
	case ws.Exited(), ws.Signaled():
		p.gone(t.tid)
		return evGone, 0, nil
	case !ws.Stopped():
		return evNone, 0, nil
	}
	sig := int(ws>>8) & 0xff
	event := int(ws>>16) & 0xff
	switch {
	case sig == int(unix.SIGTRAP)|0x80:
		return evSyscall, 0, nil
	case event == unix.PTRACE_EVENT_STOP:
		switch unix.Signal(sig) {
		case unix.SIGSTOP, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU:
			return evGroup, sig, nil
		}
		return evInt, 0, nil
	case event == unix.PTRACE_EVENT_CLONE:
		msg, err := unix.PtraceGetEventMsg(t.tid)
		if err == nil && msg != 0 {
			if _, ok := p.threads[int(msg)]; !ok {
				if _, err := os.Stat(fmt.Sprintf("/proc/%d/task/%d", p.pid, msg)); err == nil {
					p.threads[int(msg)] = &thread{tid: int(msg)}
				} else {
					p.releaseForeign(int(msg))
				}
			}
		}
		return evClone, 0, nil
	case event != 0:
		return evOther, 0, nil
	}
	return evSignal, sig, nil
}

// Values of si_code for SIGCHLD (<asm-generic/siginfo.h>).
const (
	cldExited = 1
	cldKilled = 2
	cldDumped = 3
)

// peekExit reports whether task tid has an exit status waiting for us,
// without consuming it (waitid(2) with WNOWAIT).
func peekExit(tid int) (bool, error) {
	var info unix.Siginfo
	err := unix.Waitid(unix.P_PID, tid, &info, unix.WEXITED|unix.WSTOPPED|unix.WNOHANG|unix.WNOWAIT|unix.WALL, nil)
	if err != nil {
		return false, err
	}
	// With WNOHANG and nothing to report, the kernel leaves si_pid (and
	// si_signo) zero.
	if info.Signo == 0 {
		return false, nil
	}
	switch info.Code {
	case cldExited, cldKilled, cldDumped:
		return true, nil
	}
	return false, nil
}

// releaseForeign detaches a task PTRACE_O_TRACECLONE attached us to that is
// not a thread of the process (clone(2) without CLONE_THREAD: a new process
// sharing memory). It reports its first stop right away; detach it there.
func (p *Process) releaseForeign(tid int) {
	deadline := time.Now().Add(p.opt.Timeout)
	for time.Now().Before(deadline) {
		var ws unix.WaitStatus
		wpid, err := unix.Wait4(tid, &ws, unix.WALL|unix.WNOHANG, nil)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return
		}
		if wpid == tid && ws.Stopped() {
			ptrace(unix.PTRACE_DETACH, tid, 0, 0)
			return
		}
		nap(50 * time.Microsecond)
	}
	// Not stopped in time: the kernel detaches it when our thread exits.
}

func (p *Process) gone(tid int) {
	delete(p.threads, tid)
	if tid == p.pid {
		// wait4 reports the leader only when the whole thread group is dead.
		p.exited = true
	}
	// Any other thread's exit says nothing about the process: a process
	// that creates short-lived threads loses some all the time, and with
	// OneThread the thread we held may have been one of them. Who needs to
	// know whether the process lives asks (alive).
}

// service handles the stops of a running process: the program must go on as
// if it were not traced.
func (p *Process) service() {
	if p.stopped || p.finished {
		return
	}
	// A few passes catch the stops that follow one another (a clone event,
	// then the new thread's first stop); bounded so that a program that
	// creates threads without pause cannot keep us from our requests.
	for pass, progress := 0, true; progress && pass < 8; pass++ {
		progress = false
		for _, t := range p.sortedThreads() {
			if t.state != running {
				continue
			}
			ev, sig, err := p.poll(t)
			if err != nil {
				continue
			}
			progress = progress || ev != evNone
			switch ev {
			case evInt, evSyscall, evClone, evOther:
				ptrace(unix.PTRACE_CONT, t.tid, 0, 0)
			case evSignal:
				ptrace(unix.PTRACE_CONT, t.tid, 0, uintptr(sig))
			case evGroup:
				// Keep the job-control stop in effect, but let us be
				// notified when it ends (ptrace(2), PTRACE_LISTEN).
				ptrace(unix.PTRACE_LISTEN, t.tid, 0, 0)
			}
		}
	}
}

func (p *Process) sortedThreads() []*thread {
	ts := make([]*thread, 0, len(p.threads))
	for _, t := range p.threads {
		ts = append(ts, t)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].tid < ts[j].tid })
	return ts
}

// Stop interrupts every thread and waits until all of them are stopped.
// On error the process is detached (and left running) before Stop returns.
func (p *Process) Stop() error {
	return p.do(func() error {
		if p.stopped {
			return nil
		}
		p.pauseStart = time.Now()
		p.setRealtime(true)
		if err := p.stopAll(); err != nil {
			p.detachAll()
			return err
		}
		p.stopped = true
		p.window++
		return nil
	})
}

// stopAll interrupts and waits for every thread, re-scanning
// /proc/PID/task until every task is known and stopped, then reads the
// registers. With OneThread it stops the one thread held, and when that
// thread exits before it stops, seizes another.
func (p *Process) stopAll() error {
	if p.opt.beforeStop != nil {
		p.opt.beforeStop()
	}
	deadline := time.Now().Add(p.opt.Timeout)
	for {
		if err := p.waitAllStopped(deadline); err != nil {
			return err
		}
		lost, err := p.readAllRegs()
		if err != nil || !lost {
			return err
		}
		// A thread vanished in its stop (which only SIGKILL or another
		// thread's execve can do): go around again with the others.
	}
}

// waitAllStopped interrupts the running threads and waits until every
// thread is stopped (see stopAll).
func (p *Process) waitAllStopped(deadline time.Time) error {
	p.interruptRunning()
	pace := p.newPacer()
	lastZombieCheck := time.Now()
	for {
		waiting, progress, err := p.pollStops()
		if err != nil {
			return err
		}
		if p.exited {
			return fmt.Errorf("stop process %d: its thread group has exited: %w", p.pid, ErrExited)
		}
		if len(p.threads) == 0 {
			// Every thread we held exited: short-lived threads of a process
			// that may well live on.
			if err := p.replaceLost(deadline); err != nil {
				return err
			}
			continue
		}
		if waiting == 0 {
			if p.opt.OneThread {
				return nil
			}
			// Every known thread is stopped: nothing can create a thread
			// now, so a task we do not know yet was missed; adopt it.
			n, err := p.scanTasks(false)
			if err != nil {
				return err
			}
			if n == 0 {
				return nil
			}
			p.interruptRunning()
			continue
		}
		now := time.Now()
		if now.After(deadline) {
			if !p.alive() {
				return fmt.Errorf("stop process %d: no thread left alive: %w", p.pid, ErrExited)
			}
			return fmt.Errorf("stop process %d: %d threads did not stop within %v: %w", p.pid, waiting, p.opt.Timeout, ErrTimeout)
		}
		if now.Sub(lastZombieCheck) > 20*time.Millisecond {
			// A leader that called pthread_exit is a zombie that never
			// reports while other threads live; stop waiting for it.
			lastZombieCheck = now
			p.dropZombies()
		}
		if progress {
			pace.reset()
		} else {
			pace.wait()
		}
	}
}

// replaceLost is called when every thread we held has exited: it fails with
// ErrExited if the process has, else takes other threads (with OneThread one
// other thread, else every task not yet known) and interrupts them.
func (p *Process) replaceLost(deadline time.Time) error {
	if !p.alive() {
		p.exited = true
		return fmt.Errorf("stop process %d: every thread held exited, and no other is alive: %w", p.pid, ErrExited)
	}
	if p.opt.OneThread {
		if err := p.seizeOne(deadline); err != nil {
			return fmt.Errorf("stop process %d: the thread held exited, and taking another failed: %w", p.pid, err)
		}
	} else if _, err := p.scanTasks(false); err != nil {
		return err
	}
	if time.Now().After(deadline) {
		return fmt.Errorf("stop process %d: its threads keep exiting before they stop: %w", p.pid, ErrTimeout)
	}
	p.interruptRunning()
	return nil
}

func (p *Process) interruptRunning() {
	for _, t := range p.threads {
		if t.state == running {
			// Each thread's clock starts at its own interrupt: the ones
			// before it (each a wake-up, perhaps a preemption of this
			// thread) are time it still ran.
			t.markStopping(time.Now())
			ptrace(unix.PTRACE_INTERRUPT, t.tid, 0, 0) // ESRCH: exited; wait4 tells
		}
	}
}

// pollStops polls every running thread once, recording the stops, and
// returns how many are still running and whether anything happened.
func (p *Process) pollStops() (waiting int, progress bool, err error) {
	for _, t := range p.sortedThreads() {
		if t.state != running {
			continue
		}
		ev, sig, err := p.poll(t)
		if err != nil {
			return 0, false, err
		}
		if ev != evNone {
			progress = true
		}
		if ev != evNone && ev != evGone {
			t.markStopping(time.Now()) // a thread that came stopped (a new clone)
		}
		switch ev {
		case evNone:
			waiting++
		case evInt:
			t.state = stopEvent
		case evGroup:
			t.state = stopGroup
		case evSignal:
			t.state = stopSignal
			t.sigs = append(t.sigs, sig)
		case evClone, evOther, evSyscall:
			// A trap in the middle of a system call (clone, exec)
			// consumes our interrupt ("any trap clears pending STOP
			// trap", kernel/signal.c ptrace_stop). Interrupt again and
			// continue: the thread finishes the call and stops at
			// its way back to user mode, where registers are those of
			// the program and a system call may be injected. The new
			// thread of a clone reports its own PTRACE_EVENT_STOP.
			ptrace(unix.PTRACE_INTERRUPT, t.tid, 0, 0)
			if err := ptrace(unix.PTRACE_CONT, t.tid, 0, 0); err != nil && !errors.Is(err, unix.ESRCH) {
				return 0, false, fmt.Errorf("PTRACE_CONT %d: %w", t.tid, err)
			}
			waiting++
		}
	}
	return waiting, progress, nil
}

// dropZombies forgets the running threads that are zombies (a leader that
// called pthread_exit) or gone.
func (p *Process) dropZombies() {
	for _, t := range p.sortedThreads() {
		if t.state != running {
			continue
		}
		if st, err := taskState(p.pid, t.tid); err != nil || st == 'Z' || st == 'X' {
			delete(p.threads, t.tid)
		}
	}
}

// readAllRegs reads the registers of every stopped thread. A thread that
// vanished (ESRCH) is forgotten and lost reports it; the process having
// exited is ErrExited.
func (p *Process) readAllRegs() (lost bool, err error) {
	for _, t := range p.sortedThreads() {
		r, err := getRegs(t.tid)
		if err != nil {
			if !p.alive() {
				p.exited = true
				return false, fmt.Errorf("stop process %d: reading registers, no thread left alive: %w", p.pid, ErrExited)
			}
			if errors.Is(err, unix.ESRCH) {
				delete(p.threads, t.tid)
				lost = true
				continue
			}
			return false, err
		}
		t.regs = r
		p.noteStopped(t)
	}
	return lost, nil
}

// Threads returns the stopped threads and their registers, sorted by TID. It
// returns nil when the process is not stopped.
func (p *Process) Threads() []Thread {
	var out []Thread
	p.do(func() error {
		if !p.stopped {
			return nil
		}
		for _, t := range p.sortedThreads() {
			out = append(out, Thread{TID: t.tid, Regs: t.regs})
		}
		return nil
	})
	return out
}

// Resume continues every thread (they stay seized), re-delivering the
// signals intercepted while they were stopped.
func (p *Process) Resume() error {
	return p.do(func() error {
		if !p.stopped {
			return nil
		}
		var firstErr error
		for _, t := range p.sortedThreads() {
			if err := p.release(t, false); err != nil && firstErr == nil {
				firstErr = err
			}
		}
		p.endWindow()
		if firstErr != nil {
			p.detachAll()
			return firstErr
		}
		return nil
	})
}

func (p *Process) endWindow() {
	p.stopped = false
	if !p.pauseStart.IsZero() {
		p.notePause(p.endPause().Sub(p.pauseStart))
		p.pauseStart = time.Time{}
	}
	p.lastWake = time.Time{}
	p.setRealtime(false)
}

// release resumes (PTRACE_CONT) or detaches (PTRACE_DETACH) a stopped
// thread, restoring what we changed and re-delivering its signals.
func (p *Process) release(t *thread, detach bool) error {
	if t.state == running {
		return nil
	}
	// The frame on its stack is dead once the thread runs again.
	t.frame, t.frameErr, t.frameChecked, t.xstate = 0, nil, false, nil
	if t.injected {
		r := restartFixup(t.regs)
		if err := setRegs(t.tid, &r); err != nil && !errors.Is(err, unix.ESRCH) {
			return err
		}
		t.injected = false
	}
	// The data argument delivers a signal only from a signal-delivery-stop or
	// a syscall-stop (where the kernel queues it again, see
	// ptrace_report_syscall); from an event-stop it would be ignored, so
	// those signals are sent again with tgkill.
	sig := 0
	extra := t.sigs
	if len(t.sigs) > 0 && (t.state == stopSignal || t.state == stopSyscall) {
		sig, extra = t.sigs[0], t.sigs[1:]
	}
	req, name := unix.PTRACE_CONT, "PTRACE_CONT"
	switch {
	case detach:
		req, name = unix.PTRACE_DETACH, "PTRACE_DETACH"
	case t.state == stopGroup:
		req, name = unix.PTRACE_LISTEN, "PTRACE_LISTEN"
	}
	waited := p.waitClock.read() // as late as can be: see stoptime.go
	err := ptrace(req, t.tid, 0, uintptr(sig))
	t.state = running
	p.noteResumed(t, waited)
	for _, s := range extra {
		unix.Tgkill(p.pid, t.tid, unix.Signal(s))
	}
	t.sigs = nil
	if err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("%s %d: %w", name, t.tid, err)
	}
	return nil
}

// Detach detaches every thread, from the stopped or the running state,
// restoring registers we changed and re-delivering intercepted signals. It
// is idempotent and always safe to defer.
func (p *Process) Detach() error {
	if !p.inWindowHere() {
		p.mu.Lock()
		if p.detached {
			p.mu.Unlock()
			return nil
		}
		p.mu.Unlock()
	}
	err := p.do(func() error { return p.detachAll() })
	if errors.Is(err, ErrDetached) {
		return nil
	}
	return err
}

// detachAll detaches everything and ends the ptrace goroutine. Threads it
// cannot detach (one that would not stop) are detached by the kernel when
// the goroutine's thread exits.
func (p *Process) detachAll() error {
	defer func() { p.finished = true }()
	var firstErr error
	if !p.stopped && !p.exited && len(p.threads) > 0 {
		// PTRACE_DETACH needs a stopped tracee.
		if p.pauseStart.IsZero() {
			p.pauseStart = time.Now()
		}
		if err := p.stopAll(); err != nil && !errors.Is(err, ErrExited) {
			firstErr = err
		}
	}
	for _, t := range p.sortedThreads() {
		if err := p.release(t, true); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	p.threads = map[int]*thread{}
	p.endWindow()
	if firstErr != nil {
		return fmt.Errorf("detach from process %d: %w", p.pid, firstErr)
	}
	return nil
}

// setRealtime moves the ptrace thread to SCHED_FIFO (with
// SCHED_RESET_ON_FORK, so nothing it might spawn inherits it) or back to
// SCHED_OTHER. Lacking the privilege is not an error.
func (p *Process) setRealtime(on bool) {
	if !p.opt.Realtime || on == p.realtime {
		return
	}
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_NORMAL}
	if on {
		attr.Policy = unix.SCHED_FIFO
		attr.Priority = 1
		attr.Flags = unix.SCHED_FLAG_RESET_ON_FORK
	}
	if err := unix.SchedSetAttr(0, &attr, 0); err == nil {
		p.realtime = on
	}
}

// useMem makes the process's memory file safe to use for the caller:
// inside a Window, where p.mu is held for it, at once; elsewhere under p.mu.
// It fails once the process is detached. The caller calls release when done.
func (p *Process) useMem() (release func(), err error) {
	release = func() {}
	if p.inWindowHere() {
		if p.finished {
			return nil, fmt.Errorf("process %d: %w", p.pid, ErrDetached)
		}
	} else {
		p.mu.Lock()
		release = p.mu.Unlock
	}
	if p.detached {
		release()
		return nil, fmt.Errorf("process %d: %w", p.pid, ErrDetached)
	}
	return release, nil
}

// ReadMem reads len(b) bytes at addr of the process.
func (p *Process) ReadMem(addr uint64, b []byte) error {
	release, err := p.useMem()
	if err != nil {
		return err
	}
	defer release()
	return readMem(p.memTID, p.mem, addr, b)
}

// Segment is one range of a ReadMemv.
type Segment struct {
	Addr uint64
	Buf  []byte
}

// ReadMemv fills every segment's Buf from the process's memory at its Addr,
// with one process_vm_readv(2) per IOV_MAX (1024) segments: the stop
// window's stack copies (one per thread) cost one system call instead of
// one per thread. The call copies the remote ranges in order and stops at
// the first it cannot read in full; from there each segment is read on its
// own (readMem, which falls back to /proc/PID/mem), and the first failure
// is returned.
func (p *Process) ReadMemv(segs []Segment) error {
	if !p.inWindowHere() {
		p.mu.Lock()
		defer p.mu.Unlock()
	}
	if p.detached || p.finished {
		return fmt.Errorf("process %d: %w", p.pid, ErrDetached)
	}
	const iovMax = 1024
	for len(segs) > 0 {
		batch := segs[:min(len(segs), iovMax)]
		segs = segs[len(batch):]
		local := make([]unix.Iovec, 0, len(batch))
		remote := make([]unix.RemoteIovec, 0, len(batch))
		total := 0
		for _, sg := range batch {
			if len(sg.Buf) == 0 {
				continue
			}
			l := unix.Iovec{Base: &sg.Buf[0]}
			l.SetLen(len(sg.Buf))
			local = append(local, l)
			remote = append(remote, unix.RemoteIovec{Base: uintptr(sg.Addr), Len: len(sg.Buf)})
			total += len(sg.Buf)
		}
		n := 0
		if len(local) > 0 {
			var err error
			if n, err = unix.ProcessVMReadv(p.memTID, local, remote, 0); err != nil {
				n = 0
			}
		}
		if n == total {
			continue
		}
		for _, sg := range batch {
			if n >= len(sg.Buf) {
				n -= len(sg.Buf)
				continue
			}
			n = 0
			if err := readMem(p.memTID, p.mem, sg.Addr, sg.Buf); err != nil {
				return err
			}
		}
	}
	return nil
}

// WriteMem writes b at addr of the process. Writes go through
// /proc/PID/mem, which the kernel performs with FOLL_FORCE (proc(5)): they
// succeed on read-only mappings such as program text, breaking
// copy-on-write for private file mappings, as a debugger's breakpoints do.
func (p *Process) WriteMem(addr uint64, b []byte) error {
	release, err := p.useMem()
	if err != nil {
		return err
	}
	defer release()
	return writeMem(p.mem, addr, b)
}

func writeMem(f *os.File, addr uint64, b []byte) error {
	for done := 0; done < len(b); {
		n, err := unix.Pwrite(int(f.Fd()), b[done:], int64(addr)+int64(done))
		if err != nil {
			return fmt.Errorf("write %d bytes at %#x: %w", len(b), addr, err)
		}
		if n == 0 {
			return fmt.Errorf("write %d bytes at %#x: %w", len(b), addr, io.ErrShortWrite)
		}
		done += n
	}
	return nil
}

// ReadMem reads len(b) bytes at addr of process pid without attaching to it
// (process_vm_readv(2), falling back to /proc/PID/mem).
func ReadMem(pid int, addr uint64, b []byte) error {
	// The common case first: the main thread is alive, so the process's
	// pid reaches its memory. Only when that fails (the leader called
	// pthread_exit and has no mm) look for a live thread.
	if err := readMem(pid, nil, addr, b); err == nil || !errors.Is(err, ErrNoProcess) {
		return err
	}
	return readMem(liveTask(pid), nil, addr, b)
}

func readMem(pid int, mem *os.File, addr uint64, b []byte) error {
	if len(b) == 0 {
		return nil
	}
	local := []unix.Iovec{{Base: &b[0]}}
	local[0].SetLen(len(b))
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(b)}}
	n, err := unix.ProcessVMReadv(pid, local, remote, 0)
	if err == nil && n == len(b) {
		return nil
	}
	if errors.Is(err, unix.ESRCH) && mem == nil {
		return fmt.Errorf("read memory of process %d: process %d does not exist: %w", pid, pid, ErrNoProcess)
	}
	// With mem, ESRCH may only mean that the thread whose tid we named
	// exited (a zombie leader's process, whose other threads come and go):
	// the open file still reaches the address space (see openTaskMem).
	// process_vm_readv stops at the first page that is not readable by the
	// process itself (PROT_NONE, execute-only); /proc/PID/mem reads with
	// FOLL_FORCE.
	if n < 0 {
		n = 0
	}
	if mem == nil {
		f, oerr := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
		if oerr != nil {
			return fmt.Errorf("read %d bytes at %#x of process %d: %w", len(b), addr, pid, openErr(pid, oerr))
		}
		defer f.Close()
		mem = f
	}
	for n < len(b) {
		m, perr := unix.Pread(int(mem.Fd()), b[n:], int64(addr)+int64(n))
		if perr != nil {
			return fmt.Errorf("read %d bytes at %#x of process %d: %w", len(b), addr, pid, perr)
		}
		if m == 0 {
			return fmt.Errorf("read %d bytes at %#x of process %d: %w", len(b), addr, pid, io.ErrUnexpectedEOF)
		}
		n += m
	}
	return nil
}
