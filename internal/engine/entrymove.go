package engine

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/hotpatch/hotpatch/internal/arch"
	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/record"
)

// Threads inside the bytes being overwritten (issue 11 item 3).
//
// A thread stopped strictly inside the bytes a jump replaces would resume in
// the middle of the jump. Instead of waiting for it to leave (which, for a
// function hot on many threads, may never be observed in a stop), the stop
// window moves it:
//   - in the entry model, to the matching instruction of a relocated copy of
//     the overwritten instructions in the patch region (Detours' trampoline,
//     arch.EntryMover.RelocateEntry), which continues into the old body after
//     them: the thread finishes this call of the old function, which the
//     entry model allows;
//   - in the stack model (or when no copy could be made), rewound to the
//     patch point, when the instructions it executed since only pushed
//     registers, lowered the stack pointer, set flags or paused
//     (arch.EntryMover.RewindEntry): it then takes the jump, as if it had
//     just been called, so no thread runs the old function after the switch,
//     as the stack model promises. A thread that did more there keeps the
//     function active on its stack: the stack model waits for it.
//
// The copies are built when the patch is linked and written with the code,
// read-execute, after the objects (outside [TextStart, TextEnd), which is the
// patch's own code). A thread may run in a copy after the resume, or return
// into one (a copied call), so a region is freed only when no thread's
// instruction pointer or return address lies anywhere in it (regionInUse);
// until then it is kept.

// maxTramp bounds one relocated copy: at most 14 overwritten bytes, so at
// most 14 instructions of up to 15 bytes, each at most 9 bytes longer when
// rebuilt (loop/jrcxz), is a bound far above what code has; a copy that
// does not fit is simply not offered (the thread waits, as before).
const maxTramp = 64

// trampSize is the room the region keeps for the copies: none for
// patch-ready functions, whose overwritten bytes are two one-byte NOPs (a
// thread between them is rewound, which needs no copy).
func (pp *prepared) trampSize() uint64 {
	n := 0
	for _, f := range pp.funcs {
		if f.pre == nil {
			n++
		}
	}
	return roundUp(uint64(n)*maxTramp, pageSize)
}

// placeTrampolines builds the relocated copy of each redirect's overwritten
// bytes at at (the region's trampoline area) and adds them to the segments.
func (pp *prepared) placeTrampolines(im *image, at uint64) {
	im.tramps = make([]*arch.Relocated, len(im.plans))
	var code []byte
	for i, r := range im.plans {
		if uint64(len(code)+maxTramp) > pp.trampSize() {
			break
		}
		if im.padded[i] != nil {
			continue
		}
		rel, err := pp.arch.RelocateEntry(pp.funcs[i].fn, r, at+uint64(len(code)))
		if err != nil || len(rel.Code) > maxTramp {
			continue
		}
		code = append(code, rel.Code...)
		im.tramps[i] = &rel
	}
	if len(code) > 0 {
		im.segData = append(im.segData, segment{addr: at, data: code, prot: unix.PROT_READ | unix.PROT_EXEC})
	}
}

// move is a register change planned for one stopped thread.
type move struct {
	tid      int
	old, new proc.Regs
}

// planMoves looks at every stopped thread against the redirects of im. A
// thread inside a slot (padding that must be dead) is an error; a thread
// strictly inside the overwritten bytes is rewound or, in the entry model,
// moved to the relocated copy; when neither is possible the attempt is busy.
// stacked[i]: redirect i replaces another patch's jump, so the bytes in
// memory are not the function's code and no thread can be inside them.
func (pp *prepared) planMoves(im *image, threads []proc.Thread, stacked []bool, entry bool) ([]move, *busyError, error) {
	var moves []move
	for _, th := range threads {
		pc := th.Regs.PC()
		for i, r := range im.plans {
			name := pp.funcs[i].spec.Name
			if r.InSlot(pc) && !(stacked[i] && pc == r.Slot.Addr) {
				return nil, nil, fmt.Errorf("%w: %s: thread %d is executing at %#x, in the padding chosen for the long jump (%s): those bytes are not dead code",
					arch.ErrNotPatchable, name, th.TID, pc, r.Slot.Kind)
			}
			if !r.Contains(pc) {
				continue
			}
			why := ""
			if !stacked[i] {
				regs := th.Regs
				if t := im.tramps[i]; entry && t != nil && t.Map[pc] != 0 {
					regs.SetPC(t.Map[pc])
					moves = append(moves, move{th.TID, th.Regs, regs})
					break
				}
				if d, ok := pp.arch.RewindEntry(pp.funcs[i].fn, r, pc); ok {
					regs.SetSP(regs.SP() + d)
					regs.SetPC(r.Addr)
					moves = append(moves, move{th.TID, th.Regs, regs})
					break
				}
				if entry {
					why = " and its instructions there cannot be relocated"
				} else {
					why = " (the stack model moves a thread only back to the entry, when the instructions it executed there can be undone; --consistency=entry moves it to a copy of them)"
				}
			}
			return nil, &busyError{fmt.Sprintf("thread %d is executing inside the first bytes of %s (pc %#x)%s", th.TID, name, pc, why)}, nil
		}
	}
	return moves, nil, nil
}

