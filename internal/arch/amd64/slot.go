package amd64

import (
	"fmt"
	"strings"

	"github.com/hotpatch/hotpatch/internal/arch"
)

// Slot redirects: when the long jump does not fit at the patch point (the
// function is shorter than 5 bytes and no padding follows it, or a branch of
// the function lands on one of the bytes the jump would cover), the patch
// point gets a 2-byte "jmp rel8" to a slot, and the long jump goes into the
// slot: alignment padding above the function (after the previous function)
// or below it, within the rel8's reach of -128..+127 bytes.
//
//	P-n:  e9 <rel32 to dest>     the slot, in padding          (1: written first)
//	      ...
//	E:    [endbr64]              kept
//	P:    eb <P-n - (P+2)>       jmp rel8 to the slot          (2: written second)
//
// Why the slot is never executed before the entry jump leads there, and why
// overwriting it cannot disturb anything:
//   - Nothing falls through into it: the padding starts right after an
//     instruction that never continues to the next byte (ret, jmp, ud2, hlt),
//     and every byte from there to the next symbol (or the slot's end) is
//     padding, so no code of another symbol is interleaved. A function may
//     also end with a call: compilers emit nothing after a call only when the
//     callee does not return (exit, abort, __stack_chk_fail, __cxa_throw...),
//     but a thread inside such a callee has the first padding byte as its
//     return address, so that byte is never part of the slot.
//   - No branch targets it: neither function around it has a direct branch
//     into the padding (checked here), and padding has no label of its own,
//     so no other code can name it; a symbol inside it would have ended Gap
//     or Tail (the engine cuts both at the next symbol).
//   - No thread's instruction pointer or return address is in it: that
//     follows from the two points above, and the engine checks it anyway, in
//     the stop window, before writing (a thread there would mean the bytes are
//     not dead, and the apply is refused).
//
// The entry jump is 2 bytes, so only a branch to P+1 or a call returning to
// P+1 rules it out (and a function of a single byte after the landing pad).

// stopsFlow reports whether execution never continues at the byte after an
// instruction of kind k.
func stopsFlow(k Kind) bool {
	return k == Ret || k == Jmp || k == JmpIndirect || k == Ud2 || k == Hlt
}

// slotRange is a run of dead bytes [lo, lo+len(orig)) that may hold a slot.
type slotRange struct {
	where string // "above the entry", "after the function"
	lo    uint64
	orig  []byte
	// fromTop: take the slot at the end of the range (nearest the entry).
	fromTop bool
}

// planSlot plans a slot redirect of fn (decoded as insns) at offset start.
// inPlace says why the long jump cannot be written at the patch point.
func planSlot(fn arch.Func, insns []Insn, start int, dest uint64, forceAbs bool, inPlace string) (arch.Redirect, error) {
	name := fn.Name
	if name == "" {
		name = fmt.Sprintf("function at %#x", fn.Addr)
	}
	at := fn.Addr + uint64(start)
	refuse := func(why string) (arch.Redirect, error) {
		return arch.Redirect{}, fmt.Errorf("%w: %s: %s; and a 2-byte jmp rel8 at the entry to a long jump in nearby padding is impossible: %s. "+
			"Build it with -fpatchable-function-entry=16 (or larger) to reserve room, or check which symbols surround it",
			arch.ErrNotPatchable, name, inPlace, why)
	}
	if len(fn.Code)-start < JmpRel8Len {
		return refuse(fmt.Sprintf("it has only %d byte(s) from the patch point at offset %#x", len(fn.Code)-start, start))
	}
	if why := entryConflict(insns, fn.Addr, at, at+JmpRel8Len); why != "" {
		return refuse(why + ", inside the 2 bytes of the entry jump")
	}
	ranges, whys := slotRanges(fn, insns)
	for _, r := range ranges {
		slot, kind, why := fitSlot(r, at, dest, forceAbs)
		if why != "" {
			whys = append(whys, fmt.Sprintf("the %d bytes of padding %s: %s", len(r.orig), r.where, why))
			continue
		}
		short, err := EncodeJmpRel8(at, slot.Addr)
		if err != nil { // fitSlot checked the reach
			return arch.Redirect{}, fmt.Errorf("%s: %w", name, err)
		}
		slot.Kind = kind + " (slot " + r.where + ")"
		return arch.Redirect{Addr: at, Orig: append([]byte(nil), fn.Code[start:start+JmpRel8Len]...), Jump: short,
			Kind: "jmp rel8 to " + slot.Kind, Slot: &slot}, nil
	}
	return refuse(strings.Join(whys, "; "))
}

