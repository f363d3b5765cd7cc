package engine

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/procmaps"
	"github.com/hotpatch/hotpatch/internal/record"
	"github.com/hotpatch/hotpatch/internal/unwind"
)

// RevertReport is the result of Revert.
type RevertReport struct {
	PatchID     string        `json:"patch_id"`
	PID         int           `json:"pid"`
	Functions   []string      `json:"functions"`
	Freed       bool          `json:"region_freed"`
	Retained    string        `json:"region_retained_because,omitempty"`
	Consistency string        `json:"consistency"`
	Attempts    int           `json:"attempts"`
	Pause       time.Duration `json:"pause_ns"`
	// Stall is the longest time any one thread was stopped, over every stop
	// of the revert (freeing kept regions, the restore, freeing the region).
	Stall   time.Duration `json:"stall_ns"`
	Elapsed time.Duration `json:"elapsed_ns"`
	Phases  []Phase       `json:"phases,omitempty"` // Elapsed split into its steps
	// DryRun: nothing was changed; Functions, Freed and Retained say what
	// the revert would do.
	DryRun bool       `json:"dry_run,omitempty"`
	free   *regionRef // to unmap after the resume
}

// Revert puts back the original bytes of every function patch id redirected
// in process pid, and frees the patch's region once no thread can be
// executing in it.
func Revert(pid int, id string, opt Options) (res *RevertReport, err error) {
	defer recoverPanic(&err, "revert")
	exists := false
	defer diedDuring(&err, &exists, pid)
	start := time.Now()
	tl := newTimeline(start)
	opt = opt.withMeter()
	defer func() {
		if res != nil {
			res.Stall = opt.meter.Stall()
		}
	}()
	unlock, err := lockProcess(pid, opt.timeout())
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, maps, err := statusMaps(pid)
	if err != nil {
		return nil, err
	}
	exists = true
	st, maps, keptPause, err := freeKeptBeforeRevert(pid, st, maps, opt)
	if err != nil {
		return nil, err
	}
	found, err := appliedPatch(pid, st, id)
	if err != nil {
		return nil, err
	}
	if allPadded(found) && !opt.NoReady {
		// Patch-ready: revert without stopping any thread. (Patch-ready
		// functions never stack, see applyOnce, so no patch sits on top.)
		rep := &RevertReport{PatchID: id, PID: pid, DryRun: opt.DryRun}
		tl.mark("lock, read records")
		if opt.DryRun {
			dryRevertReady(found, rep)
			rep.Elapsed = time.Since(start)
			return rep, nil
		}
		if err := revertReady(pid, found, rep); err != nil {
			return nil, err
		}
		tl.mark("restore entries (nothing stopped)")
		rep.Pause = max(rep.Pause, keptPause)
		return rep.finish(tl, start), nil
	}
	cons, err := opt.consistency()
	if err != nil {
		return nil, err
	}
	rep := &RevertReport{PatchID: id, PID: pid, Consistency: cons, DryRun: opt.DryRun}
	tl.mark("lock, read records")
	t, unw, err := revertUnwinder(pid, maps, cons)
	if err != nil {
		return nil, err
	}
	tl.mark("unwind tables")
	// The first attempt takes the maps and records read under the lock
	// (nothing of ours was mapped since; see revertOnce).
	view := &lockView{maps: maps, recs: st.Patches}
	freedInStop, err := revertStopped(pid, found.Base, rep, t, unw, view, opt, tl)
	if err != nil {
		return nil, err
	}
	rep.Pause = max(rep.Pause, keptPause)
	if freedInStop {
		rep.Freed = rep.Retained == ""
	} else if rep.free != nil {
		if rep.Retained = freeRegion(pid, rep.free, opt); rep.Retained == "" {
			rep.Freed = true
		}
		tl.mark("free region (one thread stopped)")
	}
	return rep.finish(tl, start), nil
}

// finish completes the report of a revert that did its work: its phases
// and the time it took.
func (rep *RevertReport) finish(tl *timeline, start time.Time) *RevertReport {
	rep.Phases = tl.phases
	rep.Elapsed = time.Since(start)
	return rep
}

// freeKeptBeforeRevert frees the regions earlier reverts kept, where no
// thread can reach them any more (kept.go), and reads the status and maps
// again if it freed one. A dry run leaves them.
func freeKeptBeforeRevert(pid int, st *StatusReport, maps []procmaps.Mapping, opt Options) (_ *StatusReport, _ []procmaps.Mapping, pause time.Duration, err error) {
	if opt.DryRun {
		return st, maps, 0, nil
	}
	_, freed, pause, _ := freeKept(pid, st.Patches, opt)
	if freed {
		if st, maps, err = statusMaps(pid); err != nil {
			return nil, nil, 0, err
		}
	}
	return st, maps, pause, nil
}

