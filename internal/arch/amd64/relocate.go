package amd64

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/hotpatch/hotpatch/internal/arch"
)

// Moving threads out of the overwritten bytes (Detours' trampoline).
//
// A thread stopped at an instruction boundary strictly inside the bytes a
// redirect overwrites would, once resumed, execute the tail of the new jump
// as instructions. RelocateEntry builds a copy of the instructions that start
// in those bytes, to be placed in the patch region; the engine sets such a
// thread's instruction pointer to the matching instruction of the copy, in
// the stop window. The copy computes exactly what the original would:
//   - instructions without PC-relative parts are copied byte for byte (a
//     syscall keeps its two bytes in front of the next instruction, so the
//     kernel's restart of an interrupted call, rip -= 2, lands on the copy);
//   - a RIP-relative memory operand gets its disp32 rebased so that it names
//     the same address from the copy;
//   - jmp, call and jcc become their rel32 forms with the same destination
//     (a call pushes a return address into the copy, which is why the engine
//     keeps the region while a thread may be in it); loop/jrcxz, which have
//     only a rel8 form, become "op +2; jmp +5; jmp rel32 dest";
//   - a jump back to the old body after the last copied instruction follows,
//     unless that instruction never falls through.
//
// Branches that land inside the copied range are not a concern: the planner
// refuses any branch into the overwritten bytes except to their first byte,
// and a branch there from the copy goes, like any other, to the old
// address, which then holds the redirect: the thread enters the new function
// exactly as a fresh call would (state at the patch point is the same).

// RelocateEntry implements arch.EntryMover.
func (Arch) RelocateEntry(fn arch.Func, r arch.Redirect, addr uint64) (arch.Relocated, error) {
	insns, err := Decode(fn.Code, fn.Addr)
	if err != nil {
		return arch.Relocated{}, err
	}
	wEnd := r.Addr + uint64(len(r.Jump))
	out := arch.Relocated{Addr: addr, Map: map[uint64]uint64{}}
	var last *Insn
	for i := range insns {
		in := &insns[i]
		if in.PC < r.Addr || in.PC >= wEnd {
			continue
		}
		pc := addr + uint64(len(out.Code))
		if in.PC > r.Addr {
			out.Map[in.PC] = pc
		}
		raw := fn.Code[in.PC-fn.Addr : in.End()-fn.Addr]
		b, err := relocateInsn(raw, *in, pc)
		if err != nil {
			return arch.Relocated{}, fmt.Errorf("relocate the instruction at %#x (% x): %w", in.PC, raw, err)
		}
		out.Code = append(out.Code, b...)
		last = in
	}
	if last == nil {
		return arch.Relocated{}, fmt.Errorf("no instruction starts at %#x", r.Addr)
	}
	if stopsFlow(last.Kind) {
		return out, nil
	}
	back := last.End()
	if back < wEnd {
		// The function ends inside the overwritten bytes and falls off its end.
		return arch.Relocated{}, fmt.Errorf("the function falls through its end at %#x, inside the overwritten bytes", back)
	}
	pc := addr + uint64(len(out.Code))
	j, err := EncodeJmpRel32(pc, back)
	if err != nil {
		j = EncodeJmpAbs(back)
	}
	out.Code = append(out.Code, j...)
	return out, nil
}

// relocateInsn returns the bytes of instruction in (raw, decoded at in.PC)
// placed at pc instead.
func relocateInsn(raw []byte, in Insn, pc uint64) ([]byte, error) {
	p := 0
	for p < len(raw) && (isLegacyPrefix(raw[p]) || raw[p]&0xf0 == 0x40) {
		p++
	}
	if p >= len(raw) {
		return nil, fmt.Errorf("no opcode")
	}
	switch in.Kind {
	case Jmp:
		return EncodeJmpRel32(pc, in.Target)
	case Call:
		b, err := EncodeJmpRel32(pc, in.Target)
		if err != nil {
			return nil, err
		}
		b[0] = 0xe8
		return b, nil
	case Jcc:
		return relocateJcc(raw, p, in, pc)
	}
	_, det, err := decodeOneSafe(raw, in.PC)
	if err != nil {
		return nil, err
	}
	b := append([]byte(nil), raw...)
	if !det.ripRel {
		return b, nil
	}
	if det.dispOff < 0 || det.dispOff+4 > len(b) {
		return nil, fmt.Errorf("RIP-relative operand at an unknown position")
	}
	for _, c := range raw[:p] {
		if c == 0x67 { // EIP-relative: the address is truncated to 32 bits
			return nil, fmt.Errorf("32-bit RIP-relative addressing")
		}
	}
	d := int64(int32(binary.LittleEndian.Uint32(b[det.dispOff:]))) + int64(in.PC-pc)
	if d < math.MinInt32 || d > math.MaxInt32 {
		return nil, fmt.Errorf("RIP-relative operand out of reach from %#x: %w", pc, arch.ErrOutOfRange)
	}
	binary.LittleEndian.PutUint32(b[det.dispOff:], uint32(int32(d)))
	return b, nil
}

