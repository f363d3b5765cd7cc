//go:build linux

package proc

import (
	"errors"
	"fmt"
)

// SetRegs gives a thread stopped by Stop new registers, with which it resumes
// (PTRACE_SETREGS). The engine uses it to move a thread out of bytes it is
// about to overwrite. If the thread lent its registers to an injected system
// call in this stop window, the kernel's restart fixup is applied to r when it
// is released, as it would have been to its own registers.
func (p *Process) SetRegs(tid int, r Regs) error {
	return p.do(func() error {
		if !p.stopped {
			return errors.New("set registers: process not stopped")
		}
		t, ok := p.threads[tid]
		if !ok || t.state == running {
			return fmt.Errorf("set registers: thread %d is not stopped by us", tid)
		}
		if err := setRegs(tid, &r); err != nil {
			return err
		}
		t.regs = r
		return nil
	})
}
