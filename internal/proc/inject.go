//go:build linux

package proc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// System call injection.
//
// We never write code into the target. A `syscall` instruction already
// present in its executable memory (the [vdso] always has one, in the
// fallback paths of clock_gettime & co.) is borrowed: a stopped thread gets
// rip pointing at it and the system call number and arguments in the
// registers of the kernel calling convention, runs exactly that one
// instruction under PTRACE_SYSCALL (entry stop, then exit stop), and gets its
// registers back. See prepareSyscall and restartFixup for the
// register-level details.

// Syscall runs system call nr with args on a stopped thread of the process
// and returns its result. A result in [-4095, -1] is returned as an error
// wrapping the unix.Errno. The thread is chosen among the stopped threads,
// preferring one that is not inside a system call.
func (p *Process) Syscall(nr uint64, args ...uint64) (uint64, error) {
	var ret uint64
	err := p.do(func() error {
		return p.onInjectionThread(func(t *thread) (err error) {
			ret, err = p.inject(t, nr, args)
			return err
		})
	})
	return ret, err
}

// onInjectionThread runs call on the thread injectionThread chooses. If that
// thread is found to have exited before the call could run (errNotRun), it
// runs the call on another one: only then, since a call whose thread exited
// after entering it may have taken effect (ErrThreadExited; the caller must
// check and undo).
//
// A thread in a ptrace-stop leaves it only when we resume it or when it is
// killed (TASK_TRACED is woken only by SIGKILL), and a SIGKILL kills the
// whole process; the one other way is another thread's execve, which kills
// every other thread (de_thread, fs/exec.c) and replaces the program. So
// before running the call again, check that the process is alive and still
// has the address space we attached to; else it has exited (ErrExited).
func (p *Process) onInjectionThread(call func(t *thread) error) error {
	deadline := time.Now().Add(p.opt.Timeout)
	for {
		t, err := p.injectionThread()
		if err != nil {
			return err
		}
		err = call(t)
		if !errors.Is(err, errNotRun) {
			return err
		}
		if err := p.replaceInjectionThread(deadline); err != nil {
			if !p.finished {
				p.detachAll()
			}
			return err
		}
	}
}

// replaceInjectionThread makes another stopped thread available after the
// one chosen for a call exited before running it (see onInjectionThread).
func (p *Process) replaceInjectionThread(deadline time.Time) error {
	if !p.alive() || !p.sameAddressSpace() {
		p.exited = true
		return fmt.Errorf("process %d exited or executed another program while stopped: %w", p.pid, ErrExited)
	}
	if time.Now().After(deadline) {
		return fmt.Errorf("process %d: the threads chosen for a system call keep exiting: %w", p.pid, ErrTimeout)
	}
	if len(p.threads) > 0 {
		return nil // injectionThread chooses among the other stopped threads
	}
	// With OneThread, seize and stop another.
	return p.stopAll()
}

// sameAddressSpace reports whether our memory file still reaches the
// address space we attached to: after an execve its old mm has no users
// left, and reads through a file opened on it return nothing (mem_rw,
// fs/proc/base.c).
func (p *Process) sameAddressSpace() bool {
	if p.gad.syscall == 0 {
		return true // nothing injected yet, so nothing known to compare
	}
	var b [1]byte
	n, err := unix.Pread(int(p.mem.Fd()), b[:], int64(p.gad.syscall))
	return err == nil && n == 1
}

// syscallOn is Syscall on a given thread (tests).
func (p *Process) syscallOn(tid int, nr uint64, args ...uint64) (uint64, error) {
	var ret uint64
	err := p.do(func() error {
		if !p.stopped {
			return fmt.Errorf("system call %d: %w", nr, ErrNotStopped)
		}
		t := p.threads[tid]
		if t == nil {
			return fmt.Errorf("system call %d: thread %d: %w", nr, tid, ErrNoProcess)
		}
		var err error
		ret, err = p.inject(t, nr, args)
		return err
	})
	return ret, err
}

// recoverWait bounds the wait for a thread that did not finish an injected
// call in time (see recoverThread).
func recoverWait(timeout time.Duration) time.Duration { return max(10*timeout, 10*time.Second) }