// relocateJcc handles the conditional branches; op is at raw[p].
func relocateJcc(raw []byte, p int, in Insn, pc uint64) ([]byte, error) {
	op := raw[p]
	rel32 := func(prefix []byte, at uint64) ([]byte, error) {
		n := len(prefix) + 4
		d := rel(at, in.Target, n)
		if d < math.MinInt32 || d > math.MaxInt32 {
			return nil, fmt.Errorf("branch to %#x out of reach: %w", in.Target, arch.ErrOutOfRange)
		}
		return binary.LittleEndian.AppendUint32(append([]byte(nil), prefix...), uint32(int32(d))), nil
	}
	switch {
	case op >= 0x70 && op <= 0x7f: // jcc rel8 -> 0f 8x rel32
		return rel32([]byte{0x0f, 0x80 | op&0x0f}, pc)
	case op == 0x0f && p+1 < len(raw) && raw[p+1]&0xf0 == 0x80: // jcc rel32
		return rel32([]byte{0x0f, raw[p+1]}, pc)
	case op >= 0xe0 && op <= 0xe3: // loop*, jrcxz: rel8 only
		// op +2 (taken: to the jmp rel32); jmp +5 (not taken: past it).
		head := append(append([]byte(nil), raw[:p]...), op, 0x02, 0xeb, 0x05)
		j, err := rel32([]byte{0xe9}, pc+uint64(len(head)))
		if err != nil {
			return nil, err
		}
		return append(head, j...), nil
	case op == 0xc7 && p+1 < len(raw) && raw[p+1] == 0xf8 && len(raw)-p == 6: // xbegin rel32
		return rel32(append(append([]byte(nil), raw[:p]...), 0xc7, 0xf8), pc)
	}
	return nil, fmt.Errorf("conditional branch encoding not handled")
}

// RewindEntry implements arch.EntryMover: the instructions from r.Addr up to
// pc may only be pushes of registers (push leaves the register unchanged;
// the word it stored below the entry's stack pointer is dead, as everything
// below the stack pointer is at a call boundary), "sub $imm, %rsp", NOPs,
// pause, and test/cmp between registers (they change only the status flags,
// which the psABI makes scratch across calls, so they are dead at an entry).
func (Arch) RewindEntry(fn arch.Func, r arch.Redirect, pc uint64) (uint64, bool) {
	insns, err := Decode(fn.Code, fn.Addr)
	if err != nil || pc <= r.Addr || pc >= r.Addr+uint64(len(r.Jump)) {
		return 0, false
	}
	var delta uint64
	for _, in := range insns {
		if in.PC < r.Addr {
			continue
		}
		if in.PC == pc {
			return delta, true
		}
		if in.PC > pc {
			return 0, false // pc is not an instruction boundary
		}
		d, ok := undoable(fn.Code[in.PC-fn.Addr:in.End()-fn.Addr], in)
		if !ok {
			return 0, false
		}
		delta += d
	}
	return 0, false
}

// undoable returns how much raw (one instruction) lowered the stack pointer,
// when undoing it needs nothing else.
func undoable(raw []byte, in Insn) (uint64, bool) {
	if in.Kind == Nop || in.Kind == Endbr {
		return 0, true
	}
	b := raw
	rex := byte(0)
	if len(b) > 0 && b[0]&0xf0 == 0x40 {
		rex, b = b[0], b[1:]
	}
	switch {
	case len(b) == 1 && b[0] >= 0x50 && b[0] <= 0x57 && rex&0x08 == 0: // push r64 (50+r, REX.B for r8-r15)
		return 8, true
	case rex == 0x48 && len(b) == 3 && b[0] == 0x83 && b[1] == 0xec: // sub $imm8, %rsp
		return uint64(int64(int8(b[2]))), int8(b[2]) >= 0
	case rex == 0x48 && len(b) == 6 && b[0] == 0x81 && b[1] == 0xec: // sub $imm32, %rsp
		v := int32(binary.LittleEndian.Uint32(b[2:]))
		return uint64(int64(v)), v >= 0
	case len(b) == 2 && (b[0] == 0x84 || b[0] == 0x85 || b[0] == 0x38 || b[0] == 0x39 || b[0] == 0x3a || b[0] == 0x3b) && b[1]>>6 == 3:
		return 0, true // test/cmp reg, reg
	case rex == 0 && len(b) == 2 && b[0] == 0xf3 && b[1] == 0x90:
		return 0, true // pause: a spin-wait hint, no architectural effect
	}
	return 0, false
}
