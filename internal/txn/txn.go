// Package txn is the transaction of a bundle's two halves: the hot half
// (the running processes, internal/engine for one, internal/fleet for the
// host) and the cold half (the target file on disk, internal/coldpatch). The
// CLI and any automation share it, so that the halves are always combined
// the same way:
//
//   - everything of both halves that can be checked without a change is
//     checked first (the cold half's file, build-id, content and backup; the
//     hot half checks itself before it touches a process);
//   - apply: the hot half first; the cold half is installed only once the hot
//     half succeeded, or when no process was asked (--cold-only); if the cold
//     half then fails, the processes this command patched are reverted;
//   - revert: the processes first; the original file is restored only once
//     they are reverted; if the restore then fails and the patch file is at
//     hand, the processes are patched again;
//   - each half's outcome is reported (Result), and the error returned is the
//     one that decided, so exit codes say what happened.
//
// docs/safety.md ("Hot and cold: one transaction") states the semantics.
package txn

import (
	"errors"
	"fmt"

	"github.com/hotpatch/hotpatch/internal/coldpatch"
	"github.com/hotpatch/hotpatch/internal/engine"
	"github.com/hotpatch/hotpatch/internal/fleet"
	"github.com/hotpatch/hotpatch/internal/patchfile"
)

// ErrNoCold: the cold half was asked for (--cold-only) and the bundle has
// none.
var ErrNoCold = errors.New("patch has no coldpatch")

// Options of a transaction.
type Options struct {
	// PIDs: one pid is that process (engine); none (every process mapping the
	// target) or several is the host-wide form (fleet).
	PIDs []int
	// NoCold leaves the file on disk alone; ColdOnly touches no process.
	NoCold, ColdOnly bool
	// Trusted: the bundle's signature was verified by a trusted key (see
	// coldpatch.Spec.Trusted).
	Trusted bool
	// Engine.DryRun makes the transaction a dry run: both halves are
	// checked (the processes by the engine's dry run, the file by
	// coldpatch's checks) and nothing is changed.
	Engine engine.Options
	// Filter selects processes of the host-wide form (fleet.Filter); with a
	// filter, one pid also takes the host-wide form.
	Filter fleet.Filter
	// Jobs, AllOrNone and Progress are the fleet's (fleet.Options).
	Jobs      int
	AllOrNone bool
	Progress  func(done, total int)
	Cold      coldpatch.Options
}

func (o Options) single() bool { return len(o.PIDs) == 1 && o.Filter.Empty() }

func (o Options) fleet(pids []int) fleet.Options {
	return fleet.Options{PIDs: pids, Jobs: o.Jobs, AllOrNone: o.AllOrNone, Engine: o.Engine, Progress: o.Progress, Filter: o.Filter}
}

// Outcomes of one half.
const (
	Done       = "done"        // applied (apply) or reverted/restored (revert) by this command
	Already    = "already"     // nothing to do: it already was so
	NotAsked   = "not-asked"   // --no-cold, --cold-only, or the bundle has no coldpatch
	NotDone    = "not-done"    // not attempted: the other half failed or was refused
	RolledBack = "rolled-back" // done, then undone because the other half failed
	Failed     = "failed"      // failed; as it was before (see Reason)
	Partial    = "partial"     // host-wide: done in some processes, failed in others
	DryRun     = "dry-run"     // --dry-run: every check passed and it would be done; nothing was changed
)

// dryCold is the cold half of a dry run whose checks passed.
var dryCold = Half{DryRun, "checked; the file on disk is left as it is (--dry-run)"}

// Half is the outcome of one half.
type Half struct {
	Outcome string `json:"outcome"`
	Reason  string `json:"reason,omitempty"`
}

// Result is what a transaction did, half by half, with the reports of the
// parts that ran.
type Result struct {
	Operation string `json:"operation"`
	PatchID   string `json:"patch_id"`
	Hot       Half   `json:"hot"`
	Cold      Half   `json:"cold"`
	// The reports behind the outcomes (nil when that part did not run).
	Applied   *engine.ApplyReport  `json:"-"`
	Reverted  *engine.RevertReport `json:"-"`
	Fleet     *fleet.Report        `json:"-"`
	ColdFile  *coldpatch.Result    `json:"-"`
	RolledOut *fleet.Report        `json:"-"` // host-wide rollback of the hot half
}

func coldSpec(p *patchfile.Patch, trusted bool) coldpatch.Spec {
	return coldpatch.Spec{ID: p.ID, Path: p.Target.Path, OrigSHA256: p.Target.SHA256, FixedSHA256: p.Cold.SHA256,
		Fixed: p.ColdData(), BuildID: p.Target.BuildID, Trusted: trusted}
}

