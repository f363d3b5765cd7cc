package engine

// Dry runs (Options.DryRun): apply and revert do every check of the real
// operation against the live process and change nothing in it.
//
// An apply's dry run reads the maps and records, links the patch for the
// address the real apply would choose, checks the run-pre bytes, then stops
// every thread and runs the checks of the real stop window: that the
// target's seccomp filters allow the system calls that would map the region
// (without making them), the bytes to be replaced, the slots, threads
// inside the overwritten bytes, the stacks; retrying like the real apply
// until --timeout. It then resumes the
// process: nothing was mapped, written or moved. What it cannot foresee is
// what the process does between the dry run and the real one, nor whether a
// thread free of the unwinder's lock will be found to call __register_frame
// for a patch with unwind tables (callguard.go; the call is not made).
//
// What a dry run leaves alone that the real command would do on the way:
// regions earlier reverts kept are not freed (kept.go), and a reverted
// patch-ready region is not flipped back on.

import (
	"time"

	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/procmaps"
	"github.com/hotpatch/hotpatch/internal/record"
)

// dryApply is the rest of an apply's dry run once pp is prepared and its
// run-pre bytes checked: place and link, then the checks of the stop
// window (the seccomp check of the mapping calls among them).
func dryApply(pp *prepared, p *patchfile.Patch, rep *ApplyReport, opt Options, tl *timeline, start time.Time) (*ApplyReport, error) {
	// The maps Apply read under the lock, as the real apply's first
	// placement takes them (placeIn): one read of /proc/PID/maps less.
	im, err := pp.placeIn(p, pp.t.maps)
	if err != nil {
		return nil, err
	}
	tl.mark("place and link")
	finish := func(path string) (*ApplyReport, error) {
		for i, r := range im.plans {
			rep.Functions = append(rep.Functions, FuncReport{Name: pp.funcs[i].spec.Name, Aliases: pp.funcs[i].names(), Entry: pp.funcs[i].fn.Addr,
				At: r.Addr, New: im.rec.Redirects[i].New, Kind: r.Kind, Path: path})
		}
		rep.Phases = tl.phases
		rep.Elapsed = time.Since(start)
		return rep, nil
	}
	if !opt.NoReady && readyUsable(pp, im) {
		// The real apply takes the patch-ready path: one thread stopped to
		// map the region, no stop window for the redirects.
		pause, err := pp.drySeccomp(im)
		if err != nil {
			return nil, err
		}
		rep.AllocPause, rep.Attempts = pause, 1
		rep.Consistency = ConsistencyEntry + " (implied by the patch-ready path)"
		tl.mark("seccomp check (one thread stopped)")
		return finish("patch-ready")
	}
	pr, err := proc.Attach(pp.t.pid, opt.attachOptions(false))
	if err != nil {
		return nil, err
	}
	defer pr.Detach()
	im.dry = true
	checkSeq := func() error {
		if _, err := pp.chooseSeq(pr, im); err != nil {
			return seccompBlocked(err)
		}
		return nil
	}
	if err := retry(opt.timeout(), &rep.Attempts, func() (*busyError, error) { return applyOnce(pr, pp, im, checkSeq) }); err != nil {
		return nil, err
	}
	if err := pr.Detach(); err != nil {
		return nil, err
	}
	tl.mark("stop, check, resume (dry run)")
	rep.Pause = pr.Pause()
	rep.Moved = im.moved
	return finish("stop")
}

// drySeccomp checks, with one thread stopped as allocate would, that the
// target's seccomp filters allow a sequence of system calls that maps im
// (proc.Process.SeccompCheck judges the calls on the thread that would run
// them, without running them).
func (pp *prepared) drySeccomp(im *image) (time.Duration, error) {
	pr, err := proc.Attach(pp.t.pid, pp.opt.attachOptions(true))
	if err != nil {
		return 0, err
	}
	defer pr.Detach()
	if err := pr.Stop(); err != nil {
		return 0, err
	}
	if _, err := pp.chooseSeq(pr, im); err != nil {
		return 0, seccompBlocked(err)
	}
	if err := pr.Detach(); err != nil {
		return 0, err
	}
	return pr.Pause(), nil
}

// readyUsable says whether applyReady would redirect im's functions without
// stopping the process: every function is patch-ready and its entry and
// padding hold the compiler's NOPs now.
func readyUsable(pp *prepared, im *image) bool {
	if len(pp.funcs) == 0 || !im.allReady() {
		return false
	}
	for _, f := range pp.funcs {
		if f.pre == nil {
			return false
		}
	}
	mem, err := proc.OpenMem(pp.t.pid)
	if err != nil {
		return false
	}
	defer mem.Close()
	for _, pd := range im.padded {
		cur := make([]byte, len(pd.Entry.Orig))
		pad := make([]byte, len(pd.Pad.Orig))
		if mem.Read(pd.Entry.Addr, cur) != nil || mem.Read(pd.Pad.Addr, pad) != nil ||
			string(cur) != string(pd.Entry.Orig) || string(pad) != string(pd.Pad.Orig) {
			return false
		}
	}
	return true
}

// wouldReapplyReady says whether reapplyReady would flip a reverted
// patch-ready region of p back on, and fills rep as it would.
func wouldReapplyReady(pid int, p *patchfile.Patch, rep *ApplyReport, recs []PatchStatus) bool {
	r, mem, ok, err := reapplicable(pid, p, recs)
	if err != nil || !ok {
		return false
	}
	mem.Close()
	rep.readyFunctions(r)
	return true
}

// dryRevertReady fills rep as revertReady would (it stops nothing and
// checks nothing a dry run could do first).
func dryRevertReady(r PatchStatus, rep *RevertReport) {
	for _, rd := range r.Redirects {
		rep.Functions = append(rep.Functions, rd.Func)
	}
	rep.Retained = "kept for a fast re-apply: a patch-ready revert stops no thread, so it cannot prove none is still running the patch (`hotpatch recover` frees it after a stack check)"
}

// dryReverted fills rep, with the process still stopped and every check of
// the revert passed, with what the revert would do: the functions it would
// restore, and whether it could free the region (the same test as the real
// revert's, regionInUse).
func dryReverted(pr *proc.Process, rep *RevertReport, rec *record.Record, threads []proc.Thread, maps []procmaps.Mapping) {
	rep.Functions = nil
	for _, rd := range rec.Redirects {
		rep.Functions = append(rep.Functions, rd.Func)
	}
	rep.Retained = regionInUse(pr, threads, maps, rec.Base, rec.Base+rec.Size)
	rep.Freed = rep.Retained == ""
}