// injectionThread picks the thread to run an injected system call on.
// Preferred: a thread stopped outside any system call in an interrupt stop
// with no signal pending, since its registers are those of plain user code.
// A thread blocked in a system call works too (see restartFixup); one whose
// call resumes through restart_syscall comes after those (it would see EINTR
// if the tracer died, see restartBlock). Threads in a signal-delivery-stop or
// a group-stop are taken last. Among those, the first whose stack can carry a
// self-restoring frame (see lend) is taken; if none can, the best one.
func (p *Process) injectionThread() (*thread, error) {
	cands, err := p.injectionCandidates()
	if err != nil {
		return nil, err
	}
	for _, t := range cands {
		if _, self := p.lend(t); self {
			return t, nil
		}
	}
	return cands[0], nil
}

// injectionCandidates returns the stopped threads, best first (see
// injectionThread), or only the forced one (injectTID, tests).
func (p *Process) injectionCandidates() ([]*thread, error) {
	if !p.stopped {
		return nil, fmt.Errorf("process %d: %w", p.pid, ErrNotStopped)
	}
	if p.injectTID != 0 {
		if t := p.threads[p.injectTID]; t != nil {
			return []*thread{t}, nil
		}
	}
	ts := p.sortedThreads()
	score := func(t *thread) int {
		s := 0
		switch t.state {
		case stopEvent, stopSyscall:
			s = 2
		case stopSignal:
			s = 1
		}
		if len(t.sigs) == 0 {
			s += 2
		}
		if !t.regs.inSyscall() {
			s += 4
		}
		if t.regs.restartBlock() {
			s -= 3
		}
		if t.tid == p.pid {
			s++ // the main thread: its stack is the largest
		}
		return s
	}
	sort.SliceStable(ts, func(i, j int) bool { return score(ts[i]) > score(ts[j]) })
	if len(ts) == 0 {
		return nil, fmt.Errorf("process %d: no stopped thread: %w", p.pid, ErrExited)
	}
	return ts, nil
}

// lend returns the stack pointer code injected on stopped thread t runs
// with, and whether that code is self-restoring: t's stack then carries an
// rt_sigframe (written once per stop, see writeFrame) whose pretcode is the
// target's __restore_rt and which holds t's own registers, signal mask and
// extended state, and injected code runs with rsp at that frame and returns
// into it. If the tracer dies at any instant while t runs injected code, the
// kernel detaches t and lets it run: it finishes the system call (or the
// function), returns into __restore_rt, and rt_sigreturn gives it back
// everything it had. Without a frame (see writeFrame for why one cannot be
// written), injected code runs on t's own stack below the red zone as
// before, and a tracer death at the wrong instant leaves t running with
// borrowed registers; NotSelfRestoring says why.
func (p *Process) lend(t *thread) (uint64, bool) {
	if selfRestoreOff && t.frameErr == nil {
		t.frameErr = errors.New("self-restoring frames disabled (test)")
	}
	if t.frame == 0 && t.frameErr == nil {
		t.frame, t.frameErr = p.writeFrame(t)
		if t.frameErr != nil {
			t.frame = 0
		}
		t.frameChecked = false
	}
	if t.frame != 0 && !t.frameChecked {
		// rt_sigreturn from the restorer must pass the thread's seccomp
		// filters, or the frame would never be used (an ERRNO filter would
		// even leave the thread running on after a failed rt_sigreturn).
		if err := p.seccompCheckAt(t, nrRtSigreturn, nil, p.gad.restorer+restorerSyscallEnd); err != nil {
			t.frame, t.frameErr = 0, fmt.Errorf("rt_sigreturn not allowed: %w", err)
		}
		t.frameChecked = true
	}
	if t.frame != 0 {
		return t.frame, true
	}
	return t.regs.SP(), false
}

// selfRestoreOff disables self-restoring frames: set only by tests, to show
// what the kill tests find without them.
var selfRestoreOff bool

// NotSelfRestoring returns why the last injected system call or function
// call ran without a self-restoring frame, or "" if it had one (or none ran).
func (p *Process) NotSelfRestoring() string {
	var s string
	p.do(func() error {
		s = p.fallback
		return nil
	})
	return s
}