// appliedPatch returns the record of patch id, applied in process pid.
func appliedPatch(pid int, st *StatusReport, id string) (PatchStatus, error) {
	var found PatchStatus
	for _, p := range st.Patches {
		if p.ID == id && p.State == record.StateApplied {
			found = p
		}
	}
	if found.Base == 0 {
		return PatchStatus{}, fmt.Errorf("%w: process %d has no applied patch %q", ErrNotApplied, pid, id)
	}
	return found, nil
}

// revertUnwinder returns, for the stack model, the target and its stack
// walker with the call frame information parsed before the stop; nil
// otherwise.
func revertUnwinder(pid int, maps []procmaps.Mapping, cons string) (*target, *unwind.Unwinder, error) {
	if cons != ConsistencyStack {
		return nil, nil, nil
	}
	t, err := readTargetArchFrom(pid, maps)
	if err != nil {
		return nil, nil, err
	}
	var unw *unwind.Unwinder
	if t.arch != nil {
		unw = t.unwinder()
		t.prewarm(unw)
	}
	return t, unw, nil
}

// revertStopped restores the entries of the patch at base with every thread
// stopped, retrying while threads are busy; a process of one thread has
// its region freed in that same stop (freedInStop). The first attempt takes
// view, the maps and records read under the lock.
func revertStopped(pid int, base uint64, rep *RevertReport, t *target, unw *unwind.Unwinder, view *lockView, opt Options, tl *timeline) (freedInStop bool, err error) {
	pr, err := proc.Attach(pid, opt.attachOptions(false))
	if err != nil {
		return false, err
	}
	defer pr.Detach()
	tl.mark("attach")
	oneStop := oneThread(pid)
	var detachErr error
	attempt := func() (busy *busyError, err error) { // inside proc.Window, as apply's
		err = pr.Window(func() error {
			var err error
			first := view
			view = nil
			if busy, err = revertOnce(pr, base, rep, t, unw, first); busy != nil || err != nil {
				return err
			}
			if rep.free != nil && oneStop {
				freedInStop = freeNow(pr, rep)
			}
			// The entries are restored (or, in a dry run, the process
			// resumed): done, whatever the detach says; it ends the
			// window, in it.
			detachErr = pr.Detach()
			return nil
		})
		return busy, err
	}
	if err := retry(opt.timeout(), &rep.Attempts, attempt); err != nil {
		return false, err
	}
	if detachErr != nil {
		return false, fmt.Errorf("patch at %#x reverted in process %d, but detach: %w", base, pid, detachErr)
	}
	if freedInStop {
		tl.mark(phaseRevertOneStop)
	} else {
		tl.mark("stop, check, restore, detach")
	}
	rep.Pause = pr.Pause()
	return freedInStop, nil
}

// revertOnce is one stop window of a revert. atLock, when not nil, is the
// view of the maps and records Revert read under the lock, used instead of
// reading them again (see below).
func revertOnce(pr *proc.Process, base uint64, rep *RevertReport, t *target, unw *unwind.Unwinder, atLock *lockView) (*busyError, error) {
	// Read before the stop (records change only under our lock; see
	// applyOnce), or taken from atLock: the records are the same for that
	// reason, and the maps only bound the stack copies, which a view from
	// before the stop does whenever it was read. A stack pointer in no
	// mapping of the view makes stackMapping read them again (stopped); a
	// mapping grown since (merged with a neighbour) only holds more than
	// the thread's frames; one shrunk since makes the copy fail, and a
	// stack that cannot be read keeps the region (regionInUseIn).
	maps, others := []procmaps.Mapping(nil), []PatchStatus(nil)
	if atLock != nil {
		maps, others = atLock.maps, atLock.recs
	} else {
		var err error
		if maps, err = procmaps.Read(pr.Pid()); err != nil {
			return nil, fmt.Errorf("read maps: %w", err)
		}
		if others, err = readRecords(pr.Pid(), maps); err != nil {
			return nil, err
		}
	}
	if err := pr.Stop(); err != nil {
		return nil, fmt.Errorf("stop process %d: %w", pr.Pid(), err)
	}
	// Every refusal and error of the stop resumes the process.
	if busy, err := revertInStop(pr, base, rep, t, unw, maps, others); busy != nil || err != nil {
		pr.Resume()
		return busy, err
	}
	if rep.DryRun {
		return nil, pr.Resume()
	}
	return nil, nil
}

