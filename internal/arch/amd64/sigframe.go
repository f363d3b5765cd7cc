package amd64

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Self-restoring injected calls: the x86-64 rt_sigframe.
//
// A thread that lends its registers to an injected system call runs it with
// rsp pointing at a signal frame built here, at a `syscall; ret` sequence
// borrowed from the target. If the tracer vanishes at any instant after the
// registers are set (the kernel then detaches the thread and lets it run),
// the thread finishes the system call, `ret` pops the frame's pretcode (the
// address of a `mov $15, %rax; syscall` sequence: glibc's __restore_rt) and
// rt_sigreturn reloads the thread's own registers, FPU/SSE/AVX state and
// signal mask from the frame. The layout is the kernel's
// (arch/x86/include/asm/sigframe.h, uapi asm/sigcontext.h, asm-generic
// ucontext.h) and rt_sigreturn (arch/x86/kernel/signal_64.c) reads it as
// follows:
//
//   - frame = regs->sp - 8: rsp after `ret` popped pretcode.
//   - uc_sigmask (8 bytes) -> set_current_blocked.
//   - uc_stack -> restore_altstack -> do_sigaltstack: we put ss_flags = 4,
//     which is neither 0, SS_ONSTACK nor SS_DISABLE, so do_sigaltstack returns
//     -EINVAL before changing anything (or -EPERM if on the altstack), and
//     restore_altstack squashes every error but -EFAULT: the thread's
//     sigaltstack stays as it is. (We cannot read it without injecting.)
//   - uc_mcontext -> restore_sigcontext: every general register, rip, the
//     user-visible flags (FIX_EFLAGS), cs and ss (kept exactly with
//     UC_STRICT_RESTORE_SS), orig_ax = -1, and fpstate -> fpu__restore_sig.
//     It also sets restart_block.fn = do_no_restart_syscall: a frame whose
//     rax is __NR_restart_syscall makes the interrupted call return -EINTR.
//   - fpstate (64-byte aligned, XRSTOR's requirement) ->
//     check_xstate_in_sigframe: sw_reserved must carry FP_XSTATE_MAGIC1 and a
//     FP_XSTATE_MAGIC2 must follow the area at fpstate + the task's
//     fpstate->user_size (kernels before 5.16: at fpstate + sw.xstate_size,
//     which must not exceed user_size). Otherwise only x87/SSE is restored
//     and the AVX (and later) state is reset; a NULL fpstate resets all of it.
//     The area PTRACE_GETREGSET NT_X86_XSTATE returns is the standard XSAVE
//     format but its sw_reserved holds only XCR0 in its first word
//     (xstate_fx_sw_bytes), so the software bytes are written here.

// Instruction encodings borrowed in a target.
var (
	// SyscallRetInsn is `syscall; ret`.
	SyscallRetInsn = []byte{0x0f, 0x05, 0xc3}
	// RestoreRTInsn is `mov $15, %rax; syscall` (rt_sigreturn), the body of
	// glibc's and musl's __restore_rt.
	RestoreRTInsn = []byte{0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05}
)

const (
	// NRRtSigreturn is __NR_rt_sigreturn.
	NRRtSigreturn = 15
	// RedZone is the psABI's red zone (§3.2.2): the 128 bytes below rsp that
	// leaf code may use without moving rsp.
	RedZone = 128

	sigframeSize  = 8 + ucontextSize + 128 // pretcode, ucontext, siginfo
	ucontextSize  = 8 + 8 + 24 + sigctxSize + 8
	sigctxSize    = 256
	offUcontext   = 8
	offUcStack    = offUcontext + 16
	offMcontext   = offUcontext + 40
	offSigmask    = offMcontext + sigctxSize
	ucFPXstate    = 0x1
	ucSigctxSS    = 0x2
	ucStrictSS    = 0x4
	ssFlagsBogus  = 4 // not 0, SS_ONSTACK (1) or SS_DISABLE (2): -EINVAL
	fpMagic1      = 0x46505853
	fpMagic2      = 0x46505845
	fxswOffset    = 464 // i387.sw_reserved in the XSAVE area
	xstateBVOff   = 512 // xsave header: xfeatures (XSTATE_BV)
	minXstateSize = 512 + 64
	xsaveAlign    = 64
)

// SigContext is the register part of struct sigcontext.
type SigContext struct {
	R8, R9, R10, R11, R12, R13, R14, R15 uint64
	Rdi, Rsi, Rbp, Rbx, Rdx, Rax, Rcx    uint64
	Rsp, Rip, Eflags                     uint64
	Cs, Ss                               uint16
}

