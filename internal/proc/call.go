//go:build linux && amd64

package proc

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// callScratch is the stack space left below the interrupted code's red zone
// before the injected call's frame, so that nothing the thread was using is
// overwritten.
const callScratch = 256

// Call runs the function at fn inside the process, on a stopped thread, with
// up to six integer arguments, and returns its rax. The thread's registers
// are restored exactly afterwards and it stays stopped.
//
// The call follows the x86-64 psABI (§3.2): arguments in rdi, rsi, rdx, rcx,
// r8, r9; al = 0 (no vector registers used by a variadic callee); at the
// callee's entry rsp+8 is 16-byte aligned. The new frame starts callScratch
// bytes below the red zone (the 128 bytes below rsp that leaf code may use,
// §3.2.2). The return address pushed is 0: the callee's final `ret` jumps to
// address 0 and faults, and the SIGSEGV signal-delivery-stop with rip = 0
// tells us it returned. That signal is never delivered (the thread is resumed
// later with signal 0 from that stop, see release).
//
// orig_rax is set to -1, as for injected system calls (prepareSyscall): a
// thread stopped inside a blocking system call must not have the kernel's
// restart logic rewrite our rip; the call is then restarted when the thread is
// resumed (restartFixup, applied because the thread is marked injected).
//
// The function runs with the other threads stopped: it must not wait for a
// lock another thread holds. A call that does not return within the timeout
// is interrupted and the thread's registers restored (the function's
// side effects up to then remain). Unlike Syscall, a failed call leaves the
// process attached and stopped, so that the caller can undo what it did
// before resuming it.
func (p *Process) Call(fn uint64, args ...uint64) (uint64, error) {
	if len(args) > 6 {
		return 0, fmt.Errorf("call %#x: %d arguments, at most 6", fn, len(args))
	}
	var ret uint64
	err := p.do(func() error {
		return p.onInjectionThread(func(t *thread) (err error) {
			ret, err = p.call(t, fn, args)
			return err
		})
	})
	return ret, err
}

// CallVoid runs the function at fn, whose result is not needed, inside the
// process on a stopped thread for which safe returns nil, and restores the
// thread's registers and extended (FPU/SSE/AVX) state exactly afterwards.
// safe (nil: every thread) sees each candidate in injectionThread's order and
// runs on the ptrace thread with the Process locked: it may read memory with
// the package-level ReadMem, not with the Process's methods. It is how a
// caller refuses threads that may hold a lock the callee takes (a thread
// stopped inside malloc, the unwinder or the dynamic loader would deadlock
// on itself while the others are stopped). If no thread is safe, the error
// wraps ErrNoSafeThread and names each thread and why; in a OneThread
// session the thread is first let run for a moment (100 µs doubling to 20
// ms) and checked again, until the timeout.
//
// The call is self-restoring where the thread's stack can carry the frame
// (see lend): the callee starts with rsp at the rt_sigframe, whose pretcode
// is its return address, so it returns into __restore_rt. That rt_sigreturn
// is never let run while we trace the thread (it would set
// restart_block.fn = do_no_restart_syscall, turning a restart_syscall of the
// interrupted code into EINTR): its syscall-entry-stop tells us the callee
// returned, and we skip it (orig_rax = -1) and put back the registers and the
// XSAVE area ourselves. If the tracer dies while the callee runs, the thread
// finishes it and rt_sigreturn restores it from the frame. The callee's
// return value is lost in __restore_rt's `mov $15, %rax`, hence CallVoid.
//
// Without a frame, it is Call (returning to address 0, see there), plus the
// restore of the extended state, which the callee may clobber (the psABI
// makes every vector register caller-saved).
func (p *Process) CallVoid(fn uint64, safe func(Thread) error, args ...uint64) error {
	if len(args) > 6 {
		return fmt.Errorf("call %#x: %d arguments, at most 6", fn, len(args))
	}
	return p.do(func() error {
		deadline := time.Now().Add(p.opt.Timeout)
		backoff := 100 * time.Microsecond
		for {
			err := p.callVoid1(fn, safe, args)
			if !errors.Is(err, ErrNoSafeThread) || !p.opt.OneThread || time.Now().After(deadline) {
				return err
			}
			// The one thread of a OneThread session may be inside the
			// callee's lock now and out of it a moment later: let it run.
			if err := p.letRun(backoff); err != nil {
				return err
			}
			backoff = min(2*backoff, 20*time.Millisecond)
		}
	})
}