// revertInStop is revertOnce's stop, the process stopped: it checks the
// record, the entries and the threads, restores the entries (all or
// nothing) and decides the region's fate (rep.free, rep.Retained). A dry
// run only reports. The caller resumes the process on a busy refusal or an
// error.
func revertInStop(pr *proc.Process, base uint64, rep *RevertReport, t *target, unw *unwind.Unwinder, maps []procmaps.Mapping, others []PatchStatus) (*busyError, error) {
	// Re-read the record with the process stopped: it is the truth.
	rec, state, err := readRecord(pr.ReadMem, base)
	if err != nil {
		return nil, err
	}
	if state != record.StateApplied {
		return nil, fmt.Errorf("%w: patch %s is %s", ErrNotApplied, rec.ID, state)
	}
	if err := checkJumps(pr, rec, others); err != nil {
		return nil, err
	}
	threads := pr.Threads()
	for _, th := range threads {
		for _, rd := range rec.Redirects {
			if pc := th.Regs.PC(); pc > rd.Addr && pc < rd.Addr+uint64(len(rd.Jump)) {
				return &busyError{fmt.Sprintf("thread %d is inside the jump of %s (pc %#x)", th.TID, rd.Func, pc)}, nil
			}
		}
	}
	// A thread that took an entry jump and sits at its slot goes back to
	// the entry before the slot's padding returns (entrymove.go).
	moves, why := offSlots(threads, rec.Redirects)
	if why != "" {
		return &busyError{why}, nil
	}
	sc := newStackCopies(pr, threads, &maps) // before the moves: see stackCopies.from
	threads = movedThreads(threads, moves)
	// A thread that took a patch-ready entry's short jump and sits at the
	// long jump in the padding goes into the region next, whatever the
	// entry holds: wait until it is through.
	if busy := padInUse(threads, rec.Redirects); busy != "" {
		return &busyError{busy}, nil
	}
	if unw != nil {
		// Stack model: no thread may be executing in, or due to return into,
		// the patch's code when the old code comes back.
		spans := []span{{rec.TextStart, rec.TextEnd, "the code of patch " + rec.ID, 0}}
		if busy := t.activeOnStacks(pr, unw, threads, sc, spans); busy != nil {
			return busy, nil
		}
	}
	if rep.DryRun {
		dryReverted(pr, rep, rec, threads, maps)
		return nil, nil
	}
	if err := restoreAll(pr, base, rec, moves); err != nil {
		return nil, err
	}
	// The padding above a patch-ready entry goes back too (see
	// restorePadding); a failure leaves only a dead jump there.
	restorePadding(pr, threads, rec.Redirects)
	rep.Functions = nil
	for _, rd := range rec.Redirects {
		rep.Functions = append(rep.Functions, rd.Func)
	}
	// The region can go only if no thread can still execute in it: not
	// running there now and no return address into it on any stack.
	why = regionInUseIn(sc, threads, rec.Base, rec.Base+rec.Size)
	// Otherwise free it after the resume, with one thread stopped: no
	// thread is in it or due to return into it, and with the jumps gone
	// none can enter it. Marked reverted first, so that a crash before the
	// munmap leaves a region recover frees.
	if err := pr.WriteMem(base+record.StateOffset, record.StateBytes(record.StateReverted)); err != nil {
		return nil, fmt.Errorf("mark reverted: %w", err)
	}
	if why != "" {
		rep.Retained = why
	} else {
		rep.free = &regionRef{rec.Base, rec.Size}
	}
	return nil, nil
}

// checkJumps checks, with the process stopped, that every entry of the
// patch still holds its jump (and its slot its slot jump): a patch stacked
// on top must be reverted first, and bytes something else changed are left
// alone.
func checkJumps(pr *proc.Process, rec *record.Record, others []PatchStatus) error {
	for _, rd := range rec.Redirects {
		cur := make([]byte, len(rd.Jump))
		if err := pr.ReadMem(rd.Addr, cur); err != nil {
			return fmt.Errorf("read %s at %#x: %w", rd.Func, rd.Addr, err)
		}
		if string(cur) != string(rd.Jump) {
			for _, o := range others {
				for _, ord := range o.Redirects {
					if o.State == record.StateApplied && ord.Addr == rd.Addr && string(ord.Orig) == string(rd.Jump) {
						return fmt.Errorf("%w: patch %s replaced %s again after %s; revert %s first (last in, first out)",
							ErrStacked, o.ID, rd.Func, rec.ID, o.ID)
					}
				}
			}
			return fmt.Errorf("%w: %s at %#x holds % x, not this patch's jump % x: something else changed it; not reverting",
				ErrMismatch, rd.Func, rd.Addr, cur, rd.Jump)
		}
		if err := checkSlotJump(pr, rd, rec.ID, others); err != nil {
			return err
		}
	}
	return nil
}