// gadgets are the instruction sequences injected calls borrow from the
// target's executable memory (found once per Process, validated before each
// use): a bare `syscall` (preferably in the [vdso]), `syscall; ret`, and
// `mov $15, %rax; syscall` (__restore_rt).
type gadgets struct {
	syscall, syscallRet, restorer uint64
	scanned                       bool
	fromCache                     bool // found through gadgetCache, not yet validated
}

// gadgets returns the process's gadgets, scanning its executable memory the
// first time and again if one no longer holds its bytes (a library was
// unloaded).
func (p *Process) gadgets() (gadgets, error) {
	if p.gad.scanned {
		ok := true
		for _, c := range []struct {
			addr uint64
			pat  []byte
		}{{p.gad.syscall, syscallInsn}, {p.gad.syscallRet, syscallRetInsn}, {p.gad.restorer, restorerInsn}} {
			if c.addr == 0 {
				continue
			}
			b := make([]byte, len(c.pat))
			if err := readMem(p.memTID, p.mem, c.addr, b); err != nil || !bytes.Equal(b, c.pat) {
				ok = false
			}
		}
		if ok {
			return p.gad, nil
		}
	}
	return p.scanGadgets()
}

// readMaps reads the process's mappings (through a live thread: a zombie
// main thread has an empty maps file). A thread we hold stopped cannot exit
// meanwhile; any other may (then its file is gone or empty): choose again.
func (p *Process) readMaps() error {
	var data []byte
	var err error
	for try := 0; try < 10 && len(data) == 0; try++ {
		tid := liveTask(p.pid)
		for _, t := range p.sortedThreads() {
			if t.state != running && t.tid != p.pid {
				tid = t.tid
				break
			}
		}
		data, err = os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/maps", p.pid, tid))
	}
	if err != nil {
		return fmt.Errorf("read /proc/%d/maps: %w", p.pid, err)
	}
	ms, err := parseMaps(data)
	if err != nil {
		return fmt.Errorf("process %d: %w", p.pid, err)
	}
	p.maps = ms
	return nil
}

func (p *Process) scanGadgets() (gadgets, error) {
	p.gad = gadgets{}
	if err := p.readMaps(); err != nil {
		return p.gad, err
	}
	loadGadgetStore(p.opt.CacheDir) // gadgetstore.go
	g := p.findGadgets(true)
	if !p.stopped {
		// Not while threads are stopped (a gadget gone since Attach's scan,
		// say): writing the state directory would lengthen the stop, and
		// the next session's scan at its Attach saves what it learns.
		saveGadgetStore(p.opt.CacheDir, p.maps)
	}
	if g.fromCache && (!p.gadgetsHold(g) || g.missing()) {
		// The process's memory differs from what the cache learnt from
		// another process mapping the same file (its code was written to),
		// or the cache says a gadget is nowhere (which the process that
		// taught it may have arranged by writing to its own code): look at
		// this process's own bytes.
		g = p.findGadgets(false)
	}
	g.fromCache = false
	p.gad = g
	return g, nil
}

// missing reports whether a gadget of the architecture was not found.
func (g gadgets) missing() bool {
	for i, a := range [numGadgets]uint64{g.syscall, g.syscallRet, g.restorer} {
		if a == 0 && len(gadgetPatterns()[i]) > 0 {
			return true
		}
	}
	return false
}