// movedThreads returns threads with the moves applied.
func movedThreads(threads []proc.Thread, moves []move) []proc.Thread {
	out := append([]proc.Thread(nil), threads...)
	for _, m := range moves {
		for j := range out {
			if out[j].TID == m.tid {
				out[j].Regs = m.new
			}
		}
	}
	return out
}

// setMoves gives the threads their new registers; on failure it puts back
// those already changed.
func setMoves(pr *proc.Process, moves []move) error {
	for k, m := range moves {
		if err := pr.SetRegs(m.tid, m.new); err != nil {
			unsetMoves(pr, moves[:k])
			return fmt.Errorf("move thread %d out of the bytes being overwritten: %w", m.tid, err)
		}
	}
	return nil
}

func unsetMoves(pr *proc.Process, moves []move) {
	for _, m := range moves {
		pr.SetRegs(m.tid, m.old)
	}
}

// wordsInUse checks, in the stop window, the stacks of threads (with their
// planned moves) for words pointing where no thread may resume:
//   - into a slot (both models): a return address there would mean the
//     padding is not dead;
//   - in the entry model, strictly inside the bytes a jump overwrites: no
//     call returns there (the planner checks), so such a word is the saved
//     instruction pointer of a signal frame — a thread in a signal handler
//     that interrupted it there would return into the middle of the jump.
//     (The stack model's walk sees the interrupted frame and waits.)
//
// The scan is conservative (any word, from the stack pointer to the top of
// its mapping); the attempt is busy, and the apply fails with this reason if
// it persists.
func (pp *prepared) wordsInUse(im *image, threads []proc.Thread, sc *stackCopies, entry bool) *busyError {
	var spans []span
	for i, r := range im.plans {
		if im.stacked[i] {
			continue
		}
		name := pp.funcs[i].spec.Name
		if r.Slot != nil {
			spans = append(spans, span{r.Slot.Addr, r.Slot.Addr + uint64(len(r.Slot.Jump)), "the padding chosen for the long jump of " + name, 0})
		}
		if entry {
			spans = append(spans, span{r.Addr + 1, r.Addr + uint64(len(r.Jump)), "the first bytes of " + name, 0})
		}
	}
	if len(spans) == 0 {
		return nil
	}
	for _, th := range threads {
		sp := th.Regs.SP() &^ 7
		buf, mapped, err := sc.from(th.TID, sp)
		if !mapped {
			continue // no stack to scan (a thread on a stack we cannot see holds nothing we could read either)
		}
		if err != nil {
			return &busyError{fmt.Sprintf("thread %d: cannot read its stack to check it", th.TID)}
		}
		for off := 0; off+8 <= len(buf); off += 8 {
			w := binary.LittleEndian.Uint64(buf[off:])
			for _, s := range spans {
				if w >= s.lo && w < s.hi {
					return &busyError{fmt.Sprintf("a word on the stack of thread %d (at %#x) points into %s (%#x): a return address or a signal frame's saved pc",
						th.TID, sp+uint64(off), s.name, w)}
				}
			}
		}
	}
	return nil
}

// slotOwner returns the applied patch whose slot jump b is at addr.
func slotOwner(applied []PatchStatus, addr uint64, b []byte) *PatchStatus {
	for i := range applied {
		if applied[i].State != record.StateApplied {
			continue
		}
		for _, rd := range applied[i].Redirects {
			if rd.HasSlot() && rd.SlotAddr == addr && string(rd.SlotJump) == string(b) {
				return &applied[i]
			}
		}
	}
	return nil
}

// offSlots plans moving each thread that has taken a redirect's entry jump
// and sits at its slot (about to execute the long jump) back to the entry
// jump: before a revert or rollback restores the slot's padding. The thread
// has executed nothing but that jump, so at the patch point it is in the
// same state. A thread strictly inside a slot cannot exist (the slot holds
// one jump); it is reported.
func offSlots(threads []proc.Thread, rds []record.Redirect) ([]move, string) {
	var moves []move
	for _, th := range threads {
		pc := th.Regs.PC()
		for _, rd := range rds {
			if !rd.HasSlot() || pc < rd.SlotAddr || pc >= rd.SlotAddr+uint64(len(rd.SlotJump)) {
				continue
			}
			if pc != rd.SlotAddr {
				return nil, fmt.Sprintf("thread %d is inside the slot of %s (pc %#x)", th.TID, rd.Func, pc)
			}
			regs := th.Regs
			regs.SetPC(rd.Addr)
			moves = append(moves, move{th.TID, th.Regs, regs})
		}
	}
	return moves, ""
}
