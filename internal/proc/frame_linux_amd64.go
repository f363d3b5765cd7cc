package proc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"unsafe"

	"github.com/hotpatch/hotpatch/internal/arch/amd64"
	"golang.org/x/sys/unix"
)

// Host glue of self-restoring injected calls on x86-64: the ptrace register
// sets that give a thread's extended state and signal mask, the CPUID leaf
// that sizes the XSAVE area, and the checks that decide whether a thread's
// own stack may carry the frame. The frame itself is built by
// amd64.BuildSigFrame (plain Go; its comment argues the layout).

var (
	syscallRetInsn = amd64.SyscallRetInsn
	restorerInsn   = amd64.RestoreRTInsn
)

const (
	ntX86Xstate      = 0x202  // NT_X86_XSTATE (include/uapi/linux/elf.h)
	ptraceGetSigmask = 0x420a // PTRACE_GETSIGMASK (include/uapi/linux/ptrace.h)
	// xfeatureDynamic is XFEATURE_MASK_USER_DYNAMIC: AMX tile data, enabled
	// per process by arch_prctl(ARCH_REQ_XCOMP_PERM).
	xfeatureDynamic = 1 << 18
	// restorerSyscallEnd is the address after RestoreRTInsn's syscall,
	// relative to its start: rip at rt_sigreturn's syscall-entry-stop.
	restorerSyscallEnd = 9
	nrRtSigreturn      = amd64.NRRtSigreturn
)

func cpuid(eax, ecx uint32) (a, b, c, d uint32)

func getXstate(tid int) ([]byte, error) {
	buf := make([]byte, 32<<10)
	iov := unix.Iovec{Base: &buf[0]}
	iov.SetLen(len(buf))
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_GETREGSET, uintptr(tid), ntX86Xstate, uintptr(unsafe.Pointer(&iov)), 0, 0)
	if e != 0 {
		return nil, fmt.Errorf("PTRACE_GETREGSET NT_X86_XSTATE %d: %w", tid, e)
	}
	return buf[:iov.Len], nil
}

func setXstate(tid int, area []byte) error {
	iov := unix.Iovec{Base: &area[0]}
	iov.SetLen(len(area))
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SETREGSET, uintptr(tid), ntX86Xstate, uintptr(unsafe.Pointer(&iov)), 0, 0)
	if e != 0 {
		return fmt.Errorf("PTRACE_SETREGSET NT_X86_XSTATE %d: %w", tid, e)
	}
	return nil
}

// getSigmask returns the thread's blocked signals (PTRACE_GETSIGMASK, bit
// n-1 for signal n).
func getSigmask(tid int) (uint64, error) {
	var m uint64
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, ptraceGetSigmask, uintptr(tid), 8, uintptr(unsafe.Pointer(&m)), 0, 0)
	if e != 0 {
		return 0, fmt.Errorf("PTRACE_GETSIGMASK %d: %w", tid, e)
	}
	return m, nil
}

var (
	defaultSizeOnce sync.Once
	defaultSize     int
)

// xstateDefaultSize is fpu_user_cfg.default_size: the end of the highest
// user feature in XCR0 other than the dynamic ones, from CPUID leaf 0xD
// (sub-leaf i: EAX = size, EBX = offset in the standard format). The target
// runs on this CPU, with this kernel.
func xstateDefaultSize(xcr0 uint64) int {
	defaultSizeOnce.Do(func() {
		size := 576 // legacy area + XSAVE header
		for i := 2; i < 63; i++ {
			bit := uint64(1) << i
			if xcr0&bit == 0 || bit&xfeatureDynamic != 0 {
				continue
			}
			a, b, _, _ := cpuid(0xd, uint32(i))
			size = max(size, int(a+b))
		}
		defaultSize = size
	})
	return defaultSize
}

// Why a thread cannot carry a self-restoring frame.
var (
	errNoGadget = errors.New("no `syscall; ret` and `mov $15, %rax; syscall` (__restore_rt) sequences in executable memory (static or non-glibc program?)")
	errShstk    = errors.New("user shadow stack enabled (rt_sigreturn would need a shadow-stack token)")
)

