package amd64

// Reaching far data from patch code (arch.FarRefPlanner).
//
// GCC compiles a reference to an extern variable in PIE and non-PIC code as a
// RIP-relative access with an R_X86_64_PC32 relocation ("mov stderr(%rip),
// %rdi"), or, in non-PIC code, as an absolute 32-bit address (R_X86_64_32 /
// 32S: "mov $optind, %edi", "tzname(,%rax,8)"): it assumes that the static
// linker will give the executable a copy of the variable (a copy
// relocation). A running process has a copy only of the variables its
// executable already used; for any other, the library's own copy is the only
// one, and it is usually terabytes away from the executable. Placing the
// patch region near the library instead would put the patched functions out
// of reach of a 5-byte jump (and near-library placement fails as soon as the
// same function also uses the executable's own statics).
//
// So the region stays near the patched code, and an instruction whose field
// cannot reach its symbol is rewritten to take the symbol's address from a
// slot of the patch's own GOT, as -fPIC code would (the reverse of the
// linker's GOTPCRELX relaxation):
//
//   - "lea sym(%rip), %r64" becomes "mov slot(%rip), %r64" in place: same
//     length (only the opcode 8d -> 8b and the displacement change) and the
//     slot holds exactly the address lea computed. Likewise the sign-extended
//     "movq $sym, %r64" (48 c7 c0+r imm32) becomes "mov slot(%rip), %r64",
//     also 7 bytes.
//   - "mov $sym, %r32" (b8+r imm32, 5 bytes) becomes a jump to a stub that
//     loads the full address: "mov slot(%rip), %r64; jmp back".
//   - Any other instruction with a memory operand "sym(%rip)" or
//     "sym(,%index,scale)" (loads, stores, read-modify-write, SSE, VEX) is
//     replaced by a jump to a stub that runs the same instruction with the
//     operand based on a scratch register holding the symbol's address:
//
//     lea -128(%rsp), %rsp      skip the red zone (psABI 3.2.2: leaf code may
//     push %scratch             keep data in the 128 bytes below %rsp)
//     mov slot(%rip), %scratch  S
//     <insn with disp(%scratch[,%index,scale])>
//     pop %scratch
//     lea 128(%rsp), %rsp
//     jmp <insn end>
//
//     The rewritten instruction has the same length: ModRM mod 00 (disp32,
//     RIP-relative or SIB without base) becomes mod 10 (disp32 + base), the
//     disp32 field stays and becomes the offset from S (the addend, plus for
//     RIP-relative operands the distance from the field to the instruction
//     end, which the CPU adds to RIP). REX.B / VEX.B are cleared so that the
//     base is the scratch register. lea, push, mov and pop do not touch the
//     flags, so flag-reading instructions (adc, cmov, jcc after the stub) see
//     what they would have; the scratch register is restored before the jump
//     back, so nothing but the instruction's own effect is visible.
//
// The scratch register is the first of %rsi, %rdi, %rbx that the instruction
// does not name (ModRM.reg, the SIB index, VEX.vvvv); no instruction with a
// ModRM memory operand uses %rsi or %rdi implicitly (the string instructions
// have no ModRM; maskmov* take registers only), and %rbx only with cmpxchg8b/16b
// (0f c7), which is refused. Refused too, since they would see the moved stack
// pointer or leave through the stub: call/jmp/push through memory (ff /2-/6),
// pop to memory (8f), instructions naming %rsp as a general register, 32-bit
// address size (67: the base would be truncated), FS/GS-relative operands and
// EVEX encodings. A refused instruction keeps its direct reference, which the
// region's placement must then reach.
//
// The jump into the stub takes the instruction's first 5 bytes (a RIP-relative
// instruction has at least opcode, ModRM and disp32: 6 bytes; b8+r imm32 is
// 5); its remaining bytes become int3. No branch targets them: a branch
// targets instruction starts, and the instruction is one instruction of the
// compiler's code.

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/hotpatch/hotpatch/internal/arch"
)

