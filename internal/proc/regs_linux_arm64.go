package proc

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// This file is the host glue for arm64. Reading registers works; system
// call injection is not implemented yet: on arm64 the syscall number lives
// in the NT_ARM_SYSTEM_CALL register set rather than in the general
// registers, and the restart rules differ (x0 holds both the first argument
// and the result, orig_x0 is not exposed).

// Regs is the register set of a stopped thread (struct user_pt_regs).
type Regs struct {
	unix.PtraceRegs
}

// PC returns the program counter.
func (r Regs) PC() uint64 { return r.Pc }

// SP returns the stack pointer.
func (r Regs) SP() uint64 { return r.Sp }

// FP returns the frame pointer (x29).
func (r Regs) FP() uint64 { return r.Regs[29] }

// SetPC sets the program counter.
func (r *Regs) SetPC(pc uint64) { r.Pc = pc }

// SetSP sets the stack pointer.
func (r *Regs) SetSP(sp uint64) { r.Sp = sp }

// syscallInsn is `svc #0`.
var syscallInsn = []byte{0x01, 0x00, 0x00, 0xd4}

const (
	syscallInsnLen   = 4
	syscallInsnAlign = 4
	// redZone: AAPCS64 has no red zone, but we keep the same margin as on
	// x86-64 for the scratch bytes we write below sp.
	redZone = 128
)

func getRegs(tid int) (Regs, error) {
	var r Regs
	if err := unix.PtraceGetRegs(tid, &r.PtraceRegs); err != nil {
		return r, fmt.Errorf("PTRACE_GETREGSET %d: %w", tid, err)
	}
	return r, nil
}

func setRegs(tid int, r *Regs) error {
	if err := unix.PtraceSetRegs(tid, &r.PtraceRegs); err != nil {
		return fmt.Errorf("PTRACE_SETREGSET %d: %w", tid, err)
	}
	return nil
}

// inSyscall is unknown without NT_ARM_SYSTEM_CALL; report false.
func (r Regs) inSyscall() bool { return false }

func prepareSyscall(saved Regs, pc, nr uint64, args []uint64) (Regs, error) {
	return saved, fmt.Errorf("system call injection: %w (arm64 not supported yet)", ErrUnsupported)
}

func (r Regs) isSyscallEntry(nr uint64) bool { return false }

func (r Regs) syscallResult() uint64 { return r.Regs[0] }

func restartFixup(saved Regs) Regs { return saved }

// injectionSupported: syscall injection is not implemented on this host.
const injectionSupported = false
