package proc

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// This file is the host glue for x86-64: the ptrace register set
// (struct user_regs_struct, <sys/user.h>) and the system call convention
// (x86-64 psABI, appendix A.2 "AMD64 Linux Kernel Conventions").

// Regs is the register set of a stopped thread (struct user_regs_struct).
// It is comparable with ==.
type Regs struct {
	unix.PtraceRegs
}

// PC returns the instruction pointer (rip).
func (r Regs) PC() uint64 { return r.Rip }

// SP returns the stack pointer (rsp).
func (r Regs) SP() uint64 { return r.Rsp }

// FP returns the frame pointer (rbp).
func (r Regs) FP() uint64 { return r.Rbp }

// SetPC sets the instruction pointer.
func (r *Regs) SetPC(pc uint64) { r.Rip = pc }

// SetSP sets the stack pointer.
func (r *Regs) SetSP(sp uint64) { r.Rsp = sp }

// syscallInsn is the `syscall` instruction we look for in the target's
// executable memory. The kernel's restart logic (arch/x86/kernel/signal.c)
// rewinds rip by 2, the length of `syscall` (and of `int $0x80`, `sysenter`).
var syscallInsn = []byte{0x0f, 0x05}

const (
	syscallInsnLen = 2
	// syscallInsnAlign: x86 instructions need no alignment.
	syscallInsnAlign = 1
	// redZone: the psABI (section 3.2.2) lets leaf code use the 128 bytes below
	// rsp without moving rsp; anything we put on a thread's stack must go below it.
	redZone = 128
	// nrRestartSyscall is __NR_restart_syscall on x86-64.
	nrRestartSyscall = 219
)

func getRegs(tid int) (Regs, error) {
	var r Regs
	if err := unix.PtraceGetRegs(tid, &r.PtraceRegs); err != nil {
		return r, fmt.Errorf("PTRACE_GETREGS %d: %w", tid, err)
	}
	return r, nil
}

func setRegs(tid int, r *Regs) error {
	if err := unix.PtraceSetRegs(tid, &r.PtraceRegs); err != nil {
		return fmt.Errorf("PTRACE_SETREGS %d: %w", tid, err)
	}
	return nil
}

// inSyscall reports whether the thread stopped inside (or on the way out of)
// a system call: the kernel keeps the syscall number in orig_rax while the
// call is in progress and -1 otherwise.
func (r Regs) inSyscall() bool { return int64(r.Orig_rax) >= 0 }

// prepareSyscall returns saved modified to execute system call nr with args
// at the `syscall` instruction at pc.
//
// orig_rax is set to -1: the thread leaves its current stop through the
// kernel's signal/restart path (arch_do_signal_or_restart), which looks at
// orig_rax to decide whether an interrupted system call must be restarted. With
// -1 it does nothing, so our rip/rax are used exactly as written. Without it,
// a thread interrupted in nanosleep (rax = -ERESTART_RESTARTBLOCK) would not be
// affected (rax is nr now), but any stale value must not count as a syscall.
func prepareSyscall(saved Regs, pc, nr uint64, args []uint64) (Regs, error) {
	if len(args) > 6 {
		return saved, fmt.Errorf("system call %d: %d arguments, at most 6", nr, len(args))
	}
	var a [6]uint64
	copy(a[:], args)
	r := saved
	r.Rip = pc
	r.Rax = nr
	r.Orig_rax = ^uint64(0)
	r.Rdi, r.Rsi, r.Rdx, r.R10, r.R8, r.R9 = a[0], a[1], a[2], a[3], a[4], a[5]
	return r, nil
}

// isSyscallEntry checks the registers at a syscall-entry-stop: the kernel
// has copied rax into orig_rax and put -ENOSYS in rax
// (arch/x86/entry/common.c).
func (r Regs) isSyscallEntry(nr uint64) bool {
	return r.Orig_rax == nr && int64(r.Rax) == -int64(unix.ENOSYS)
}

// syscallResult is the return value at the syscall-exit-stop.
func (r Regs) syscallResult() uint64 { return r.Rax }

// Kernel-internal restart codes (include/linux/errno.h). They are never
// visible to user space: on the way back to user mode the kernel turns them
// into a restart or into -EINTR.
const (
	errRestartSys         = 512
	errRestartNoIntr      = 513
	errRestartNoHand      = 514
	errRestartRestartBlck = 516
)

// restartFixup returns the registers a thread must get when it leaves a
// syscall-exit-stop after we ran an injected system call on it, given the
// registers it had when it was stopped.
//
// A thread interrupted (PTRACE_INTERRUPT) inside a blocking system call stops
// with orig_rax = the call's number and rax = -ERESTARTSYS / -ERESTARTNOINTR /
// -ERESTARTNOHAND / -ERESTART_RESTARTBLOCK. Resumed from that interrupt-stop,
// the kernel restarts the call itself: arch_do_signal_or_restart
// (arch/x86/kernel/signal.c), finding no signal to deliver, sets
// rax = orig_rax (or __NR_restart_syscall for -ERESTART_RESTARTBLOCK) and
// rip -= 2 so the `syscall` instruction runs again.
//
// After an injected call, however, the thread sits in a syscall-exit-stop.
// Leaving it goes through syscall_exit_to_user_mode, which runs the restart
// logic only when a signal is pending, so the restart code would normally
// leak to the program as a return value (nanosleep returning -516). We
// therefore do by hand what the kernel would have done: rax = orig_rax (or
// 219 = __NR_restart_syscall, which resumes from current->restart_block, so a
// nanosleep still sleeps its remaining time) and rip -= 2. The result is no
// longer a restart code, so if the kernel does run its restart logic (a
// signal is pending) it leaves these registers alone.
//
// One difference remains: if a signal with a handler is delivered at that
// point, the call is restarted after the handler as if SA_RESTART were set,
// where the kernel might have returned EINTR.
func restartFixup(saved Regs) Regs {
	r := saved
	if !r.inSyscall() {
		return r
	}
	switch -int64(r.Rax) {
	case errRestartSys, errRestartNoIntr, errRestartNoHand:
		r.Rax = r.Orig_rax
		r.Rip -= syscallInsnLen
	case errRestartRestartBlck:
		r.Rax = nrRestartSyscall
		r.Rip -= syscallInsnLen
	}
	return r
}

// injectionSupported: syscall injection is implemented on this host.
const injectionSupported = true