var _ arch.FarRefPlanner = Arch{}

// Registers by x86 number.
const (
	regRSP = 4
	regRBX = 3
	regRSI = 6
	regRDI = 7
)

// insnLayout is where the parts of one instruction are.
type insnLayout struct {
	rex    int // index of the REX prefix, -1 if none
	vex    int // index of the c4/c5 escape byte, -1 if none
	opMap  int // 0: one-byte opcodes, 1: 0f, 2: 0f 38, 3: 0f 3a
	op     byte
	opAt   int // index of the opcode byte
	modrm  int // index of the ModRM byte (if the instruction has one)
	addr32 bool
	segFS  bool // fs/gs segment override
}

// layoutOf parses the prefixes and opcode of insn (x86-64 mode, SDM vol. 2,
// 2.1-2.3).
func layoutOf(insn []byte) (insnLayout, error) {
	l := insnLayout{rex: -1, vex: -1}
	i := 0
	for i < len(insn) && isLegacyPrefix(insn[i]) {
		switch insn[i] {
		case 0x67:
			l.addr32 = true
		case 0x64, 0x65:
			l.segFS = true
		}
		i++
	}
	if i >= len(insn) {
		return l, fmt.Errorf("only prefixes")
	}
	switch c := insn[i]; {
	case c == 0x62:
		return l, fmt.Errorf("EVEX-encoded instruction")
	case c == 0xc5:
		if i+3 > len(insn) {
			return l, fmt.Errorf("truncated VEX instruction")
		}
		l.vex, l.opMap, l.opAt = i, 1, i+2
	case c == 0xc4:
		if i+4 > len(insn) {
			return l, fmt.Errorf("truncated VEX instruction")
		}
		l.vex, l.opMap, l.opAt = i, int(insn[i+1]&0x1f), i+3
	default:
		if c&0xf0 == 0x40 {
			l.rex = i
			i++
		}
		l.opAt = i
		if i < len(insn) && insn[i] == 0x0f {
			l.opMap, l.opAt = 1, i+1
			if i+1 < len(insn) && (insn[i+1] == 0x38 || insn[i+1] == 0x3a) {
				l.opMap, l.opAt = 2+int(insn[i+1]-0x38)/2, i+2
			}
		}
	}
	if l.opAt >= len(insn) {
		return l, fmt.Errorf("truncated instruction")
	}
	l.op = insn[l.opAt]
	l.modrm = l.opAt + 1
	return l, nil
}

// bit returns the REX/VEX extension bit (R, X or B) of the instruction: REX
// bits 2, 1, 0; VEX stores R (and for c4 X, B) inverted in bits 7, 6, 5.
func (l insnLayout) bit(insn []byte, rexBit uint) int {
	switch {
	case l.rex >= 0:
		return int(insn[l.rex]>>rexBit) & 1
	case l.vex >= 0 && insn[l.vex] == 0xc5:
		if rexBit == 2 {
			return int(^insn[l.vex+1]>>7) & 1
		}
		return 0
	case l.vex >= 0:
		return int(^insn[l.vex+1]>>(5+rexBit)) & 1
	}
	return 0
}

func (l insnLayout) rexW(insn []byte) bool { return l.rex >= 0 && insn[l.rex]&8 != 0 }

// vvvv returns the register VEX.vvvv names, -1 without VEX.
func (l insnLayout) vvvv(insn []byte) int {
	switch {
	case l.vex < 0:
		return -1
	case insn[l.vex] == 0xc5:
		return int(^insn[l.vex+1]>>3) & 15
	}
	return int(^insn[l.vex+2]>>3) & 15
}

// clearB makes the ModRM.rm / SIB.base field name a register 0-7.
func (l insnLayout) clearB(insn []byte) {
	switch {
	case l.rex >= 0:
		insn[l.rex] &^= 1
	case l.vex >= 0 && insn[l.vex] == 0xc4:
		insn[l.vex+1] |= 1 << 5 // stored inverted
	}
}

