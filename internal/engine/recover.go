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
func Recover(pid int, opt Options) (*RecoverReport, error) {
	unlock, err := lockProcess(pid, opt.timeout())
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := Status(pid)
	if err != nil {
		return nil, err
	}
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
	ff, ffErr := frameFuncsToFree(pid, regions...)
	pr, err := proc.Attach(pid, proc.Options{Timeout: 2 * time.Second, Realtime: opt.Realtime})
	if err != nil {
		return nil, err
	}
	defer pr.Detach()
	if err := pr.Stop(); err != nil {
		return nil, fmt.Errorf("stop process %d: %w", pid, err)
	}
	threads := pr.Threads()
	for _, p := range todo {
		a := RecoverAction{PatchID: p.ID, Was: p.StateName}
		free := func() {
			why := regionInUse(pr, threads, mustMaps(pid), p.Base, p.Base+p.Size)
			if why == "" && p.StateName != StateIncomplete {
				if why = deregisterEHFrames(pr, p.Base, p.Base+p.Size, ff); why != "" && ffErr != nil {
					why += fmt.Sprintf(" (%v)", ffErr)
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
		switch {
		case p.StateName == StateIncomplete || p.State == record.StateReverted:
			free()
		case p.State == record.StateApplying:
			all := true
			for _, rd := range p.Redirects {
				cur := make([]byte, len(rd.Jump))
				if pr.ReadMem(rd.Addr, cur) != nil || string(cur) != string(rd.Jump) {
					all = false
				}
			}
			if all {
				if err := pr.WriteMem(p.Base+record.StateOffset, record.StateBytes(record.StateApplied)); err != nil {
					return nil, fmt.Errorf("finish %s: %w", p.ID, err)
				}
				a.Action = "finished"
				break
			}
			if err := restoreJumps(pr, p.Redirects); err != nil {
				return nil, fmt.Errorf("roll back %s: %w", p.ID, err)
			}
			a.Action = "rolled back"
			free()
		case p.State == record.StateReverting:
			if err := restoreJumps(pr, p.Redirects); err != nil {
				return nil, fmt.Errorf("finish revert of %s: %w", p.ID, err)
			}
			a.Action = "rolled back"
			free()
		}
		rep.Actions = append(rep.Actions, a)
	}
	if err := pr.Detach(); err != nil {
		return nil, err
	}
	rep.Pause = pr.Pause()
	return rep, nil
}

// restoreJumps puts back the original bytes wherever the jump is still in
// place (a jump never written, or already restored, is left alone).
func restoreJumps(pr *proc.Process, rds []record.Redirect) error {
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
	}
	return nil
}