// findGadgets searches the executable mappings, [vdso] first, then the
// others in order, for each gadget, stopping at the first of each. With
// cached, what gadgetCache knows of a mapping's file is used instead of
// reading it (the caller validates the result: gadgetsHold), and what is
// read is remembered there.
func (p *Process) findGadgets(cached bool) gadgets {
	var cands []mapping
	for _, m := range p.maps {
		if strings.Contains(m.Perms, "r") && strings.Contains(m.Perms, "x") {
			if m.Path == "[vdso]" {
				cands = append([]mapping{m}, cands...)
			} else if m.Path != "[vsyscall]" {
				cands = append(cands, m)
			}
		}
	}
	g := gadgets{scanned: true}
	dsts := [numGadgets]*uint64{&g.syscall, &g.syscallRet, &g.restorer}
	var buf []byte
	for _, m := range cands {
		var want [numGadgets]bool
		missing := false
		for i, pat := range gadgetPatterns() {
			want[i] = len(pat) > 0 && *dsts[i] == 0
			missing = missing || want[i]
		}
		if !missing {
			break
		}
		key := gadgetKey(m)
		var offs [numGadgets]int64
		if e, ok := gadgetCache.get(key); cached && ok && e.covers(want) && e.fits(m.End-m.Start) {
			offs, g.fromCache = e.offs, true
		} else {
			// No bigger than the mapping: the one usually read here is a
			// patch region of a few pages (never cached, see gadgetKey),
			// and a 1 MiB buffer per session was most of a fleet's
			// allocations.
			if need := min(gadgetChunk+gadgetOverlap, m.End-m.Start); uint64(len(buf)) < need {
				buf = make([]byte, need)
			}
			var ok bool
			// A process found to differ from the cache (cached false)
			// teaches it nothing: its bytes are its own.
			if offs, ok = p.scanMapping(m, want, buf); ok && cached {
				gadgetCache.put(key, want, offs)
			}
		}
		for i := range dsts {
			if want[i] && offs[i] >= 0 {
				*dsts[i] = m.Start + uint64(offs[i])
			}
		}
	}
	return g
}

// scanMapping reads mapping m of the process and returns, for each wanted
// gadget, its first offset in m (-1: not there). ok is false when m could
// not be read to its end.
func (p *Process) scanMapping(m mapping, want [numGadgets]bool, buf []byte) (offs [numGadgets]int64, ok bool) {
	gadgetScans.Add(1)
	pats := gadgetPatterns()
	left := 0
	for i := range offs {
		offs[i] = -1
		if want[i] {
			left++
		}
	}
	for a := m.Start; a < m.End && left > 0; a += gadgetChunk {
		b := buf[:min(uint64(len(buf)), m.End-a)]
		if err := readMem(p.memTID, p.mem, a, b); err != nil {
			return offs, false
		}
		for i, pat := range pats {
			if !want[i] || offs[i] >= 0 {
				continue
			}
			if k := bytes.Index(b, pat); k >= 0 {
				offs[i] = int64(a - m.Start + uint64(k))
				left--
			}
		}
	}
	return offs, true
}

// gadgetsHold reports whether each gadget of g holds its bytes in the
// process.
func (p *Process) gadgetsHold(g gadgets) bool {
	for i, a := range [numGadgets]uint64{g.syscall, g.syscallRet, g.restorer} {
		if a == 0 {
			continue
		}
		pat := gadgetPatterns()[i]
		b := make([]byte, len(pat))
		if err := readMem(p.memTID, p.mem, a, b); err != nil || !bytes.Equal(b, pat) {
			return false
		}
	}
	return true
}

// syscallAddr returns the address of a `syscall` instruction in the
// target's executable memory, preferring the [vdso].
func (p *Process) syscallAddr() (uint64, error) {
	g, err := p.gadgets()
	if err != nil {
		return 0, err
	}
	if g.syscall == 0 {
		return 0, fmt.Errorf("process %d: no system call instruction in executable memory", p.pid)
	}
	return g.syscall, nil
}

// inject runs one system call on stopped thread t and restores its
// registers. On a failure other than the call's own -errno, the process is
// detached before inject returns (every error path leaves the target
// running).
func (p *Process) inject(t *thread, nr uint64, args []uint64) (uint64, error) {
	return p.injectThen(t, nr, args, nil)
}