// insnAt decodes code from the instruction boundary from and returns the
// instruction that holds byte off.
func insnAt(code []byte, from, off int) (start, n int, det insnDetail, err error) {
	for at := from; at < len(code); {
		in, det, err := decodeOneSafe(code[at:], uint64(at))
		if err != nil {
			return 0, 0, det, fmt.Errorf("offset %#x: %w", at, err)
		}
		if off < at+in.Len {
			return at, in.Len, det, nil
		}
		at += in.Len
	}
	return 0, 0, insnDetail{}, fmt.Errorf("offset %#x lies past the decoded code", off)
}

// PlanFarRef implements arch.FarRefPlanner; see the comment at the top of the
// file for the rewrites and why they are exact.
func (Arch) PlanFarRef(code []byte, from, off int, t uint32, a int64) (r arch.FarRef, err error) {
	defer func() {
		if p := recover(); p != nil {
			r, err = arch.FarRef{}, fmt.Errorf("%w: panic planning a far reference: %v", ErrDecode, p)
		}
	}()
	if from < 0 || from > off || off+4 > len(code) {
		return arch.FarRef{}, fmt.Errorf("field at %#x outside the code", off)
	}
	start, n, det, err := insnAt(code, from, off)
	if err != nil {
		return arch.FarRef{}, err
	}
	insn := append([]byte(nil), code[start:start+n]...)
	f := off - start
	if f+4 > n {
		return arch.FarRef{}, fmt.Errorf("field at %#x crosses the end of the instruction %x", off, insn)
	}
	l, err := layoutOf(insn)
	if err != nil {
		return arch.FarRef{}, fmt.Errorf("instruction %x: %w", insn, err)
	}
	r = arch.FarRef{Start: start, Len: n}
	switch elf.R_X86_64(t) {
	case elf.R_X86_64_PC32:
		if l.modrm != f-1 || insn[l.modrm]&0xc7 != 0x05 || !det.ripRel || (det.dispOff >= 0 && det.dispOff != f) {
			return arch.FarRef{}, fmt.Errorf("instruction %x: the PC-relative field is not a RIP-relative memory operand", insn)
		}
		// The CPU adds the field to the end of the instruction: the operand
		// is S + A + (n - f).
		disp := a + int64(n-f)
		if l.vex < 0 && l.opMap == 0 && l.op == 0x8d && l.rexW(insn) {
			return leaInPlace(r, insn, l, disp), nil
		}
		return viaStub(r, insn, l, f, 0, disp)
	case elf.R_X86_64_32, elf.R_X86_64_32S:
		if l.vex < 0 && l.opMap == 0 && l.op&0xf8 == 0xb8 && f == l.opAt+1 && n == f+4 && !l.rexW(insn) && elf.R_X86_64(t) == elf.R_X86_64_32 {
			return movImmStub(r, int(l.op&7)|l.bit(insn, 0)<<3, a), nil
		}
		if l.vex < 0 && l.rex == 0 && l.opMap == 0 && l.op == 0xc7 && f == l.modrm+1 && n == f+4 && insn[l.modrm]&0xf8 == 0xc0 && l.rexW(insn) && elf.R_X86_64(t) == elf.R_X86_64_32S {
			// movq $sym, %r64 (7 bytes) -> mov slot(%rip), %r64 (7 bytes).
			return movLoadInPlace(r, int(insn[l.modrm]&7)|l.bit(insn, 0)<<3, a), nil
		}
		if l.modrm == f-2 && insn[l.modrm]&0xc7 == 0x04 && insn[l.modrm+1]&7 == 5 {
			return viaStub(r, insn, l, f, 1, a)
		}
		return arch.FarRef{}, fmt.Errorf("instruction %x: the absolute field is neither an immediate address nor an absolute memory operand", insn)
	}
	return arch.FarRef{}, fmt.Errorf("%v: not a data reference that can be rewritten", elf.R_X86_64(t))
}