// Xstate is a thread's extended state as PTRACE_GETREGSET NT_X86_XSTATE
// returns it (standard format), with what is needed to place FP_XSTATE_MAGIC2
// where the kernel will look for it.
type Xstate struct {
	Area []byte
	// DefaultSize is the size of the standard-format area without the
	// dynamically enabled features (AMX tile data): the task's user_size
	// unless it was granted those (arch_prctl(ARCH_REQ_XCOMP_PERM)). Equal to
	// len(Area) on CPUs without dynamic features.
	DefaultSize int
	// Dynamic is the mask of dynamically enabled features (XFEATURE_MASK_XTILE_DATA).
	Dynamic uint64
}

// SigFrame is a built frame: Image is to be written at Addr; an injected
// call runs with rsp = Addr.
type SigFrame struct {
	Addr  uint64
	Image []byte
}

// ErrNoXstate: the extended state is missing or malformed.
var ErrNoXstate = errors.New("no usable XSAVE area")

// BuildSigFrame lays out an rt_sigframe whose fpstate ends below the red
// zone under sp: it returns the registers sc, the blocked mask and the
// extended state x to the thread when rt_sigreturn runs on it, with
// pretcode = restorer. Addr is 8 mod 16, like a frame the kernel builds
// (get_sigframe), so that rsp+8 is 16-aligned as at a function's entry.
func BuildSigFrame(sp uint64, sc SigContext, mask uint64, restorer uint64, x Xstate) (SigFrame, error) {
	n := len(x.Area)
	if n < minXstateSize || n%8 != 0 || x.DefaultSize < minXstateSize || x.DefaultSize > n {
		return SigFrame{}, fmt.Errorf("%w: %d bytes (default size %d)", ErrNoXstate, n, x.DefaultSize)
	}
	top := sp - RedZone
	fp := (top - uint64(n) - 4) &^ (xsaveAlign - 1)
	addr := ((fp - sigframeSize) &^ 15) - 8
	if addr > sp {
		return SigFrame{}, fmt.Errorf("stack pointer %#x too low for a signal frame", sp)
	}
	img := make([]byte, fp+uint64(n)+4-addr)
	le := binary.LittleEndian
	le.PutUint64(img[0:], restorer)
	uc := img[offUcontext:]
	le.PutUint64(uc[0:], ucFPXstate|ucSigctxSS|ucStrictSS)
	le.PutUint32(img[offUcStack+8:], ssFlagsBogus)
	putSigContext(img[offMcontext:offMcontext+sigctxSize], sc, mask, fp)
	le.PutUint64(img[offSigmask:], mask)
	writeXstate(img[fp-addr:], x)
	return SigFrame{Addr: addr, Image: img}, nil
}

func putSigContext(b []byte, sc SigContext, mask, fp uint64) {
	le := binary.LittleEndian
	for i, v := range []uint64{sc.R8, sc.R9, sc.R10, sc.R11, sc.R12, sc.R13, sc.R14, sc.R15,
		sc.Rdi, sc.Rsi, sc.Rbp, sc.Rbx, sc.Rdx, sc.Rax, sc.Rcx, sc.Rsp, sc.Rip, sc.Eflags} {
		le.PutUint64(b[8*i:], v)
	}
	le.PutUint16(b[144:], sc.Cs) // then gs, fs (ignored on 64-bit)
	le.PutUint16(b[150:], sc.Ss)
	// err, trapno at 152, 160; oldmask, cr2, fpstate at 168, 176, 184.
	le.PutUint64(b[168:], mask)
	le.PutUint64(b[184:], fp)
}

// writeXstate copies the XSAVE area to b (at fpstate) with the software
// bytes of a signal frame and FP_XSTATE_MAGIC2 where the kernel looks for it.
func writeXstate(b []byte, x Xstate) {
	le := binary.LittleEndian
	n := len(x.Area)
	copy(b, x.Area)
	xcr0 := le.Uint64(x.Area[fxswOffset:])
	bv := le.Uint64(x.Area[xstateBVOff:])
	size := n
	if bv&x.Dynamic == 0 && x.DefaultSize < n {
		// The task's user_size is DefaultSize unless it was granted the
		// dynamic features; their state is in its init configuration (bit
		// clear in XSTATE_BV), so the bytes at DefaultSize are not restored
		// and may hold the second magic for either case.
		size = x.DefaultSize
		le.PutUint32(b[size:], fpMagic2)
	}
	sw := b[fxswOffset : fxswOffset+48]
	clear(sw)
	le.PutUint32(sw[0:], fpMagic1)
	le.PutUint32(sw[4:], uint32(n+4)) // extended_size
	le.PutUint64(sw[8:], xcr0)        // xfeatures: masked by the task's own on restore
	le.PutUint32(sw[16:], uint32(size))
	le.PutUint32(b[n:], fpMagic2)
}