// injectThen is inject; undo, if not nil, runs after the call whatever its
// outcome and before a detach forced by a failure (so that memory we
// changed is restored while the threads are still stopped).
func (p *Process) injectThen(t *thread, nr uint64, args []uint64, undo func() error) (uint64, error) {
	if !injectionSupported {
		_, err := prepareSyscall(t.regs, 0, nr, args)
		return 0, err
	}
	if err := p.seccompCheck(t, nr, args); err != nil { // not injected: nothing to undo but undo's own
		return 0, errors.Join(err, runUndo(undo))
	}
	ret, err := p.inject1(t, nr, args)
	if undo != nil {
		if uerr := undo(); uerr != nil && err == nil {
			err = uerr
		}
	}
	if err != nil {
		// A call that provably did not run leaves the process stopped, to be
		// run on another thread (onInjectionThread).
		if !p.finished && !errors.Is(err, errNotRun) {
			p.detachAll()
		}
		return 0, err
	}
	if e := int64(ret); e < 0 && e >= -4095 {
		return ret, fmt.Errorf("system call %d in process %d: %w", nr, p.pid, unix.Errno(-e))
	}
	return ret, nil
}

func (p *Process) inject1(t *thread, nr uint64, args []uint64) (uint64, error) {
	sp, self := p.lend(t)
	var pc uint64
	var err error
	if self {
		// `syscall; ret` with rsp at the frame: the `ret` goes to
		// __restore_rt, only ever taken if the tracer is gone (see lend).
		pc = p.gad.syscallRet
		p.fallback = ""
	} else {
		pc, err = p.syscallAddr()
		if err != nil {
			return 0, err
		}
		p.fallback = fmt.Sprintf("thread %d: %v", t.tid, t.frameErr)
	}
	r, err := prepareSyscall(t.regs, pc, nr, args)
	if err != nil {
		return 0, err
	}
	if self {
		r.setSP(sp)
	}
	if err := setRegs(t.tid, &r); err != nil {
		return 0, p.notRunErr(t, fmt.Sprint("system call ", nr), err)
	}
	// From here the thread runs our registers; restore them whatever happens.
	t.injected = true
	stall("set", t.tid)
	// PTRACE_SYSCALL with data 0: a signal-delivery-stop the thread was in is
	// left without delivering the signal; we owe it (t.sigs) and re-deliver it
	// at Resume/Detach.
	if err := ptrace(unix.PTRACE_SYSCALL, t.tid, 0, 0); err != nil {
		return 0, p.notRunErr(t, fmt.Sprint("system call ", nr), fmt.Errorf("PTRACE_SYSCALL %d: %w", t.tid, err))
	}
	t.state = running
	deadline := time.Now().Add(p.opt.Timeout)
	entered := false
	var ret uint64
	for done := false; !done; {
		ev, sig, err := p.waitStop(t, deadline)
		if err != nil {
			p.recoverThread(t)
			return 0, err
		}
		switch ev {
		case evGone:
			// Gone before its syscall-entry-stop, the thread never ran the
			// call: that stop comes before the call is dispatched, and a
			// thread killed in it skips the call (syscall_trace_enter
			// returns -1 when ptrace_report_syscall_entry finds a fatal
			// signal pending, kernel/entry/common.c).
			if !entered {
				return 0, p.notRunErr(t, fmt.Sprint("system call ", nr), unix.ESRCH)
			}
			return 0, p.exitedInCall(t, nr)
		case evSyscall:
			cur, err := getRegs(t.tid)
			if err != nil {
				if !entered {
					return 0, p.notRunErr(t, fmt.Sprint("system call ", nr), err)
				}
				return 0, p.threadErr(err)
			}
			if !entered {
				if !cur.isSyscallEntry(nr) {
					t.state = stopSyscall
					p.restore(t)
					return 0, fmt.Errorf("system call %d on thread %d: unexpected registers at syscall-entry-stop", nr, t.tid)
				}
				entered = true
				stall("entry", t.tid)
			} else {
				ret = cur.syscallResult()
				done = true
				stall("exit", t.tid)
				continue
			}
		case evSignal:
			// A signal arrived before the thread reached our instruction
			// (signals are delivered on the way back to user mode). Keep it
			// for later and go on without it.
			t.sigs = append(t.sigs, sig)
		}
		// Event stops (a pending PTRACE_INTERRUPT, a group-stop) and the
		// entry stop: go on to the next stop.
		if err := ptrace(unix.PTRACE_SYSCALL, t.tid, 0, 0); err != nil {
			return 0, p.threadErr(fmt.Errorf("PTRACE_SYSCALL %d: %w", t.tid, err))
		}
	}
	t.state = stopSyscall
	if err := p.restore(t); err != nil {
		return 0, err
	}
	stall("restored", t.tid)
	return ret, nil
}

