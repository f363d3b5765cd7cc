package engine

import (
	"fmt"
	"time"

	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/record"
)

// RecoverAction says what Recover did with one patch region.
type RecoverAction struct {
	PatchID string `json:"patch_id"`
	Was     string `json:"was"`
	// Action: "finished" (an apply whose jumps were all written is marked
	// applied), "rolled back" (jumps restored, region freed or retained),
	// "freed" (an incomplete or reverted region unmapped), "kept" (still in
	// use by a thread).
	Action string `json:"action"`
	Detail string `json:"detail,omitempty"`
}

// RecoverReport is the result of Recover.
type RecoverReport struct {
	PID     int             `json:"pid"`
	Actions []RecoverAction `json:"actions"`
	Pause   time.Duration   `json:"pause_ns"`
	Stall   time.Duration   `json:"stall_ns"` // the longest stop of any one thread
}

// Recover settles every patch that an interrupted hotpatch command left in
// transition in process pid, so that each is either fully applied or fully
// gone:
//   - incomplete region (no valid record): unmapped; no jump can lead there,
//     because jumps are written only after the record;
//   - applying: if every jump is in place, the apply is finished (state
//     applied); otherwise the jumps written are undone and the region freed;
//   - reverting: the revert is finished;
//   - reverted but retained: freed once no thread can be executing in it.
func Recover(pid int, opt Options) (_ *RecoverReport, err error) {
	defer recoverPanic(&err, "recover")
	found := false
	defer diedDuring(&err, &found, pid)
	unlock, err := lockProcess(pid, opt.timeout())
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := Status(pid)
	if err != nil {
		return nil, err
	}
	found = true
	rep := &RecoverReport{PID: pid}
	var todo []PatchStatus
	for _, p := range st.Patches {
		if p.InTransition() || p.State == record.StateReverted {
			todo = append(todo, p)
		}
	}
	if len(todo) == 0 {
		return rep, nil
	}
	var regions [][2]uint64
	for _, p := range todo {
		regions = append(regions, [2]uint64{p.Base, p.Size})
	}
	rc := &recovery{pid: pid}
	rc.ff, rc.ffErr = frameFuncsToFree(pid, regions...)
	// Read before the stop: the maps only bound the stack copies (a stack
	// pointer in no mapping of this view makes stackMapping read them again,
	// see revertOnce), and freeing a region unmaps no stack.
	maps := mustMaps(pid)
	pr, err := proc.Attach(pid, opt.attachOptions(false))
	if err != nil {
		return nil, err
	}
	defer pr.Detach()
	if err := pr.Stop(); err != nil {
		return nil, fmt.Errorf("stop process %d: %w", pid, err)
	}
	rc.pr, rc.threads = pr, pr.Threads()
	rc.stacks = newStackCopies(pr, rc.threads, &maps) // one copy of each stack for every region's check
	for _, p := range todo {
		a, err := rc.recoverPatch(p)
		if err != nil {
			return nil, err
		}
		rep.Actions = append(rep.Actions, a)
	}
	if err := pr.Detach(); err != nil {
		return nil, err
	}
	rep.Pause, rep.Stall = pr.Pause(), pr.Stall()
	return rep, nil
}

// recovery is Recover's one stop of every thread.
type recovery struct {
	pid     int
	pr      *proc.Process
	threads []proc.Thread
	ff      frameFuncs // to deregister the regions' unwind tables
	ffErr   error      // why ff could not be found, if so
	stacks  *stackCopies
}

// recoverPatch finishes or rolls back the half-done patch p (or frees its
// reverted region) and says what it did.
func (rc *recovery) recoverPatch(p PatchStatus) (RecoverAction, error) {
	pr := rc.pr
	a := RecoverAction{PatchID: p.ID, Was: p.StateName}
	switch {
	case p.StateName == StateIncomplete || p.State == record.StateReverted:
		rc.free(p, &a)
	case p.State == record.StateApplying:
		if rc.allJumpsWritten(p) {
			if err := pr.WriteMem(p.Base+record.StateOffset, record.StateBytes(record.StateApplied)); err != nil {
				return a, fmt.Errorf("finish %s: %w", p.ID, err)
			}
			a.Action = "finished"
			break
		}
		if err := restoreJumps(pr, p.Redirects); err != nil {
			return a, fmt.Errorf("roll back %s: %w", p.ID, err)
		}
		a.Action = "rolled back"
		rc.free(p, &a)
	case p.State == record.StateReverting:
		if err := restoreJumps(pr, p.Redirects); err != nil {
			return a, fmt.Errorf("finish revert of %s: %w", p.ID, err)
		}
		a.Action = "rolled back"
		rc.free(p, &a)
	}
	return a, nil
}

// allJumpsWritten reports whether every entry (and slot) of p holds its
// jump: the interrupted apply got as far as the last one.
func (rc *recovery) allJumpsWritten(p PatchStatus) bool {
	all := true
	for _, rd := range p.Redirects {
		cur := make([]byte, len(rd.Jump))
		if rc.pr.ReadMem(rd.Addr, cur) != nil || string(cur) != string(rd.Jump) {
			all = false
		}
		slot := make([]byte, len(rd.SlotJump))
		if rd.HasSlot() && (rc.pr.ReadMem(rd.SlotAddr, slot) != nil || string(slot) != string(rd.SlotJump)) {
			all = false
		}
	}
	return all
}

