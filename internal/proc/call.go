//go:build linux && amd64

package proc

import (
	"fmt"
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
		t, err := p.injectionThread()
		if err != nil {
			return err
		}
		ret, err = p.call(t, fn, args)
		return err
	})
	return ret, err
}

func (p *Process) call(t *thread, fn uint64, args []uint64) (uint64, error) {
	if err := p.seccompCheckCall(t, fn); err != nil {
		return 0, fmt.Errorf("call %#x: %w", fn, err)
	}
	var a [6]uint64
	copy(a[:], args)
	r := t.regs
	r.Rip = fn
	r.Orig_rax = ^uint64(0)
	r.Rax = 0
	r.Rdi, r.Rsi, r.Rdx, r.Rcx, r.R8, r.R9 = a[0], a[1], a[2], a[3], a[4], a[5]
	sp := (t.regs.Rsp - callScratch - redZone) &^ 15
	sp -= 8 // the return address: rsp+8 is 16-byte aligned at entry
	if err := writeMem(p.mem, sp, make([]byte, 8)); err != nil {
		return 0, fmt.Errorf("call %#x: write return address on thread %d's stack: %w", fn, t.tid, err)
	}
	r.Rsp = sp
	if err := setRegs(t.tid, &r); err != nil {
		return 0, p.threadErr(err)
	}
	t.injected = true
	if err := ptrace(unix.PTRACE_CONT, t.tid, 0, 0); err != nil {
		p.restore(t)
		return 0, p.threadErr(fmt.Errorf("PTRACE_CONT %d: %w", t.tid, err))
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
			return 0, fmt.Errorf("call %#x: thread %d exited: %w", fn, t.tid, ErrExited)
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