// slotRanges returns the runs of dead bytes around fn, and why each side
// has none.
func slotRanges(fn arch.Func, insns []Insn) ([]slotRange, []string) {
	var ranges []slotRange
	var whys []string
	fnEnd := fn.Addr + uint64(len(fn.Code))
	targets := func(list []Insn, lo, hi uint64) string {
		for _, in := range list {
			if in.Kind.IsBranch() && in.Target >= lo && in.Target < hi {
				return fmt.Sprintf("the %s at %#x targets %#x in it", in.Kind, in.PC, in.Target)
			}
		}
		return ""
	}
	// Above the entry: Gap, after the previous function.
	fn.Prev, fn.Gap = splitPrev(fn)
	switch gapLo := fn.Addr - uint64(len(fn.Gap)); {
	case fn.Gap == nil || fn.Prev == nil:
		whys = append(whys, "the bytes above the entry follow no known function")
	case len(fn.Gap) == 0:
		whys = append(whys, "there is no padding above the entry (the function below ends there)")
	case PaddingLen(fn.Gap) != len(fn.Gap):
		whys = append(whys, fmt.Sprintf("the %d bytes above the entry are not all padding (% x)", len(fn.Gap), fn.Gap))
	default:
		prevAddr := gapLo - uint64(len(fn.Prev))
		prev, err := Decode(fn.Prev, prevAddr)
		if err != nil || len(prev) == 0 {
			whys = append(whys, fmt.Sprintf("the function below (at %#x) does not decode: %v", prevAddr, err))
			break
		}
		last := prev[len(prev)-1]
		if !stopsFlow(last.Kind) && last.Kind != Call && last.Kind != CallIndirect {
			whys = append(whys, fmt.Sprintf("the function below ends with a %s at %#x, after which execution may continue into the padding", last.Kind, last.PC))
			break
		}
		if why := cat(targets(prev, gapLo, fn.Addr), targets(insns, gapLo, fn.Addr)); why != "" {
			whys = append(whys, "the padding above the entry is a branch target: "+why)
			break
		}
		r := slotRange{where: "above the entry", lo: gapLo, orig: fn.Gap, fromTop: true}
		if !stopsFlow(last.Kind) { // a final (noreturn) call returns to gapLo: keep it out
			r.lo, r.orig = gapLo+1, fn.Gap[1:]
		}
		ranges = append(ranges, r)
	}
	// After the function: Tail.
	n := PaddingLen(fn.Tail)
	switch {
	case n == 0:
		whys = append(whys, "there is no padding after the function")
	case len(insns) == 0 || !stopsFlow(insns[len(insns)-1].Kind):
		whys = append(whys, "the function's last instruction may continue into the padding after it")
	default:
		if why := targets(insns, fnEnd, fnEnd+uint64(n)); why != "" {
			whys = append(whys, "the padding after the function is a branch target: "+why)
			break
		}
		ranges = append(ranges, slotRange{where: "after the function", lo: fnEnd, orig: fn.Tail[:n]})
	}
	// Farther gaps, between two other functions.
	for _, g := range fn.Near {
		if r, why := nearRange(g, insns); why != "" {
			whys = append(whys, fmt.Sprintf("the %d bytes at %#x: %s", len(g.Bytes), g.Addr, why))
		} else {
			r.fromTop = g.Addr < fn.Addr
			ranges = append(ranges, r)
		}
	}
	return ranges, whys
}