// restore puts back the registers the thread had when it was stopped. The
// restart fixup is applied only when it is resumed (release), so that while
// the process is stopped its registers read exactly as before.
func (p *Process) restore(t *thread) error {
	if err := setRegs(t.tid, &t.regs); err != nil {
		return p.threadErr(err)
	}
	return nil
}

// recoverThread brings a thread that did not finish an injected call back
// to a stop, so its registers can be restored before detaching.
//
// It waits far longer than the call's own timeout, because letting the
// thread go with the call's registers does not cancel the call: detached
// (when our thread exits, the kernel detaches every tracee, exit_ptrace),
// it performs the call whenever it is next scheduled, after the caller has
// concluded that it failed and moved on (the self-restoring frame then gives
// the thread its registers back, but the call's effect stays). A munmap so
// delayed unmaps whatever the next command mapped at that address: on a
// loaded machine this killed patch-ready targets (their new region, mapped
// where a timed-out recover had tried to free the old one, vanished under
// the threads running it). A thread that is merely not scheduled is the
// usual reason for the timeout; the PTRACE_INTERRUPT sent here makes it stop
// as soon as it runs, before it returns to user mode if it has not yet
// (get_signal handles the pending JOBCTL_TRAP_STOP first, kernel/signal.c),
// so the call does not run. A thread that does not stop even then is left to
// the kernel's detach.
func (p *Process) recoverThread(t *thread) {
	ptrace(unix.PTRACE_INTERRUPT, t.tid, 0, 0)
	ev, sig, err := p.waitStop(t, time.Now().Add(recoverWait(p.opt.Timeout)))
	if err != nil || ev == evGone {
		return // left to the kernel's detach at thread exit
	}
	if ev == evSignal {
		t.sigs = append(t.sigs, sig)
		t.state = stopSignal
	} else {
		t.state = stopEvent
	}
	p.restore(t)
}

// notRunErr is the error of a call that did not run because thread t could
// not be set up or resumed: errNotRun when t has exited but the process has
// not, ErrExited when the process has.
func (p *Process) notRunErr(t *thread, what string, err error) error {
	if !errors.Is(err, unix.ESRCH) {
		return err
	}
	if !p.alive() {
		return fmt.Errorf("process %d: %w (%v)", p.pid, ErrExited, err)
	}
	delete(p.threads, t.tid)
	return fmt.Errorf("%s on thread %d: %w", what, t.tid, errNotRun)
}

// exitedInCall is the error of a call whose thread exited after entering it.
func (p *Process) exitedInCall(t *thread, nr uint64) error {
	if !p.alive() {
		return fmt.Errorf("system call %d: process %d: %w", nr, p.pid, ErrExited)
	}
	return fmt.Errorf("system call %d: thread %d of process %d exited during the call, whose effect is unknown: %w",
		nr, t.tid, p.pid, ErrThreadExited)
}

func (p *Process) threadErr(err error) error {
	if errors.Is(err, unix.ESRCH) && !p.alive() {
		return fmt.Errorf("process %d: %w (%v)", p.pid, ErrExited, err)
	}
	return err
}

// waitStop polls thread t until it reports a stop or exit, or deadline.
func (p *Process) waitStop(t *thread, deadline time.Time) (stopEv, int, error) {
	pace := p.newPacer()
	for {
		ev, sig, err := p.poll(t)
		if err != nil || ev != evNone {
			return ev, sig, err
		}
		if time.Now().After(deadline) {
			if !p.alive() {
				return evNone, 0, fmt.Errorf("process %d: %w", p.pid, ErrExited)
			}
			return evNone, 0, fmt.Errorf("thread %d of process %d: %w", t.tid, p.pid, ErrTimeout)
		}
		pace.wait()
	}
}