// writeFrame writes thread t's rt_sigframe below its red zone and returns
// its address (see amd64.BuildSigFrame). The frame resumes the thread with
// the registers it must have when it leaves this stop (restartFixup: a
// thread stopped in a restartable system call re-executes it), its blocked
// mask and its whole XSAVE state.
func (p *Process) writeFrame(t *thread) (uint64, error) {
	g, err := p.gadgets()
	if err != nil {
		return 0, err
	}
	if g.syscallRet == 0 || g.restorer == 0 {
		return 0, errNoGadget
	}
	if p.shadowStack(t) {
		return 0, errShstk
	}
	xs, err := getXstate(t.tid)
	if err != nil {
		return 0, err
	}
	if len(xs) < 576 {
		return 0, fmt.Errorf("thread %d: XSAVE area of %d bytes", t.tid, len(xs))
	}
	mask, err := getSigmask(t.tid)
	if err != nil {
		return 0, err
	}
	t.xstate = xs
	r := restartFixup(t.regs)
	sc := amd64.SigContext{
		R8: r.R8, R9: r.R9, R10: r.R10, R11: r.R11, R12: r.R12, R13: r.R13, R14: r.R14, R15: r.R15,
		Rdi: r.Rdi, Rsi: r.Rsi, Rbp: r.Rbp, Rbx: r.Rbx, Rdx: r.Rdx, Rax: r.Rax, Rcx: r.Rcx,
		Rsp: r.Rsp, Rip: r.Rip, Eflags: r.Eflags, Cs: uint16(r.Cs), Ss: uint16(r.Ss),
	}
	xcr0 := binary.LittleEndian.Uint64(xs[464:])
	f, err := amd64.BuildSigFrame(t.regs.Rsp, sc, mask, g.restorer,
		amd64.Xstate{Area: xs, DefaultSize: min(xstateDefaultSize(xcr0), len(xs)), Dynamic: xfeatureDynamic})
	if err != nil {
		return 0, fmt.Errorf("thread %d: %w", t.tid, err)
	}
	if err := p.checkStack(t, f.Addr, t.regs.Rsp); err != nil {
		return 0, err
	}
	if err := writeMem(p.mem, f.Addr, f.Image); err != nil {
		return 0, fmt.Errorf("thread %d: write signal frame at %#x: %w", t.tid, f.Addr, err)
	}
	return f.Addr, nil
}

// checkStack verifies that [lo, sp) lies in one anonymous writable mapping
// (a thread stack: [stack] or an anonymous mmap) so that the frame only
// covers dead stack below the red zone. Writes through /proc/PID/mem do not
// grow a stack mapping, and a thread running on a small sigaltstack carved
// out of the heap or a file mapping must not have its neighbours
// overwritten: those threads are not lent.
func (p *Process) checkStack(t *thread, lo, sp uint64) error {
	for range 2 {
		for _, m := range p.maps {
			if m.Start <= sp-1 && sp-1 < m.End {
				switch {
				case lo < m.Start:
					return fmt.Errorf("thread %d: %d bytes below its stack pointer %#x leave its stack mapping", t.tid, sp-lo, sp)
				case len(m.Perms) < 2 || m.Perms[0] != 'r' || m.Perms[1] != 'w':
					return fmt.Errorf("thread %d: stack mapping %#x not writable", t.tid, m.Start)
				case m.Path != "" && m.Path != "[stack]" && !strings.HasPrefix(m.Path, "[anon:"):
					return fmt.Errorf("thread %d: stack pointer %#x in %s, not a stack", t.tid, sp, m.Path)
				}
				return nil
			}
		}
		if err := p.readMaps(); err != nil {
			return err
		}
	}
	return fmt.Errorf("thread %d: stack pointer %#x in no mapping", t.tid, sp)
}

// shadowStack reports whether the thread runs with a user shadow stack
// (/proc/PID/status "x86_Thread_features: shstk ...", Linux 6.6+), from its
// status as read in this stop window (windowStatus).
func (p *Process) shadowStack(t *thread) bool {
	data, err := p.windowStatus(t)
	if err != nil {
		return false
	}
	i := bytes.Index(data, []byte("\nx86_Thread_features:"))
	if i < 0 {
		return false
	}
	line := data[i+1:]
	if j := bytes.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	return bytes.Contains(line, []byte("shstk"))
}

// restartBlock: the thread is stopped in a system call that the kernel
// resumes through restart_syscall (nanosleep, clock_nanosleep, poll and
// futex waits with a timeout). After rt_sigreturn such a call returns EINTR
// (restore_sigcontext sets restart_block.fn = do_no_restart_syscall), so
// these threads are lent last.
func (r Regs) restartBlock() bool { return r.inSyscall() && -int64(r.Rax) == errRestartRestartBlck }

func (r *Regs) setSP(sp uint64) { r.Rsp = sp }
