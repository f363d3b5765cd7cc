package engine

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/procmaps"
	"github.com/hotpatch/hotpatch/internal/unwind"
)

// Which threads may run an injected call of the unwinder's registration
// functions.
//
// __register_frame and __deregister_frame (libgcc's unwind-dw2-fde.c) take
// libgcc's object_mutex and call malloc/free, which take the malloc arena
// locks. The call runs on a thread that was stopped somewhere with the
// others stopped too (or running, in a one-thread session): if that thread
// itself holds one of those locks, the call waits on it forever — the
// thread waits for itself (non-recursive mutexes), until the call's timeout.
// So before lending a thread, its stack is walked (CFI, internal/unwind) and
// the thread is refused if its pc or any return address lies in code during
// which it may hold such a lock:
//
//   - all of libgcc_s (the unwinder and the registration functions, whose
//     internals have no exported symbols) and all of the dynamic loader
//     (ld.so: the loader lock, which _Unwind_Find_FDE's dl_iterate_phdr
//     takes, is held while ld.so runs constructors and callbacks);
//   - in the other modules (libc, an interposed malloc), the functions whose
//     names say malloc, free, the loader or fork: *alloc*, free, *_free,
//     _int_*, malloc_*, tcache*, arena_*, *dlopen*, *dlclose*, *dlsym*,
//     dl_iterate_phdr, _dl_*, *fork*, _Unwind_*, __register_frame*,
//     __deregister_frame*. Their internal helpers (static, unnamed in a
//     stripped libc) are called from these, so they show in the walk.
//
// A walk that cannot be completed is finished by a conservative scan of the
// rest of the stack: any word pointing into such code refuses the thread
// (a stale word costs only a refusal). Locks the callee does not take (stdio,
// an application's own mutexes) do not matter.

// callGuard holds what the check needs, computed before any stop.
type callGuard struct {
	pid   int
	spans []span
	unw   *unwind.Unwinder
	maps  []procmaps.Mapping
}

// newCallGuard finds the lock-holding code of target t and builds its
// unwinder (unw if given).
func newCallGuard(t *target, unw *unwind.Unwinder) *callGuard {
	g := &callGuard{pid: t.pid, maps: t.maps, unw: unw}
	if g.unw == nil {
		g.unw = t.unwinder()
	}
	for _, m := range t.mods {
		base := filepath.Base(m.Path)
		if strings.HasPrefix(base, "ld-") || strings.HasPrefix(base, "libgcc_s") {
			g.spans = append(g.spans, span{lo: m.Start, hi: m.End, name: base})
			continue
		}
		fns, err := t.lockFuncs(m) // symcache.go
		if err != nil {
			continue
		}
		for _, f := range fns {
			g.spans = append(g.spans, span{lo: f.value + m.Bias, hi: f.value + f.size + m.Bias, name: f.name + " (" + base + ")"})
		}
	}
	return g
}

// takesCalleeLock: a function during which a thread may hold the malloc,
// loader or unwinder lock (see above).
func takesCalleeLock(name string) bool {
	for _, p := range []string{"_int_", "malloc_", "tcache", "arena_", "_dl_", "_Unwind_", "__register_frame", "__deregister_frame"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	for _, c := range []string{"alloc", "dlopen", "dlclose", "dlsym", "dl_iterate_phdr", "fork"} {
		if strings.Contains(name, c) {
			return true
		}
	}
	return name == "free" || name == "cfree" || strings.HasSuffix(name, "_free")
}

// maxGuardScan bounds the stack copied for one thread's walk.
const maxGuardScan = 256 << 10

// safe is proc.CallVoid's predicate. It runs on the ptrace thread with the
// Process locked, so it reads memory with proc.ReadMem.
func (g *callGuard) safe(th proc.Thread) error {
	in := func(a uint64) (span, bool) {
		for _, s := range g.spans {
			if a >= s.lo && a < s.hi {
				return s, true
			}
		}
		return span{}, false
	}
	sp := th.Regs.SP()
	read := func(a uint64, b []byte) error { return proc.ReadMem(g.pid, a, b) }
	st := &unwind.Stack{Lo: sp, Mem: read}
	if m, ok := procmaps.Find(g.maps, sp); ok {
		st.Data = make([]byte, min(m.End, sp+maxGuardScan)-sp)
		if read(sp, st.Data) != nil {
			st.Data = nil
		}
	}
	res := g.unw.Unwind(th.Regs.PC(), sp, th.Regs.FP(), st)
	for i, pc := range res.PCs {
		look := pc
		if i > 0 {
			look-- // a return address: the call is the instruction before
		}
		if s, ok := in(look); ok {
			return fmt.Errorf("is inside %s (frame #%d at %#x), where it may hold a lock the call takes", s.name, i, pc)
		}
	}
	if res.Complete || st.Data == nil {
		return nil
	}
	// Words at sp's alignment, never below st.Lo (sp): a thread may be
	// stopped with sp not a multiple of 8, and rounding down would index
	// before st.Data (a panic, and a refused patch).
	lo := st.Lo + (max(res.SP, sp)-st.Lo)&^7
	for a := lo; a+8 <= st.Lo+uint64(len(st.Data)); a += 8 {
		w := uint64(0)
		for k := 7; k >= 0; k-- {
			w = w<<8 | uint64(st.Data[a-st.Lo+uint64(k)])
		}
		if s, ok := in(w - 1); ok {
			return fmt.Errorf("may be inside %s (a stack word at %#x points into it; the walk stopped: %s)", s.name, a, res.Reason)
		}
	}
	return nil
}
