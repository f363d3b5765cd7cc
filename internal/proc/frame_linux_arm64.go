package proc

import "fmt"

// Self-restoring injected calls are implemented on x86-64 only (see
// frame_linux_amd64.go); injection itself is not supported on arm64.

var (
	syscallRetInsn []byte
	restorerInsn   []byte
)

const (
	restorerSyscallEnd = 0
	nrRtSigreturn      = 139
)

func (p *Process) writeFrame(t *thread) (uint64, error) {
	return 0, fmt.Errorf("self-restoring frame: %w", ErrUnsupported)
}

func getXstate(tid int) ([]byte, error) { return nil, ErrUnsupported }

func setXstate(tid int, area []byte) error { return ErrUnsupported }

func (r Regs) restartBlock() bool { return false }

func (r *Regs) setSP(sp uint64) { r.Sp = sp }