// leaInPlace: "lea disp(%rip), %r64" -> "mov slot(%rip), %r64", where the
// slot holds S + disp (the address lea computed).
func leaInPlace(r arch.FarRef, insn []byte, l insnLayout, disp int64) arch.FarRef {
	r.SlotAddend = disp
	r.Encode = func(at, _, slot uint64) ([]byte, []byte, error) {
		out := append([]byte(nil), insn...)
		out[l.opAt] = 0x8b
		if err := putRel32(out[l.modrm+1:], slot, at+uint64(len(out))); err != nil {
			return nil, nil, err
		}
		return out, nil, nil
	}
	return r
}

// movLoadInPlace: "movq $sym+a, %reg" -> "mov slot(%rip), %reg" (REX.W 8b
// /r, ModRM 00 reg 101, disp32: 7 bytes like the original).
func movLoadInPlace(r arch.FarRef, reg int, a int64) arch.FarRef {
	r.SlotAddend = a
	r.Encode = func(at, _, slot uint64) ([]byte, []byte, error) {
		out := loadSlot(reg)
		if err := putRel32(out[3:], slot, at+uint64(len(out))); err != nil {
			return nil, nil, err
		}
		return out, nil, nil
	}
	return r
}

// loadSlot returns "mov 0(%rip), %reg" (64-bit), disp32 to be filled at [3:7].
func loadSlot(reg int) []byte {
	return []byte{0x48 | byte(reg>>3)<<2, 0x8b, byte(reg&7)<<3 | 5, 0, 0, 0, 0}
}

// movImmStub: "mov $sym+a, %r32" -> jmp stub; stub: "mov slot(%rip), %r64;
// jmp back". The 32-bit move zero-extended a 32-bit address; the stub loads
// the same address in full.
func movImmStub(r arch.FarRef, reg int, a int64) arch.FarRef {
	r.SlotAddend = a
	r.StubLen = 7 + 5
	r.Encode = func(at, stub, slot uint64) ([]byte, []byte, error) {
		s := loadSlot(reg)
		if err := putRel32(s[3:], slot, stub+7); err != nil {
			return nil, nil, err
		}
		return finishStub(r.Len, at, stub, s)
	}
	return r
}

// viaStub plans the generic rewrite of a memory operand: sib is 1 for a SIB
// operand without base (absolute), 0 for RIP-relative; disp is the operand's
// offset from S.
func viaStub(r arch.FarRef, insn []byte, l insnLayout, f, sib int, disp int64) (arch.FarRef, error) {
	if l.addr32 || l.segFS {
		return arch.FarRef{}, fmt.Errorf("instruction %x: address-size or segment prefix", insn)
	}
	if disp < math.MinInt32 || disp > math.MaxInt32 {
		return arch.FarRef{}, fmt.Errorf("instruction %x: offset %d from the symbol does not fit a disp32", insn, disp)
	}
	reg := int(insn[l.modrm]>>3&7) | l.bit(insn, 2)<<3
	if why := stackHostile(l, reg); why != "" {
		return arch.FarRef{}, fmt.Errorf("instruction %x: %s", insn, why)
	}
	avoid := map[int]bool{reg: true, l.vvvv(insn): true}
	if sib == 1 {
		avoid[int(insn[l.modrm+1]>>3&7)|l.bit(insn, 1)<<3] = true
	}
	scratch := -1
	for _, c := range []int{regRSI, regRDI, regRBX} {
		if !avoid[c] {
			scratch = c
			break
		}
	}
	// Rewritten instruction: mod 00 -> 10, base = scratch.
	ni := append([]byte(nil), insn...)
	l.clearB(ni)
	if sib == 0 {
		ni[l.modrm] = 0x80 | ni[l.modrm]&0x38 | byte(scratch)
	} else {
		ni[l.modrm] = 0x80 | ni[l.modrm]&0x38 | 4
		ni[l.modrm+1] = ni[l.modrm+1]&0xf8 | byte(scratch)
	}
	binary.LittleEndian.PutUint32(ni[f:], uint32(int32(disp)))
	const pre = 5 + 1 + 7
	r.StubLen = pre + len(ni) + 1 + 8 + 5
	r.Encode = func(at, stub, slot uint64) ([]byte, []byte, error) {
		s := make([]byte, 0, r.StubLen)
		s = append(s, 0x48, 0x8d, 0x64, 0x24, 0x80) // lea -0x80(%rsp), %rsp
		s = append(s, 0x50+byte(scratch))           // push %scratch
		s = append(s, loadSlot(scratch)...)         // mov slot(%rip), %scratch
		if err := putRel32(s[5+1+3:], slot, stub+pre); err != nil {
			return nil, nil, err
		}
		s = append(s, ni...)
		s = append(s, 0x58+byte(scratch))                             // pop %scratch
		s = append(s, 0x48, 0x8d, 0xa4, 0x24, 0x80, 0x00, 0x00, 0x00) // lea 0x80(%rsp), %rsp
		return finishStub(r.Len, at, stub, s)
	}
	return r, nil
}