// letRun resumes the stopped threads for d and stops them again (within the
// same stop window, as far as callers are concerned).
func (p *Process) letRun(d time.Duration) error {
	for _, t := range p.sortedThreads() {
		if err := p.release(t, false); err != nil {
			p.detachAll()
			return err
		}
	}
	nap(d)
	if err := p.stopAll(); err != nil {
		p.detachAll()
		return err
	}
	// The threads ran their own code: what was read of them in this window
	// (windowStatus, seccompOf's state) holds no more.
	p.window++
	return nil
}

func (p *Process) callVoid1(fn uint64, safe func(Thread) error, args []uint64) error {
	{
		cands, err := p.injectionCandidates()
		if err != nil {
			return err
		}
		var first *thread
		var why []string
		for _, t := range cands {
			if safe != nil {
				if err := safe(Thread{TID: t.tid, Regs: t.regs}); err != nil {
					why = append(why, fmt.Sprintf("thread %d %v", t.tid, err))
					continue
				}
			}
			if first == nil {
				first = t
			}
			if _, self := p.lend(t); self {
				first = t
				break
			}
		}
		if first == nil {
			return fmt.Errorf("call %#x: %w: %s", fn, ErrNoSafeThread, strings.Join(why, "; "))
		}
		// callRestoring and call check the thread's seccomp filters
		// themselves, before setting any register.
		if _, self := p.lend(first); self {
			p.fallback = ""
			return p.callRestoring(first, fn, args)
		}
		p.fallback = fmt.Sprintf("thread %d: %v", first.tid, first.frameErr)
		xs, xerr := getXstate(first.tid)
		_, err = p.call(first, fn, args)
		if xerr == nil {
			if serr := setXstate(first.tid, xs); serr != nil && err == nil {
				err = p.threadErr(serr)
			}
		}
		return err
	}
}

// callRestoring runs fn on t with rsp at t's frame (see CallVoid), under
// PTRACE_SYSCALL so that the callee's return shows as the syscall-entry-stop
// of rt_sigreturn at the restorer.
func (p *Process) callRestoring(t *thread, fn uint64, args []uint64) error {
	if err := p.seccompCheckCall(t, fn); err != nil {
		return fmt.Errorf("call %#x: %w", fn, err)
	}
	r := callRegs(t, fn, args)
	r.Rsp = t.frame // 8 mod 16: rsp+8 is 16-byte aligned at entry (psABI §3.2.2)
	if err := setRegs(t.tid, &r); err != nil {
		return p.threadErr(err)
	}
	t.injected = true
	back := p.gad.restorer + restorerSyscallEnd
	deadline := time.Now().Add(p.opt.Timeout)
	for stop := 0; ; stop++ {
		if err := ptrace(unix.PTRACE_SYSCALL, t.tid, 0, 0); err != nil {
			return p.threadErr(fmt.Errorf("PTRACE_SYSCALL %d: %w", t.tid, err))
		}
		t.state = running
		if stop == 0 {
			stall("call", t.tid)
		}
		ev, sig, err := p.waitStop(t, deadline)
		if err != nil {
			p.recoverThread(t)
			setXstate(t.tid, t.xstate)
			return fmt.Errorf("call %#x on thread %d: %w (registers restored)", fn, t.tid, err)
		}
		switch ev {
		case evGone:
			return fmt.Errorf("call %#x: thread %d exited: %w", fn, t.tid, ErrExited)
		case evSignal:
			if s := unix.Signal(sig); s == unix.SIGSEGV || s == unix.SIGBUS || s == unix.SIGILL || s == unix.SIGFPE {
				cur, _ := getRegs(t.tid)
				t.state = stopSignal
				if err := p.restoreAll(t); err != nil {
					return err
				}
				return fmt.Errorf("call %#x on thread %d crashed at %#x (%v); registers restored", fn, t.tid, cur.Rip, s)
			}
			t.sigs = append(t.sigs, sig)
			continue
		case evSyscall:
			cur, err := getRegs(t.tid)
			if err != nil {
				return p.threadErr(err)
			}
			if cur.Orig_rax != nrRtSigreturn || cur.Rip != back || !cur.isSyscallEntry(nrRtSigreturn) {
				continue // a system call of the callee's, entry or exit
			}
			// The callee returned. Skip rt_sigreturn: orig_rax = -1 runs no
			// system call, and the next stop is its syscall-exit-stop,
			// where the thread is in the same state as after an injected
			// system call.
			skip := cur
			skip.Orig_rax = ^uint64(0)
			if err := setRegs(t.tid, &skip); err != nil {
				return p.threadErr(err)
			}
			if err := ptrace(unix.PTRACE_SYSCALL, t.tid, 0, 0); err != nil {
				return p.threadErr(fmt.Errorf("PTRACE_SYSCALL %d: %w", t.tid, err))
			}
			for {
				ev, sig, err := p.waitStop(t, deadline)
				if err != nil {
					p.recoverThread(t)
					setXstate(t.tid, t.xstate)
					return fmt.Errorf("call %#x on thread %d: %w (registers restored)", fn, t.tid, err)
				}
				if ev == evGone {
					return fmt.Errorf("call %#x: thread %d exited: %w", fn, t.tid, ErrExited)
				}
				if ev == evSyscall {
					break
				}
				if ev == evSignal {
					t.sigs = append(t.sigs, sig)
				}
				if err := ptrace(unix.PTRACE_SYSCALL, t.tid, 0, 0); err != nil {
					return p.threadErr(fmt.Errorf("PTRACE_SYSCALL %d: %w", t.tid, err))
				}
			}
			t.state = stopSyscall
			return p.restoreAll(t)
		}
	}
}

