package engine

import (
	"encoding/binary"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/unwind"
)

// Consistency models.
const (
	// ConsistencyStack: no thread may have a function being replaced anywhere
	// on its stack (kpatch's and LibCare's model). The default.
	ConsistencyStack = "stack"
	// ConsistencyEntry: only the bytes being overwritten must be free (the
	// Windows and libpulp model), for functions that never return, such as
	// an event loop: threads already inside keep running the old code.
	ConsistencyEntry = "entry"
)

var cfiCache unwind.Cache

// unwinderAsync builds the unwinder on another goroutine. Every module is
// loaded first, here: from then on both goroutines only read a module's
// fields (the parts loaded later are behind their own sync.Once).
func (t *target) unwinderAsync() <-chan *unwind.Unwinder {
	for _, m := range t.mods {
		t.load(m)
	}
	c := make(chan *unwind.Unwinder, 1)
	go func() {
		u := t.unwinder()
		t.prewarm(u)
		c <- u
	}()
	return c
}

// unwinder builds the stack walker for the target, parsing (or taking from
// the cache) the call frame information of every mapped object. It runs
// before the threads are stopped.
func (t *target) unwinder() *unwind.Unwinder {
	u := &unwind.Unwinder{Regs: t.arch.UnwindRegs()}
	for _, m := range t.mods {
		if t.load(m) != nil {
			continue
		}
		key := fmt.Sprintf("%s:%d", m.Dev, m.Inode)
		tab, err := cfiCache.Get(key, func() (*unwind.Table, error) { return unwind.Parse(m.f.ELF()) })
		if err != nil {
			continue
		}
		u.Mods = append(u.Mods, unwind.Module{Start: m.Start, End: m.End, Bias: m.Bias, Table: tab, Name: filepath.Base(m.Path)})
	}
	return u
}

// span is an address range with a name, e.g. a function being replaced.
type span struct {
	lo, hi uint64
	name   string
	// entry, if not 0: a thread whose own pc (not a return address) is in
	// [lo, entry] has not started the function (it is on the landing pad or
	// at the patch point) and does not count.
	entry uint64
}

// activeOnStacks walks every thread's stack and returns a busyError naming
// the first span found on a stack, with the thread's backtrace. Frames the
// unwinder cannot walk are covered by a conservative scan of the remaining
// stack words (any word inside a span counts).
func (t *target) activeOnStacks(pr *proc.Process, u *unwind.Unwinder, threads []proc.Thread, sc *stackCopies, spans []span) *busyError {
	in := func(a uint64) (span, bool) {
		for _, s := range spans {
			if a >= s.lo && a < s.hi {
				return s, true
			}
		}
		return span{}, false
	}
	for _, th := range threads {
		sp := th.Regs.SP()
		st := &unwind.Stack{Lo: sp}
		// The head of the window's copy of the stack (stacks.go); a read
		// beyond it completes the copy (once) and goes on from there. A
		// thread whose stack is in no mapping even after the maps are read
		// again, or cannot be read, is walked through pr.ReadMem alone.
		st.Data = sc.head(th.TID, sp)
		completed := st.Data == nil
		st.Mem = func(a uint64, b []byte) error {
			if !completed && a >= sp {
				completed = true
				if data, _, err := sc.from(th.TID, sp); err == nil {
					st.Data = data
					if a+uint64(len(b)) <= sp+uint64(len(data)) {
						copy(b, data[a-sp:])
						return nil
					}
				}
			}
			return pr.ReadMem(a, b)
		}
		res := u.Unwind(th.Regs.PC(), sp, th.Regs.FP(), st)
		for i, pc := range res.PCs {
			look := pc
			if i > 0 {
				look--
			}
			if s, ok := in(look); ok {
				if i == 0 && look <= s.entry {
					continue
				}
				return &busyError{fmt.Sprintf("%s is active on thread %d; backtrace:\n%s", s.name, th.TID, t.backtrace(res))}
			}
		}
		if res.Complete {
			continue
		}
		// Conservative scan of what the walk could not account for: over
		// the whole stack, so the copy is completed first.
		data, _, err := sc.from(th.TID, sp)
		if err != nil {
			// Nothing to scan: a span may be active on this stack for all
			// that can be seen, so it counts as busy (as an unreadable
			// stack keeps a region, regionInUseIn); a retry reads the maps
			// and the stack again.
			return &busyError{fmt.Sprintf("the stack of thread %d cannot be read (%v) and the unwinder stopped (%s): a replaced function may be active on it; backtrace:\n%s",
				th.TID, err, res.Reason, t.backtrace(res))}
		}
		st.Data = data
		// Words at sp's alignment, never below st.Lo (sp): a thread may be
		// stopped with sp not a multiple of 8, and rounding down would index
		// before st.Data (a panic, and a refused patch).
		lo := st.Lo + (max(res.SP, sp)-st.Lo)&^7
		hi := st.Lo + uint64(len(st.Data))
		for a := lo; a+8 <= hi; a += 8 {
			w := binary.LittleEndian.Uint64(st.Data[a-st.Lo:])
			if s, ok := in(w); ok {
				return &busyError{fmt.Sprintf("%s may be active on thread %d (a stack word at %#x points into it; the unwinder stopped: %s); backtrace:\n%s",
					s.name, th.TID, a, res.Reason, t.backtrace(res))}
			}
		}
	}
	return nil
}

// backtrace formats pcs as "#n func+off (object)".
func (t *target) backtrace(res unwind.Result) string {
	var b strings.Builder
	for i, pc := range res.PCs {
		fmt.Fprintf(&b, "  #%d %#x %s\n", i, pc, t.symbolize(pc))
	}
	if !res.Complete && res.Reason != "" {
		fmt.Fprintf(&b, "  (stopped: %s)\n", res.Reason)
	}
	return strings.TrimRight(b.String(), "\n")
}

func (t *target) symbolize(pc uint64) string {
	for _, m := range t.mods {
		if !m.Contains(pc) {
			continue
		}
		if t.loadSyms(m) != nil {
			return "(" + filepath.Base(m.Path) + ")"
		}
		if s, ok := m.syms.Containing(pc - m.Bias); ok {
			return fmt.Sprintf("%s+%#x (%s)", s.Name, pc-m.Bias-s.Value, filepath.Base(m.Path))
		}
		return "(" + filepath.Base(m.Path) + ")"
	}
	return ""
}