// Apply applies both halves of p (see the package comment). The error is
// the one that decided the outcome (nil: every half asked for is in place).
func Apply(p *patchfile.Patch, opt Options) (*Result, error) {
	res := &Result{Operation: "apply", PatchID: p.ID, Hot: Half{Outcome: NotAsked}, Cold: Half{Outcome: NotAsked}}
	if opt.ColdOnly && p.Cold == nil {
		return res, fmt.Errorf("%w: patch %s (--cold-only)", ErrNoCold, p.ID)
	}
	wantCold := p.Cold != nil && !opt.NoCold
	if wantCold {
		// Verify the cold half before anything changes.
		if _, err := coldpatch.Check(coldSpec(p, opt.Trusted), opt.Cold); err != nil {
			res.Cold = Half{Failed, err.Error()}
			if !opt.ColdOnly {
				res.Hot = Half{NotDone, "the cold half was refused"}
			}
			return res, err
		}
	}
	if !opt.ColdOnly {
		if err := applyHot(p, opt, res); err != nil {
			if wantCold {
				res.Cold = Half{NotDone, "the hot half failed: the file on disk is left as it was"}
			}
			return res, err
		}
	}
	if !wantCold {
		return res, nil
	}
	if opt.Engine.DryRun {
		res.Cold = dryCold
		return res, nil
	}
	cr, err := coldpatch.Apply(coldSpec(p, opt.Trusted), opt.Cold)
	if err != nil {
		res.Cold = Half{Failed, err.Error()}
		undoHotApply(p, opt, res)
		return res, err
	}
	res.ColdFile = cr
	res.Cold.Outcome = Done
	if cr.Action == coldpatch.AlreadyFixed {
		res.Cold.Outcome = Already
	}
	return res, nil
}

// applyHot runs the hot half of an apply and records its outcome.
func applyHot(p *patchfile.Patch, opt Options, res *Result) error {
	if opt.single() {
		ar, err := engine.Apply(opt.PIDs[0], p, opt.Engine)
		if err != nil {
			res.Hot = Half{Failed, err.Error()}
			return err
		}
		res.Applied = ar
		res.Hot.Outcome = Done
		if ar.AlreadyApplied {
			res.Hot.Outcome = Already
		} else if ar.DryRun {
			res.Hot.Outcome = DryRun
		}
		return nil
	}
	fr, err := fleet.Apply(p, opt.fleet(opt.PIDs))
	if err != nil {
		res.Hot = Half{Failed, err.Error()}
		return err
	}
	res.Fleet = fr
	return fleetOutcome(res, fr, fr.Summary.Applied+fr.Summary.WouldApply, fr.Summary.AlreadyApplied)
}

// fleetOutcome sets res.Hot from a host-wide report; done and already count
// the processes changed by this run and those already so.
func fleetOutcome(res *Result, fr *fleet.Report, done, already int) error {
	if err := fr.Err(); err != nil {
		res.Hot = Half{Failed, err.Error()}
		if done > 0 {
			res.Hot.Outcome = Partial
		}
		return err
	}
	res.Hot.Outcome = Done
	if done == 0 {
		res.Hot.Outcome = Already
	} else if fr.DryRun {
		res.Hot.Outcome = DryRun
	}
	return nil
}

// undoHotApply reverts what the hot half of this apply did, after the cold
// half failed.
func undoHotApply(p *patchfile.Patch, opt Options, res *Result) {
	switch {
	case res.Hot.Outcome != Done && res.Hot.Outcome != Partial:
		return // nothing was changed by this command (already applied, or not asked)
	case opt.single():
		if _, err := engine.Revert(opt.PIDs[0], p.ID, opt.Engine); err != nil {
			res.Hot.Reason = fmt.Sprintf("the cold half failed, and reverting the process failed too (it stays patched): %v", err)
			return
		}
		res.Hot = Half{RolledBack, "the cold half failed"}
	default:
		pids := pidsWith(res.Fleet, fleet.Applied)
		rr, err := fleet.Revert(p.ID, opt.fleet(pids))
		if err == nil {
			err = rr.Err()
		}
		res.RolledOut = rr
		if err != nil {
			res.Hot.Reason = fmt.Sprintf("the cold half failed, and reverting the processes failed in some (see the report): %v", err)
			return
		}
		res.Hot = Half{RolledBack, fmt.Sprintf("the cold half failed: reverted in the %d process(es) this command patched", len(pids))}
	}
}

func pidsWith(r *fleet.Report, outcome string) []int {
	pids := []int{}
	if r == nil {
		return pids
	}
	for _, x := range r.Results {
		if x.Result == outcome {
			pids = append(pids, x.PID)
		}
	}
	return pids
}

