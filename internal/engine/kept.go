package engine

import (
	"fmt"
	"time"

	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/procmaps"
	"github.com/hotpatch/hotpatch/internal/record"
)

// A reverted patch's region stays mapped ("kept") when the revert could not
// prove that no thread will execute it again: a thread was running in it or
// had a return address into it (entry consistency lets a revert go ahead
// while threads are inside the new code), or a patch-ready revert, which
// stops nothing, kept it for a fast re-apply. Left alone, every such cycle
// leaks a region (three mappings); freeKept, run by the next apply, revert
// or status on the process, frees each one no thread can still reach.

// Why a region is kept, for status.
const (
	keptReady   = "kept for a fast re-apply of this patch-ready patch (its revert stopped no thread, so it cannot know none is in it); `hotpatch recover` frees it"
	keptInUse   = "kept: a thread was running in it or due to return into it when it was reverted; the next hotpatch command on this process frees it once none is"
	keptUnknown = "kept: not checked"
)

// keptReason says why a reverted region is still there, without stopping
// anything: a patch-ready region whose padding jumps are intact is kept
// for a re-apply, any other one because it was in use.
func keptReason(mem *proc.Mem, p PatchStatus) string {
	if allPadded(p) && mem != nil && readyRecordIntact(mem, p.Record) {
		return keptReady
	}
	return keptInUse
}

// freeKept frees the kept regions among recs that no thread can still
// execute: no thread's pc is in one, no word of any thread's stack points
// into it (the return-address scan of regionInUse). It stops every thread
// of the process once, only if there is such a region (patch-ready regions
// kept for a re-apply are left alone and cost nothing). It returns, by
// region base, why each region it did not free is kept, whether it freed
// any, and how long its stop window was (0 if it stopped nothing): the
// caller's report counts it, the target felt it.
func freeKept(pid int, recs []PatchStatus, opt Options) (why map[uint64]string, freed bool, pause time.Duration, err error) {
	why = map[uint64]string{}
	var todo []PatchStatus
	mem, _ := proc.OpenMem(pid)
	if mem != nil {
		defer mem.Close()
	}
	for _, p := range recs {
		if !isKept(p) {
			continue
		}
		if r := keptReason(mem, p); r != keptInUse {
			why[p.Base] = r
			continue
		}
		why[p.Base] = keptUnknown
		todo = append(todo, p)
	}
	if len(todo) == 0 {
		return why, false, 0, nil
	}
	var regions [][2]uint64
	for _, p := range todo {
		regions = append(regions, [2]uint64{p.Base, p.Size})
	}
	ff, ffErr := frameFuncsToFree(pid, regions...)
	maps, err := procmaps.Read(pid)
	if err != nil {
		return why, false, 0, fmt.Errorf("%w: process %d: %v", proc.ErrNoProcess, pid, err)
	}
	pr, err := proc.Attach(pid, opt.attachOptions(false))
	if err != nil {
		return why, false, 0, err
	}
	defer pr.Detach()
	if err := pr.Stop(); err != nil {
		return why, false, pr.Pause(), fmt.Errorf("stop process %d to free kept regions: %w", pid, err)
	}
	threads := pr.Threads()
	for _, p := range todo {
		why[p.Base] = freeOneKept(pr, threads, maps, p, ff, ffErr)
		freed = freed || why[p.Base] == ""
		if why[p.Base] == "" {
			delete(why, p.Base)
		}
	}
	if err := pr.Detach(); err != nil {
		return why, freed, pr.Pause(), fmt.Errorf("detach: %w", err)
	}
	return why, freed, pr.Pause(), nil
}

// freeOneKept unmaps one kept region with every thread stopped, or returns
// why it must stay. The record is read again first: it is the truth, and
// only a region still marked reverted may go.
func freeOneKept(pr *proc.Process, threads []proc.Thread, maps []procmaps.Mapping, p PatchStatus, ff frameFuncs, ffErr error) string {
	if _, state, err := readRecord(pr.ReadMem, p.Base); err != nil || state != record.StateReverted {
		return fmt.Sprintf("kept: its record changed (%v %v)", state, err)
	}
	in := padInUse(threads, p.Redirects)
	if in == "" {
		in = regionInUse(pr, threads, maps, p.Base, p.Base+p.Size)
	}
	if in != "" {
		return "kept: " + in + "; the next hotpatch command on this process frees it once no thread is"
	}
	if in := deregisterEHFrames(pr, p.Base, p.Base+p.Size, ff); in != "" {
		if ffErr != nil {
			in += fmt.Sprintf(" (%v)", ffErr)
		}
		return "kept: " + in
	}
	if err := restorePadding(pr, threads, p.Redirects); err != nil {
		return "kept: " + err.Error()
	}
	if err := pr.Munmap(p.Base, p.Size); err != nil {
		return fmt.Sprintf("kept: munmap failed: %v", err)
	}
	return ""
}

// StatusFree is Status after freeing the kept regions no thread can still
// execute (see freeKept); each region still kept says why. It stops the
// process briefly, only when there is such a region. It never waits for
// another hotpatch command (it then reports without freeing), and when it
// cannot free (no permission to trace, say) it still reports what is there.
func StatusFree(pid int, opt Options) (_ *StatusReport, err error) {
	defer recoverPanic(&err, "status")
	st, err := Status(pid)
	if err != nil || !anyKept(st.Patches) {
		return st, err
	}
	unlock, err := lockProcess(pid, 100*time.Millisecond)
	if err != nil {
		return st, nil // busy: Status's reasons stand
	}
	defer unlock()
	if st, err = Status(pid); err != nil {
		return nil, err
	}
	why, freed, _, ferr := freeKept(pid, st.Patches, opt)
	if freed {
		if st, err = Status(pid); err != nil {
			return nil, err
		}
	}
	for i := range st.Patches {
		p := &st.Patches[i]
		if r := why[p.Base]; isKept(*p) && r != "" && r != keptUnknown {
			p.Kept = r
		} else if isKept(*p) && ferr != nil {
			p.Kept += fmt.Sprintf(" (not checked now: %v)", ferr)
		}
	}
	return st, nil
}

func anyKept(ps []PatchStatus) bool {
	for _, p := range ps {
		if isKept(p) {
			return true
		}
	}
	return false
}

// isKept reports whether p is a reverted patch's region, still mapped.
func isKept(p PatchStatus) bool {
	return p.StateName == record.StateReverted.String() && p.State == record.StateReverted
}

// setKept fills in why each kept region is there, as far as can be told
// without stopping the process (StatusFree checks the threads).
func setKept(pid int, recs []PatchStatus) {
	if !anyKept(recs) {
		return
	}
	mem, _ := proc.OpenMem(pid)
	if mem != nil {
		defer mem.Close()
	}
	for i := range recs {
		if isKept(recs[i]) {
			recs[i].Kept = keptReason(mem, recs[i])
		}
	}
}