// Mmap maps memory in the process (mmap(2)) and returns its address.
func (p *Process) Mmap(addr, length uint64, prot, flags int, fd int, off uint64) (uint64, error) {
	ret, err := p.Syscall(unix.SYS_MMAP, addr, length, uint64(prot), uint64(flags), uint64(int64(fd)), off)
	if err != nil {
		return 0, fmt.Errorf("mmap(%#x, %#x) in process %d: %w", addr, length, p.pid, err)
	}
	return ret, nil
}

// Munmap unmaps memory in the process (munmap(2)).
func (p *Process) Munmap(addr, length uint64) error {
	if _, err := p.Syscall(unix.SYS_MUNMAP, addr, length); err != nil {
		return fmt.Errorf("munmap(%#x, %#x) in process %d: %w", addr, length, p.pid, err)
	}
	return nil
}

// Mprotect changes the protection of memory in the process (mprotect(2)).
func (p *Process) Mprotect(addr, length uint64, prot int) error {
	if _, err := p.Syscall(unix.SYS_MPROTECT, addr, length, uint64(prot)); err != nil {
		return fmt.Errorf("mprotect(%#x, %#x, %#x) in process %d: %w", addr, length, prot, p.pid, err)
	}
	return nil
}

// Ftruncate sets the size of file descriptor fd of the process (ftruncate(2)).
func (p *Process) Ftruncate(fd int, size uint64) error {
	if _, err := p.Syscall(unix.SYS_FTRUNCATE, uint64(fd), size); err != nil {
		return fmt.Errorf("ftruncate(%d, %d) in process %d: %w", fd, size, p.pid, err)
	}
	return nil
}

// Close closes file descriptor fd of the process (close(2)).
func (p *Process) Close(fd int) error {
	if _, err := p.Syscall(unix.SYS_CLOSE, uint64(fd)); err != nil {
		return fmt.Errorf("close(%d) in process %d: %w", fd, p.pid, err)
	}
	return nil
}

// mfdNameMax is MFD_NAME_MAX_LEN (mm/memfd.c): 249 bytes without the NUL.
const mfdNameMax = 249

// MemfdCreate creates an anonymous file in the process (memfd_create(2))
// and returns its descriptor. The name is written temporarily on the
// injecting thread's stack, below its red zone (the psABI allows code to
// use the 128 bytes below rsp without moving rsp), and the bytes it covered
// are restored afterwards. With a self-restoring frame the name lies below
// the frame, which is below the red zone (see lend).
func (p *Process) MemfdCreate(name string, flags int) (int, error) {
	if len(name) > mfdNameMax || strings.IndexByte(name, 0) >= 0 {
		return -1, fmt.Errorf("memfd_create %q: name longer than %d bytes or contains NUL", name, mfdNameMax)
	}
	fd := -1
	err := p.do(func() error {
		return p.onInjectionThread(func(t *thread) error { return p.memfdCreate(t, name, flags, &fd) })
	})
	return fd, err
}

// memfdCreate is MemfdCreate on thread t.
func (p *Process) memfdCreate(t *thread, name string, flags int, fd *int) error {
	scratch := make([]byte, len(name)+1)
	copy(scratch, name)
	// Below the stack pointer the call runs with (and its red zone):
	// never over the self-restoring frame.
	sp, _ := p.lend(t)
	addr := (sp - redZone - uint64(len(scratch))) &^ 15
	saved := make([]byte, len(scratch))
	if err := readMem(p.memTID, p.mem, addr, saved); err != nil {
		return fmt.Errorf("memfd_create: read scratch stack of thread %d: %w", t.tid, err)
	}
	if err := writeMem(p.mem, addr, scratch); err != nil {
		return fmt.Errorf("memfd_create: write scratch stack of thread %d: %w", t.tid, err)
	}
	ret, ierr := p.injectThen(t, unix.SYS_MEMFD_CREATE, []uint64{addr, uint64(flags)}, func() error {
		if err := writeMem(p.mem, addr, saved); err != nil {
			return fmt.Errorf("memfd_create: restore scratch stack of thread %d: %w", t.tid, err)
		}
		return nil
	})
	if ierr != nil {
		return fmt.Errorf("memfd_create(%q) in process %d: %w", name, p.pid, ierr)
	}
	*fd = int(ret)
	return nil
}