// Revert reverts both halves of patch id: the processes first, then the
// file on disk. p is the patch file when the caller has it (it says whether
// the bundle has a cold half, and allows re-applying if the restore fails),
// else nil.
func Revert(id string, p *patchfile.Patch, opt Options) (*Result, error) {
	res := &Result{Operation: "revert", PatchID: id, Hot: Half{Outcome: NotAsked}, Cold: Half{Outcome: NotAsked}}
	wantCold, err := checkColdRevert(id, p, opt, res)
	if err != nil {
		if !opt.ColdOnly {
			res.Hot = Half{NotDone, "the cold half was refused"}
		}
		return res, err
	}
	if !opt.ColdOnly {
		if err := revertHot(id, opt, res); err != nil {
			if wantCold {
				res.Cold = Half{NotDone, "the hot half failed: the file on disk is left as it was"}
			}
			return res, err
		}
	}
	if !wantCold {
		return res, nil
	}
	if opt.Engine.DryRun {
		res.Cold = dryCold
		return res, nil
	}
	cr, err := coldpatch.Revert(id, opt.Cold)
	if err != nil {
		res.Cold = Half{Failed, err.Error()}
		undoHotRevert(p, opt, res)
		return res, err
	}
	res.ColdFile = cr
	res.Cold.Outcome = Done
	if cr.Action == coldpatch.AlreadyOriginal {
		res.Cold.Outcome = Already
	}
	return res, nil
}

// checkColdRevert decides whether the cold half is reverted and verifies it
// first. A backup that is gone is an error when the cold half is asked for
// (--cold-only) or the patch file says there is one and the file on disk is
// not the original.
func checkColdRevert(id string, p *patchfile.Patch, opt Options, res *Result) (bool, error) {
	if opt.NoCold {
		return false, nil
	}
	hasCold := p != nil && p.Cold != nil
	if !opt.ColdOnly && !hasCold && !coldpatch.HasBackup(id, opt.Cold) {
		res.Cold.Reason = "no coldpatch backup for this patch id (nothing of it was installed on disk)"
		return false, nil
	}
	_, err := coldpatch.CheckRevert(id, opt.Cold)
	if errors.Is(err, coldpatch.ErrNoBackup) && hasCold && !opt.ColdOnly {
		strict := opt.Cold
		strict.Force = false // "would replace" must mean "is the original"
		if a, cerr := coldpatch.Check(coldSpec(p, true), strict); cerr == nil && a == coldpatch.Replaced {
			// The file on disk is the original: the cold half was never
			// installed (apply --no-cold), there is nothing to restore.
			res.Cold = Half{Already, "the file on disk is the original; no backup was made"}
			return false, nil
		}
		err = fmt.Errorf("%w: the file on disk is not the original and cannot be restored (use --no-cold to revert only the processes)", err)
	}
	if err != nil {
		res.Cold = Half{Failed, err.Error()}
		return false, err
	}
	return true, nil
}

// revertHot runs the hot half of a revert and records its outcome.
func revertHot(id string, opt Options, res *Result) error {
	if opt.single() {
		rr, err := engine.Revert(opt.PIDs[0], id, opt.Engine)
		if err != nil {
			res.Hot = Half{Failed, err.Error()}
			return err
		}
		res.Reverted = rr
		res.Hot.Outcome = Done
		if rr.DryRun {
			res.Hot.Outcome = DryRun
		}
		return nil
	}
	fr, err := fleet.Revert(id, opt.fleet(opt.PIDs))
	if err != nil {
		res.Hot = Half{Failed, err.Error()}
		return err
	}
	res.Fleet = fr
	return fleetOutcome(res, fr, fr.Summary.Reverted+fr.Summary.WouldRevert, fr.Summary.NotApplied)
}

// undoHotRevert patches again the processes this revert reverted, after the
// restore of the file failed, when the patch file is at hand.
func undoHotRevert(p *patchfile.Patch, opt Options, res *Result) {
	if res.Hot.Outcome != Done && res.Hot.Outcome != Partial {
		return
	}
	if p == nil {
		res.Hot.Reason = "the cold half failed; the processes stay reverted (give the patch file instead of its id to have them patched again)"
		return
	}
	// Never inject code whose signature this command did not verify: revert
	// reads the patch file only to find what to undo, so patching again here
	// would load an unverified bundle into live processes.
	if !opt.Trusted {
		res.Hot.Reason = "the cold half failed; the processes stay reverted (the patch file's signature was not verified by this revert, so it is not applied again: run hotpatch apply with it)"
		return
	}
	if opt.single() {
		if _, err := engine.Apply(opt.PIDs[0], p, opt.Engine); err != nil {
			res.Hot.Reason = fmt.Sprintf("the cold half failed, and patching the process again failed too (it stays reverted): %v", err)
			return
		}
		res.Hot = Half{RolledBack, "the cold half failed: the process is patched again"}
		return
	}
	pids := pidsWith(res.Fleet, fleet.Reverted)
	ar, err := fleet.Apply(p, opt.fleet(pids))
	if err == nil {
		err = ar.Err()
	}
	res.RolledOut = ar
	if err != nil {
		res.Hot.Reason = fmt.Sprintf("the cold half failed, and patching the processes again failed in some: %v", err)
		return
	}
	res.Hot = Half{RolledBack, fmt.Sprintf("the cold half failed: patched again in the %d process(es) this command reverted", len(pids))}
}