// restoreAll moves the threads off the slots, marks the record reverting
// and puts back every entry's original bytes, last first; on a failure it
// puts back the jumps restored so far, the threads and the record: all or
// nothing.
func restoreAll(pr *proc.Process, base uint64, rec *record.Record, moves []move) error {
	if err := setMoves(pr, moves); err != nil {
		return err
	}
	if err := pr.WriteMem(base+record.StateOffset, record.StateBytes(record.StateReverting)); err != nil {
		unsetMoves(pr, moves)
		return fmt.Errorf("mark reverting: %w", err)
	}
	for i := len(rec.Redirects) - 1; i >= 0; i-- {
		rd := rec.Redirects[i]
		if err := restoreRedirect(pr, rd); err != nil {
			for j := i + 1; j < len(rec.Redirects); j++ {
				redoRedirect(pr, rec.Redirects[j])
			}
			unsetMoves(pr, moves)
			pr.WriteMem(base+record.StateOffset, record.StateBytes(record.StateApplied))
			return fmt.Errorf("restore %s at %#x: %w", rd.Func, rd.Addr, err)
		}
	}
	return nil
}

type regionRef struct{ base, size uint64 }

// phaseRevertOneStop names the one stop of a revert that frees the region
// in the same window as the checks and the restore (freeNow).
const phaseRevertOneStop = "stop, check, restore, detach (the region freed in the same stop)"

// freeNow frees the reverted region rep.free in the stop that reverted it,
// for a process of one thread (see oneStop in apply.go: a second stop would
// cost that thread a second interrupt, wake-up and detach). It is as safe
// as the one-thread stop after the resume that frees it otherwise: every
// thread is stopped, none is in the region or due to return into it
// (revertOnce checked), and with the jumps gone none can enter it; the
// record says reverted already. It reports whether it handled the region
// (freed it, or set rep.Retained to why not); it does not when the region's
// unwind tables are registered, since __deregister_frame is an injected
// function call whose callguard needs the one-thread session.
func freeNow(pr *proc.Process, rep *RevertReport) bool {
	regs, err := registeredFrames(pr.ReadMem, rep.free.base, rep.free.base+rep.free.size)
	if err != nil || len(regs) > 0 {
		return false
	}
	rep.Retained = freeInStop(pr, rep.free, frameFuncs{})
	return true
}

// checkSlotJump checks that a slot redirect's slot still holds this patch's
// long jump. Patches stacked on one slot redirect share the entry's short
// jump and differ only in the slot, so this is where a patch applied on top
// shows (last in, first out).
func checkSlotJump(pr *proc.Process, rd record.Redirect, id string, others []PatchStatus) error {
	if !rd.HasSlot() {
		return nil
	}
	cur := make([]byte, len(rd.SlotJump))
	if err := pr.ReadMem(rd.SlotAddr, cur); err != nil {
		return fmt.Errorf("read the slot of %s at %#x: %w", rd.Func, rd.SlotAddr, err)
	}
	if string(cur) == string(rd.SlotJump) {
		return nil
	}
	for _, o := range others {
		for _, ord := range o.Redirects {
			if o.State == record.StateApplied && ord.HasSlot() && ord.SlotAddr == rd.SlotAddr && string(ord.SlotOrig) == string(rd.SlotJump) {
				return fmt.Errorf("%w: patch %s replaced %s again after %s; revert %s first (last in, first out)", ErrStacked, o.ID, rd.Func, id, o.ID)
			}
		}
	}
	return fmt.Errorf("%w: the slot of %s at %#x holds % x, not this patch's jump % x: something else changed it; not reverting",
		ErrMismatch, rd.Func, rd.SlotAddr, cur, rd.SlotJump)
}

// restoreRedirect puts back the bytes one redirect changed, in the reverse
// order of the apply: the entry, then its slot (dead again once no entry
// leads there; offSlots moved any thread about to execute it).
func restoreRedirect(pr *proc.Process, rd record.Redirect) error {
	if err := pr.WriteMem(rd.Addr, rd.Orig); err != nil {
		return err
	}
	if rd.HasSlot() {
		if err := pr.WriteMem(rd.SlotAddr, rd.SlotOrig); err != nil {
			pr.WriteMem(rd.Addr, rd.Jump)
			return fmt.Errorf("slot at %#x: %w", rd.SlotAddr, err)
		}
	}
	return nil
}

