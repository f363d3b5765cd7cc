package engine

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// parkAt stops thread tid when it is about to execute addr, by
// single-stepping it (PTRACE_SINGLESTEP) until its pc is addr. (Hardware
// breakpoints would be quicker, but virtual machines often lack them.)
func parkAt(tid int, addr uint64) error {
	if err := unix.PtraceSeize(tid); err != nil {
		return fmt.Errorf("seize: %w", err)
	}
	if err := unix.PtraceInterrupt(tid); err != nil {
		return err
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(tid, &ws, unix.WALL, nil); err != nil {
		return err
	}
	for i := 0; i < 1_000_000; i++ {
		var regs unix.PtraceRegs
		if err := unix.PtraceGetRegs(tid, &regs); err != nil {
			return err
		}
		if pcOf(&regs) == addr {
			return nil
		}
		if err := unix.PtraceSingleStep(tid); err != nil {
			return err
		}
		if _, err := unix.Wait4(tid, &ws, unix.WALL, nil); err != nil {
			return err
		}
	}
	return fmt.Errorf("thread never reached %#x", addr)
}
