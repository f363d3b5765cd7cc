package engine

import (
	"fmt"
	"sort"

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
//
// The stack walk needs only the frames it visits, mostly within the first
// kilobytes above the stack pointer; the conservative scans need every word
// up to the mapping's end. So the first request of a walk (head) copies at
// most stackHead bytes of every stack, and a copy is completed (from) only
// for a thread whose walk needed more or whose stack is scanned.
type stackCopies struct {
	pr      *proc.Process
	threads []proc.Thread
	maps    *[]procmaps.Mapping
	read    bool // the heads (or more) of every thread are copied
	by      map[int]*stackCopy
}

type stackCopy struct {
	lo   uint64
	data []byte
	end  uint64 // where the stack ends (the mapping's end, at most maxStackScan above lo)
	err  error  // why there is no copy
}

// stackHead bounds the first copy of each stack (see stackCopies).
const stackHead = 8 << 10

func (c *stackCopy) full() bool { return c.lo+uint64(len(c.data)) >= c.end }

func newStackCopies(pr *proc.Process, threads []proc.Thread, maps *[]procmaps.Mapping) *stackCopies {
	return &stackCopies{pr: pr, threads: threads, maps: maps}
}

// readHeads copies the first stackHead bytes of every thread's stack, all
// with one proc.ReadMemv.
func (s *stackCopies) readHeads() {
	s.read = true
	s.by = make(map[int]*stackCopy, len(s.threads))
	var segs []proc.Segment
	var cs []*stackCopy
	find := s.finder()
	for _, th := range s.threads {
		sp := th.Regs.SP()
		m, ok := find(sp)
		if !ok {
			s.by[th.TID] = &stackCopy{err: fmt.Errorf("stack pointer %#x is in no mapping", sp)}
			continue
		}
		lo := sp &^ 7
		c := &stackCopy{lo: lo, end: min(m.End, sp+maxStackScan)}
		c.data = make([]byte, min(c.end-lo, stackHead))
		s.by[th.TID] = c
		segs = append(segs, proc.Segment{Addr: lo, Buf: c.data})
		cs = append(cs, c)
	}
	if err := s.pr.ReadMemv(segs); err != nil {
		// Some stack could not be read in one go: read each on its own, so
		// that the error is that thread's.
		for _, c := range cs {
			if rerr := s.pr.ReadMem(c.lo, c.data); rerr != nil {
				c.data, c.err = nil, rerr
			}
		}
	}
}

// finder returns a lookup of the mapping holding a stack pointer: a binary
// search when the maps are sorted by address (as /proc/PID/maps lists
// them; checked once here rather than by procmaps.Find at every lookup, a
// pass over every mapping per thread), else stackMapping, which also reads
// the maps again for a stack mapped since they were read.
func (s *stackCopies) finder() func(sp uint64) (procmaps.Mapping, bool) {
	sorted := sort.SliceIsSorted(*s.maps, func(i, j int) bool { return (*s.maps)[i].Start < (*s.maps)[j].Start })
	return func(sp uint64) (procmaps.Mapping, bool) {
		if ms := *s.maps; sorted {
			if i := sort.Search(len(ms), func(i int) bool { return ms[i].End > sp }); i < len(ms) && ms[i].Contains(sp) {
				return ms[i], true
			}
		}
		m, ok := stackMapping(s.pr.Pid(), s.maps, sp)
		sorted = sort.SliceIsSorted(*s.maps, func(i, j int) bool { return (*s.maps)[i].Start < (*s.maps)[j].Start })
		return m, ok
	}
}

// copyOf returns thread tid's copy, or nil when tid was not among the
// threads copied.
func (s *stackCopies) copyOf(tid int) *stackCopy {
	if !s.read {
		s.readHeads()
	}
	return s.by[tid]
}

// head returns the start of thread tid's stack copy from sp (at most
// stackHead bytes, more if it was completed), or nil.
func (s *stackCopies) head(tid int, sp uint64) []byte {
	c := s.copyOf(tid)
	if c == nil || c.err != nil || sp < c.lo || sp > c.lo+uint64(len(c.data)) {
		return nil
	}
	return c.data[sp-c.lo:]
}

// from returns the stack of thread tid from address sp up to its end (sp is
// the thread's stack pointer, or above it: a thread rewound to a
// function's entry has it raised), and whether its mapping was found,
// completing the copy first if only its head was taken. A thread not among
// those copied (or with sp below its copy) is read now.
func (s *stackCopies) from(tid int, sp uint64) ([]byte, bool, error) {
	c := s.copyOf(tid)
	if c != nil && c.err == nil && !c.full() {
		rest := make([]byte, c.end-c.lo)
		copy(rest, c.data)
		at := uint64(len(c.data))
		if err := s.pr.ReadMem(c.lo+at, rest[at:]); err != nil {
			c.data, c.err = nil, err
		} else {
			c.data = rest
		}
	}
	if c != nil && c.err == nil && sp >= c.lo && sp <= c.lo+uint64(len(c.data)) {
		return c.data[sp-c.lo:], true, nil
	}
	if c != nil && c.err != nil {
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