// redoRedirect writes a redirect's jumps again, slot first.
func redoRedirect(pr *proc.Process, rd record.Redirect) {
	if rd.HasSlot() {
		pr.WriteMem(rd.SlotAddr, rd.SlotJump)
	}
	pr.WriteMem(rd.Addr, rd.Jump)
}

// freeRegion unmaps a reverted region (deregistering its unwind tables
// first) with one thread of the process stopped. It returns why the region
// was kept, or "".
func freeRegion(pid int, r *regionRef, opt Options) string {
	ff, err := frameFuncsToFree(pid, [2]uint64{r.base, r.size})
	if err != nil {
		return fmt.Sprintf("cannot read the process to find __deregister_frame: %v (hotpatch recover frees it)", err)
	}
	pr, err := proc.Attach(pid, opt.attachOptions(true))
	if err != nil {
		return fmt.Sprintf("cannot attach to unmap it: %v (hotpatch recover frees it)", err)
	}
	defer pr.Detach()
	why := ""
	pr.Window(func() error { // the requests of the stop run on the ptrace thread
		why = freeStopped(pr, r, ff)
		return nil
	})
	return why
}

// freeRegion's stop.
func freeStopped(pr *proc.Process, r *regionRef, ff frameFuncs) string {
	if err := pr.Stop(); err != nil {
		return fmt.Sprintf("cannot stop a thread to unmap it: %v (hotpatch recover frees it)", err)
	}
	return freeInStop(pr, r, ff)
}

// freeInStop unmaps region r of the stopped process pr (deregistering its
// unwind tables first, with ff), or says why it was kept.
func freeInStop(pr *proc.Process, r *regionRef, ff frameFuncs) string {
	if err := faultHook("free"); err != nil {
		return fmt.Sprintf("%v (hotpatch recover frees it)", err)
	}
	if why := munmapAllowed(pr, r.base, r.size); why != "" { // mapseq.go
		return why
	}
	if why := deregisterEHFrames(pr, r.base, r.base+r.size, ff); why != "" { // see ehframe.go
		return why
	}
	if err := pr.Munmap(r.base, r.size); err != nil {
		return fmt.Sprintf("munmap failed: %v", err)
	}
	return ""
}

// maxStackScan bounds the bytes of one thread's stack scanned for return
// addresses into a region.
const maxStackScan = 8 << 20

// regionInUse reports why [lo, hi) may still be executed by some thread: its
// pc is there, or a word on its stack (a conservative scan from the stack
// pointer to the top of the stack mapping) points there. "" when free.
func regionInUse(pr *proc.Process, threads []proc.Thread, maps []procmaps.Mapping, lo, hi uint64) string {
	return regionInUseIn(newStackCopies(pr, threads, &maps), threads, lo, hi)
}

// regionInUseIn is regionInUse on the window's stack copies (stacks.go).
func regionInUseIn(sc *stackCopies, threads []proc.Thread, lo, hi uint64) string {
	for _, th := range threads {
		if pc := th.Regs.PC(); pc >= lo && pc < hi {
			return fmt.Sprintf("thread %d is executing in it (pc %#x)", th.TID, pc)
		}
		sp := th.Regs.SP() &^ 7
		buf, mapped, err := sc.from(th.TID, sp)
		if !mapped {
			return fmt.Sprintf("thread %d: stack pointer %#x is in no mapping", th.TID, th.Regs.SP())
		}
		if err != nil {
			return fmt.Sprintf("thread %d: cannot read its stack: %v", th.TID, err)
		}
		for i := 0; i+8 <= len(buf); i += 8 {
			if w := binary.LittleEndian.Uint64(buf[i:]); w >= lo && w < hi {
				return fmt.Sprintf("thread %d may return into it (stack word %#x at %#x)", th.TID, w, sp+uint64(i))
			}
		}
	}
	return ""
}

func mustMaps(pid int) []procmaps.Mapping {
	m, _ := procmaps.Read(pid)
	return m
}

func allPadded(p PatchStatus) bool {
	if len(p.Redirects) == 0 {
		return false
	}
	for _, rd := range p.Redirects {
		if !rd.Padded() {
			return false
		}
	}
	return true
}

// stackMapping finds the mapping holding stack pointer sp in *maps, reading
// the maps again (into *maps) once when it is in none: a thread created after
// they were read may run on a stack mapped since.
func stackMapping(pid int, maps *[]procmaps.Mapping, sp uint64) (procmaps.Mapping, bool) {
	if m, ok := procmaps.Find(*maps, sp); ok {
		return m, true
	}
	fresh, err := procmaps.Read(pid)
	if err != nil {
		return procmaps.Mapping{}, false
	}
	*maps = fresh
	return procmaps.Find(fresh, sp)
}