// restoreAll puts back t's registers and the extended state its frame was
// built from.
func (p *Process) restoreAll(t *thread) error {
	if err := p.restore(t); err != nil {
		return err
	}
	if t.xstate != nil {
		if err := setXstate(t.tid, t.xstate); err != nil {
			return p.threadErr(err)
		}
	}
	return nil
}

func (p *Process) call(t *thread, fn uint64, args []uint64) (uint64, error) {
	if err := p.seccompCheckCall(t, fn); err != nil {
		return 0, fmt.Errorf("call %#x: %w", fn, err)
	}
	r := callRegs(t, fn, args)
	sp := (t.regs.Rsp - callScratch - redZone) &^ 15
	sp -= 8 // the return address: rsp+8 is 16-byte aligned at entry
	if err := writeMem(p.mem, sp, make([]byte, 8)); err != nil {
		return 0, fmt.Errorf("call %#x: write return address on thread %d's stack: %w", fn, t.tid, err)
	}
	r.Rsp = sp
	if err := setRegs(t.tid, &r); err != nil {
		return 0, p.notRunErr(t, fmt.Sprintf("call %#x", fn), err)
	}
	t.injected = true
	if err := ptrace(unix.PTRACE_CONT, t.tid, 0, 0); err != nil {
		p.restore(t)
		return 0, p.notRunErr(t, fmt.Sprintf("call %#x", fn), fmt.Errorf("PTRACE_CONT %d: %w", t.tid, err))
	}
	t.state = running
	deadline := time.Now().Add(p.opt.Timeout)
	for {
		ev, sig, err := p.waitStop(t, deadline)
		if err != nil {
			p.recoverThread(t)
			return 0, fmt.Errorf("call %#x on thread %d: %w", fn, t.tid, err)
		}
		switch ev {
		case evGone:
			if !p.alive() {
				return 0, fmt.Errorf("call %#x: process %d: %w", fn, p.pid, ErrExited)
			}
			return 0, fmt.Errorf("call %#x: thread %d exited during the call, whose effect is unknown: %w", fn, t.tid, ErrThreadExited)
		case evSignal:
			cur, err := getRegs(t.tid)
			if err != nil {
				return 0, p.threadErr(err)
			}
			if unix.Signal(sig) == unix.SIGSEGV {
				t.state = stopSignal
				if rerr := p.restore(t); rerr != nil {
					return 0, rerr
				}
				if cur.Rip != 0 {
					return 0, fmt.Errorf("call %#x on thread %d crashed at %#x (SIGSEGV); registers restored", fn, t.tid, cur.Rip)
				}
				return cur.Rax, nil
			}
			// Another signal: keep it for the thread, go on without it.
			t.sigs = append(t.sigs, sig)
		}
		if err := ptrace(unix.PTRACE_CONT, t.tid, 0, 0); err != nil {
			return 0, p.threadErr(fmt.Errorf("PTRACE_CONT %d: %w", t.tid, err))
		}
	}
}

// callRegs returns t's registers set up to enter fn with args in the psABI's
// integer argument registers (§3.2.3), outside any system call (orig_rax -1,
// so that no restart logic applies when the thread is resumed). The caller
// sets rsp.
func callRegs(t *thread, fn uint64, args []uint64) Regs {
	var a [6]uint64
	copy(a[:], args)
	r := t.regs
	r.Rip = fn
	r.Orig_rax = ^uint64(0)
	r.Rax = 0
	r.Rdi, r.Rsi, r.Rdx, r.Rcx, r.R8, r.R9 = a[0], a[1], a[2], a[3], a[4], a[5]
	return r
}
