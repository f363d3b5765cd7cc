package engine

import (
	"fmt"

	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/procmaps"
)

// stackCopies holds, for one stop window, a copy of every stopped thread's
// stack: from its stack pointer (rounded down to 8) to the end of the
// mapping holding it, at most maxStackScan bytes. The checks of a window
// (the stack walk, the scans for words pointing into the bytes being
// replaced or into a region to free) all read the stacks; they share these
// copies, taken at the first request for all threads at once with one
// process_vm_readv (proc.ReadMemv): one system call for the window instead
// of one per thread per check. The threads are stopped, so their stacks do
// not change while the copies are used (the tracer's own writes go to the
// code, the region and, for injected calls, below a lending thread's stack
// pointer, never above it).
type stackCopies struct {
	pr      *proc.Process
	threads []proc.Thread
	maps    *[]procmaps.Mapping
	read    bool
	by      map[int]stackCopy
}

type stackCopy struct {
	lo   uint64
	data []byte
	err  error // why there is no copy
}

func newStackCopies(pr *proc.Process, threads []proc.Thread, maps *[]procmaps.Mapping) *stackCopies {
	return &stackCopies{pr: pr, threads: threads, maps: maps}
}

// readAll takes the copies of every thread.
func (s *stackCopies) readAll() {
	s.read = true
	s.by = make(map[int]stackCopy, len(s.threads))
	var segs []proc.Segment
	var tids []int
	for _, th := range s.threads {
		sp := th.Regs.SP()
		m, ok := stackMapping(s.pr.Pid(), s.maps, sp)
		if !ok {
			s.by[th.TID] = stackCopy{err: fmt.Errorf("stack pointer %#x is in no mapping", sp)}
			continue
		}
		lo := sp &^ 7
		buf := make([]byte, min(m.End, sp+maxStackScan)-lo)
		segs = append(segs, proc.Segment{Addr: lo, Buf: buf})
		tids = append(tids, th.TID)
	}
	if err := s.pr.ReadMemv(segs); err != nil {
		// Some stack could not be read in one go: read each on its own, so
		// that the error is that thread's.
		for i, sg := range segs {
			if rerr := s.pr.ReadMem(sg.Addr, sg.Buf); rerr != nil {
				s.by[tids[i]] = stackCopy{err: rerr}
			} else {
				s.by[tids[i]] = stackCopy{lo: sg.Addr, data: sg.Buf}
			}
		}
		return
	}
	for i, sg := range segs {
		s.by[tids[i]] = stackCopy{lo: sg.Addr, data: sg.Buf}
	}
}

// from returns the stack of thread tid from address sp up (sp is the
// thread's stack pointer, or above it: a thread rewound to a function's
// entry has it raised), and whether its mapping was found. A thread not
// among those copied (or with sp below its copy) is read now.
func (s *stackCopies) from(tid int, sp uint64) ([]byte, bool, error) {
	if !s.read {
		s.readAll()
	}
	c, ok := s.by[tid]
	if ok && c.err == nil && sp >= c.lo && sp <= c.lo+uint64(len(c.data)) {
		return c.data[sp-c.lo:], true, nil
	}
	if ok && c.err != nil {
		_, mapped := stackMapping(s.pr.Pid(), s.maps, sp)
		return nil, mapped, c.err
	}
	m, found := stackMapping(s.pr.Pid(), s.maps, sp)
	if !found {
		return nil, false, fmt.Errorf("stack pointer %#x is in no mapping", sp)
	}
	buf := make([]byte, min(m.End, sp+maxStackScan)-sp)
	if err := s.pr.ReadMem(sp, buf); err != nil {
		return nil, true, err
	}
	return buf, true, nil
}