// stackHostile says why an instruction cannot run in the stub, which moves
// the stack pointer: it uses %rsp implicitly or by name, or leaves through
// memory. "" when it can.
func stackHostile(l insnLayout, reg int) string {
	if l.vex >= 0 {
		return "" // VEX instructions never use the stack implicitly
	}
	switch {
	case l.opMap == 0 && l.op == 0xff && reg&7 >= 2 && reg&7 <= 6:
		return "call, jmp or push through memory"
	case l.opMap == 0 && l.op == 0x8f:
		return "pop to memory"
	case l.opMap == 1 && l.op == 0xc7:
		return "cmpxchg8b/16b (uses %rbx, %rcx, %rdx, %rax implicitly)"
	case reg == regRSP && l.opMap == 0 && !groupOpcode(l.op):
		return "names %rsp"
	case reg == regRSP && l.opMap == 1 && gprReg0F(l.op):
		return "names %rsp"
	}
	return ""
}

// groupOpcode: one-byte opcodes whose ModRM.reg is an opcode extension, not a
// register (SDM vol. 2, table A-6).
func groupOpcode(op byte) bool {
	switch op {
	case 0x80, 0x81, 0x83, 0xc0, 0xc1, 0xc6, 0xc7, 0xd0, 0xd1, 0xd2, 0xd3, 0xf6, 0xf7, 0xfe, 0xff:
		return true
	}
	return false
}

// gprReg0F: two-byte opcodes whose ModRM.reg is a general register.
func gprReg0F(op byte) bool {
	switch {
	case op >= 0x40 && op <= 0x4f: // cmovcc
		return true
	}
	switch op {
	case 0xaf, 0xa3, 0xab, 0xb3, 0xbb, 0xbc, 0xbd, 0xb0, 0xb1, 0xb6, 0xb7, 0xbe, 0xbf, 0xc0, 0xc1, 0xb8, 0xa4, 0xa5, 0xac, 0xad:
		return true
	}
	return false
}

// finishStub appends "jmp <instruction end>" to the stub body and returns the
// instruction's replacement: "jmp stub" padded with int3.
func finishStub(n int, at, stub uint64, body []byte) ([]byte, []byte, error) {
	end := at + uint64(n)
	s := append(body, 0xe9, 0, 0, 0, 0)
	if err := putRel32(s[len(s)-4:], end, stub+uint64(len(s))); err != nil {
		return nil, nil, err
	}
	code := make([]byte, n)
	for i := range code {
		code[i] = 0xcc
	}
	code[0] = 0xe9
	if err := putRel32(code[1:], stub, at+5); err != nil {
		return nil, nil, err
	}
	return code, s, nil
}

// putRel32 stores dest - next as a rel32.
func putRel32(b []byte, dest, next uint64) error {
	d := int64(dest - next)
	if d < math.MinInt32 || d > math.MaxInt32 {
		return fmt.Errorf("%w: %#x is out of rel32 reach of %#x", arch.ErrRelocOverflow, dest, next)
	}
	binary.LittleEndian.PutUint32(b, uint32(int32(d)))
	return nil
}
