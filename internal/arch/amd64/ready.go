package amd64

import (
	"bytes"
	"fmt"

	"github.com/hotpatch/hotpatch/internal/arch"
)

// Patch-ready functions (-fpatchable-function-entry=7,5): GCC puts five
// one-byte NOPs before the function's symbol and two at its entry (after
// endbr64 when -fcf-protection is on):
//
//	E-5: 90 90 90 90 90      padding, never executed
//	E:   [f3 0f 1e fa]       endbr64, if any (kept)
//	P:   90 90               two one-byte NOPs
//
// The redirect writes `jmp rel32` (e9 xx xx xx xx) to the new code over the
// padding, then turns the two NOPs at P into `jmp rel8` back to E-5:
// eb f9 (P == E, displacement -7) or eb f5 (after endbr64, -11).
//
// Why no thread needs to be stopped:
//   - The padding is never executed (nothing falls through into it: the
//     previous function ends in ret/jmp, and no branch targets it), so the
//     long jump can be written while the process runs; it is complete before
//     the entry can reach it (the stores of one write(2) to /proc/PID/mem are
//     ordered before the next one's on x86's TSO memory model, and x86 keeps
//     instruction fetch coherent with stores).
//   - The entry's two bytes change one byte at a time, second byte first.
//     Single-byte stores cannot tear. The states a thread can see are
//     90 90 (nop; nop), 90 f9 (nop; stc), eb f9 (jmp E-5) — or with f5, cmc
//     instead of stc. A thread at P executes either two one-byte instructions
//     and falls into the old body, or the jump. A thread that was already
//     parked between the two NOPs (at P+1) executes the displacement byte as
//     an instruction: stc or cmc, which only change the carry flag — dead at a
//     function entry, as the psABI makes status flags scratch across calls —
//     and then runs the old body. No state decodes as anything else: the
//     dangerous half-state eb 90 (jmp +0x90) never exists, because the
//     displacement is written before the opcode.
//   - Revert writes the opcode back first (eb → 90, giving nop; stc) then the
//     displacement, so again only those states exist. The long jump stays in
//     the padding: a thread that took the short jump just before the revert
//     may still be about to execute it.

// Padding geometry of the scheme.
const (
	padBefore = 5
	padEntry  = 2
)

// PaddingBefore implements arch.PaddedRedirector.
func (Arch) PaddingBefore() int { return padBefore }

// PlanPadded implements arch.PaddedRedirector.
func (Arch) PlanPadded(fn arch.Func, pre []byte, dest uint64) (arch.PaddedRedirect, bool, string) {
	if len(pre) != padBefore {
		return arch.PaddedRedirect{}, false, fmt.Sprintf("need the %d bytes above the entry", padBefore)
	}
	off := 0
	if IsEndbr64(fn.Code) {
		off = 4
	}
	if len(fn.Code) < off+padEntry {
		return arch.PaddedRedirect{}, false, "function too short"
	}
	padAddr := fn.Addr - padBefore
	entry := fn.Addr + uint64(off)
	long, err := EncodeJmpRel32(padAddr, dest)
	if err != nil {
		return arch.PaddedRedirect{}, false, fmt.Sprintf("new code out of reach of the padding: %v", err)
	}
	short, err := EncodeJmpRel8(entry, padAddr)
	if err != nil {
		return arch.PaddedRedirect{}, false, err.Error()
	}
	nops5 := bytes.Repeat([]byte{0x90}, padBefore)
	nops2 := []byte{0x90, 0x90}
	cur := fn.Code[off : off+padEntry]
	if !bytes.Equal(pre, nops5) && !bytes.Equal(pre, long) {
		return arch.PaddedRedirect{}, false, fmt.Sprintf("no NOP padding above the entry (% x)", pre)
	}
	if !bytes.Equal(cur, nops2) {
		return arch.PaddedRedirect{}, false, fmt.Sprintf("entry bytes % x are not two one-byte NOPs", cur)
	}
	return arch.PaddedRedirect{
		Pad:   arch.Redirect{Addr: padAddr, Orig: nops5, Jump: long, Kind: "jmp rel32 (padding)"},
		Entry: arch.Redirect{Addr: entry, Orig: nops2, Jump: short, Kind: "jmp rel8 (patch-ready entry)"},
		Order: []int{1, 0},
	}, true, ""
}