// nearRange checks a gap between two other functions like the one above
// the entry: all padding, after an instruction that does not fall through
// (or a final noreturn call, whose return address is kept out), and no
// branch of the functions on either side of it, or of the patched one, lands
// in it.
func nearRange(g arch.Gap, insns []Insn) (slotRange, string) {
	if len(g.Bytes) == 0 || PaddingLen(g.Bytes) != len(g.Bytes) {
		return slotRange{}, "not all padding"
	}
	prevAddr := g.Addr - uint64(len(g.Prev))
	nextAddr := g.Addr + uint64(len(g.Bytes))
	prev, err1 := Decode(g.Prev, prevAddr)
	next, err2 := Decode(g.Next, nextAddr)
	if err1 != nil || err2 != nil || len(prev) == 0 {
		return slotRange{}, "the functions around it do not decode"
	}
	last := prev[len(prev)-1]
	if !stopsFlow(last.Kind) && last.Kind != Call && last.Kind != CallIndirect {
		return slotRange{}, fmt.Sprintf("the function before it ends with a %s", last.Kind)
	}
	for _, list := range [][]Insn{prev, next, insns} {
		for _, in := range list {
			if in.Kind.IsBranch() && in.Target >= g.Addr && in.Target < nextAddr {
				return slotRange{}, fmt.Sprintf("the %s at %#x targets it", in.Kind, in.PC)
			}
		}
	}
	r := slotRange{where: fmt.Sprintf("at %#x, between two other functions", g.Addr), lo: g.Addr, orig: g.Bytes}
	if !stopsFlow(last.Kind) {
		r.lo, r.orig = g.Addr+1, g.Bytes[1:]
	}
	return r, ""
}

// splitPrev handles a function below of unknown size (Gap nil, Prev running
// up to fn.Addr, as for the size-0 symbols of crtstuff's frame_dummy): it is
// decoded from its start, which is an instruction boundary, and ends after
// its last instruction that is not a NOP or int3; the rest is the gap.
func splitPrev(fn arch.Func) (prev, gap []byte) {
	if fn.Gap != nil || fn.Prev == nil {
		return fn.Prev, fn.Gap
	}
	start := fn.Addr - uint64(len(fn.Prev))
	insns, err := Decode(fn.Prev, start)
	if err != nil {
		return nil, nil
	}
	end := 0
	for _, in := range insns {
		if in.Kind != Nop && in.Kind != Int3 {
			end = int(in.End() - start)
		}
	}
	if end == 0 {
		return nil, nil
	}
	return fn.Prev[:end], append([]byte{}, fn.Prev[end:]...)
}

func cat(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// fitSlot places the long jump to dest in r, as near the entry jump at at as
// possible, or says why it does not fit.
func fitSlot(r slotRange, at, dest uint64, forceAbs bool) (arch.Redirect, string, string) {
	hi := r.lo + uint64(len(r.orig))
	place := func(n int) (uint64, bool) {
		if len(r.orig) < n {
			return 0, false
		}
		if r.fromTop {
			return hi - uint64(n), true
		}
		return r.lo, true
	}
	for _, n := range []int{JmpRel32Len, JmpAbsLen} {
		s, ok := place(n)
		if !ok {
			return arch.Redirect{}, "", fmt.Sprintf("too small for a %d-byte jump", n)
		}
		if d := rel(at, s, JmpRel8Len); d < -128 || d > 127 {
			return arch.Redirect{}, "", fmt.Sprintf("a slot at %#x is out of reach of a jmp rel8 at %#x", s, at)
		}
		var jump []byte
		kind := "jmp abs64"
		if n == JmpRel32Len {
			j, err := EncodeJmpRel32(s, dest)
			if err != nil || forceAbs {
				continue
			}
			jump, kind = j, "jmp rel32"
		} else {
			jump = EncodeJmpAbs(dest)
		}
		off := s - r.lo
		return arch.Redirect{Addr: s, Orig: append([]byte(nil), r.orig[off:off+uint64(n)]...), Jump: jump}, kind, ""
	}
	return arch.Redirect{}, "", "no jump encoding fits"
}