// free unmaps the region of p, whose jumps are gone, unless a thread may
// still run in it (then it is kept, marked reverted so that a later command
// frees it); a says which.
func (rc *recovery) free(p PatchStatus, a *RecoverAction) {
	pr, threads := rc.pr, rc.threads
	if err := restorePadding(pr, threads, p.Redirects); err != nil {
		a.Action, a.Detail = "kept", err.Error()
		return
	}
	why := padInUse(threads, p.Redirects)
	if why == "" {
		why = regionInUseIn(rc.stacks, threads, p.Base, p.Base+p.Size)
	}
	if why == "" {
		why = munmapAllowed(pr, p.Base, p.Size)
	}
	if why == "" && p.StateName != StateIncomplete {
		if why = deregisterEHFrames(pr, p.Base, p.Base+p.Size, rc.ff); why != "" && rc.ffErr != nil {
			why += fmt.Sprintf(" (%v)", rc.ffErr)
		}
	}
	if why != "" {
		a.Action, a.Detail = "kept", why
		if p.StateName != StateIncomplete {
			pr.WriteMem(p.Base+record.StateOffset, record.StateBytes(record.StateReverted))
		}
		return
	}
	if err := pr.Munmap(p.Base, p.Size); err != nil {
		a.Action, a.Detail = "kept", err.Error()
		return
	}
	if a.Action == "" {
		a.Action = "freed"
	}
}

// restoreJumps puts back the original bytes wherever the jump is still in
// place (a jump never written, or already restored, is left alone): each
// entry, then its slot, after moving any thread sitting at a slot back to
// its entry (entrymove.go).
func restoreJumps(pr *proc.Process, rds []record.Redirect) error {
	moves, why := offSlots(pr.Threads(), rds)
	if why != "" {
		return fmt.Errorf("%s; try again", why)
	}
	if err := setMoves(pr, moves); err != nil {
		return err
	}
	for i := len(rds) - 1; i >= 0; i-- {
		rd := rds[i]
		cur := make([]byte, len(rd.Jump))
		if err := pr.ReadMem(rd.Addr, cur); err != nil {
			return err
		}
		if string(cur) == string(rd.Jump) {
			if err := pr.WriteMem(rd.Addr, rd.Orig); err != nil {
				return err
			}
		}
		if !rd.HasSlot() {
			continue
		}
		slot := make([]byte, len(rd.SlotJump))
		if err := pr.ReadMem(rd.SlotAddr, slot); err != nil {
			return err
		}
		if string(slot) == string(rd.SlotJump) {
			if err := pr.WriteMem(rd.SlotAddr, rd.SlotOrig); err != nil {
				return err
			}
		}
	}
	return nil
}

// restorePadding puts the compiler's NOPs back into the padding above each
// patch-ready entry of rds whose long jump is still there, with every thread
// of pr stopped. An apply wrote that jump; leaving it after the region is
// gone makes every later apply of the function take the stop path (its
// padding no longer holds what the patch-ready path expects).
//
// Safe at every instant because the padding is reached only through the
// entry's short jump: the entry must already hold its original bytes (so no
// thread can newly take the jump), and no stopped thread may have its pc in
// the padding (one that took the short jump just before and sits at the long
// jump would otherwise run the NOPs into the entry — harmless, but we do not
// rely on it and leave such a padding alone). The padding is never executed
// otherwise: it lies between the previous function's last instruction (which
// does not fall through) and the entry. A thread whose return address lies in
// the padding is impossible: a jmp pushes nothing.
func restorePadding(pr *proc.Process, threads []proc.Thread, rds []record.Redirect) error {
	for _, rd := range rds {
		if !rd.Padded() {
			continue
		}
		entry := make([]byte, len(rd.Orig))
		pad := make([]byte, len(rd.PadJump))
		if err := pr.ReadMem(rd.Addr, entry); err != nil {
			return fmt.Errorf("read %s at %#x: %w", rd.Func, rd.Addr, err)
		}
		if err := pr.ReadMem(rd.PadAddr, pad); err != nil {
			return fmt.Errorf("read the padding of %s at %#x: %w", rd.Func, rd.PadAddr, err)
		}
		if string(entry) != string(rd.Orig) || string(pad) != string(rd.PadJump) {
			continue
		}
		inside := false
		for _, th := range threads {
			if pc := th.Regs.PC(); pc >= rd.PadAddr && pc < rd.PadAddr+uint64(len(rd.PadJump)) {
				inside = true
			}
		}
		if inside {
			continue
		}
		if err := pr.WriteMem(rd.PadAddr, rd.PadOrig); err != nil {
			return fmt.Errorf("restore the padding of %s at %#x: %w", rd.Func, rd.PadAddr, err)
		}
	}
	return nil
}

// padInUse reports which thread, if any, is about to run the long jump in
// the padding of one of rds: it took the entry's short jump just before the
// entry was restored. Its next instruction leads into the patch's region,
// so the region must stay until it has gone through (regionInUse then sees
// it there, or on its way back).
func padInUse(threads []proc.Thread, rds []record.Redirect) string {
	for _, th := range threads {
		pc := th.Regs.PC()
		for _, rd := range rds {
			if rd.Padded() && pc >= rd.PadAddr && pc < rd.PadAddr+uint64(len(rd.PadJump)) {
				return fmt.Sprintf("thread %d is at the jump in the padding of %s (pc %#x)", th.TID, rd.Func, pc)
			}
		}
	}
	return ""
}
