package amd64

import (
	"encoding/hex"
	"errors"
	"fmt"

	"golang.org/x/arch/x86/x86asm"
)

// ErrDecode is wrapped by every error Decode returns for bytes that are not a
// valid (or not a supported) x86-64 instruction.
var ErrDecode = errors.New("cannot decode instruction")

// maxInsnLen is the architectural limit on the length of one x86 instruction
// (Intel SDM vol. 2, 2.3.11 "AVX Instruction Length"; longer ones raise #GP).
const maxInsnLen = 15

// Kind classifies an instruction by what it does to control flow.
type Kind uint8

// Instruction kinds.
const (
	Other        Kind = iota // no effect on control flow beyond falling through
	Call                     // direct call rel32; Target is the callee
	Jmp                      // direct jmp rel8/rel32; Target is the destination
	Jcc                      // conditional direct branch (jcc, jrcxz, loop*, xbegin); Target is the taken destination
	Ret                      // near or far return, iret
	CallIndirect             // call through a register or memory
	JmpIndirect              // jmp through a register or memory
	Nop                      // nop, including the multi-byte 0f 1f forms used as padding
	Int3                     // int3 (cc), also used as padding
	Endbr                    // endbr64 / endbr32 (CET indirect-branch landing pad)
	Syscall                  // syscall / sysenter
	Ud2                      // ud0, ud1, ud2
	Hlt                      // hlt
)

var kindNames = [...]string{
	Other: "other", Call: "call", Jmp: "jmp", Jcc: "jcc", Ret: "ret",
	CallIndirect: "call*", JmpIndirect: "jmp*", Nop: "nop", Int3: "int3",
	Endbr: "endbr", Syscall: "syscall", Ud2: "ud2", Hlt: "hlt",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// IsBranch reports whether k is a direct branch with a Target.
func (k Kind) IsBranch() bool { return k == Call || k == Jmp || k == Jcc }

// Insn is one decoded instruction.
type Insn struct {
	PC   uint64 // address of the first byte
	Len  int    // length in bytes
	Kind Kind
	// Target is the destination of a direct rel8/rel32 branch (Call, Jmp,
	// Jcc), zero otherwise.
	Target uint64
}

// End returns the address just after the instruction (the return address of a call).
func (i Insn) End() uint64 { return i.PC + uint64(i.Len) }

// insnDetail carries what the decoder learns beyond Insn, for callers inside
// the package (and tests): whether the memory operand is RIP-relative and
// where its disp32 sits.
type insnDetail struct {
	ripRel  bool
	dispOff int // offset of the RIP-relative disp32 within the instruction, -1 if unknown
	vex     bool
}

// Decode implements linear decoding on Arch; see the package-level Decode.
func (Arch) Decode(code []byte, pc uint64) ([]Insn, error) { return Decode(code, pc) }

// Decode decodes code, the bytes of one function loaded at pc, linearly from
// its first byte to its last. Every byte must belong to exactly one
// instruction: an instruction that runs past the end of code or bytes that do
// not decode produce an error wrapping ErrDecode that names the offset and the
// bytes. Decode never panics, whatever code holds.
func Decode(code []byte, pc uint64) (insns []Insn, err error) {
	defer func() {
		if r := recover(); r != nil {
			insns, err = nil, fmt.Errorf("%w: decoder panic at pc %#x: %v", ErrDecode, pc, r)
		}
	}()
	insns = make([]Insn, 0, len(code)/4+1)
	for off := 0; off < len(code); {
		in, _, err := decodeOne(code[off:], pc+uint64(off))
		if err != nil {
			return nil, fmt.Errorf("offset %#x (pc %#x): %w", off, pc+uint64(off), err)
		}
		insns = append(insns, in)
		off += in.Len
	}
	return insns, nil
}

// badBytes formats the bytes at the start of b for an error message.
func badBytes(b []byte) string {
	if len(b) > maxInsnLen {
		b = b[:maxInsnLen]
	}
	return hex.EncodeToString(b)
}

// decodeOneSafe is decodeOne with panics (from x86asm on hostile input)
// turned into errors.
func decodeOneSafe(b []byte, pc uint64) (in Insn, det insnDetail, err error) {
	defer func() {
		if r := recover(); r != nil {
			in, det, err = Insn{}, insnDetail{}, fmt.Errorf("%w: decoder panic on bytes %s: %v", ErrDecode, badBytes(b), r)
		}
	}()
	return decodeOne(b, pc)
}

// decodeOne decodes the instruction at the start of b, located at pc.
func decodeOne(b []byte, pc uint64) (Insn, insnDetail, error) {
	if len(b) == 0 {
		return Insn{}, insnDetail{}, fmt.Errorf("%w: no bytes", ErrDecode)
	}
	// endbr64 (f3 0f 1e fa) and endbr32 (f3 0f 1e fb): x86asm decodes them as a
	// lone 1-byte "rep" with Op 0 and no error (golang/go#35865), so recognise
	// them first.
	if len(b) >= 4 && b[0] == 0xf3 && b[1] == 0x0f && b[2] == 0x1e && (b[3] == 0xfa || b[3] == 0xfb) {
		return Insn{PC: pc, Len: 4, Kind: Endbr}, insnDetail{}, nil
	}

	// In 64-bit mode c4, c5 and 62 always start a VEX/EVEX prefix (LES, LDS and
	// BOUND do not exist there; Intel SDM vol. 2, 2.3.5 and 2.7.1), as does 8f
	// when ModRM.reg would be non-zero (AMD XOP; POP Ev requires reg == 0).
	// Only address-size and segment prefixes may precede them; 66/f2/f3/f0 and
	// REX before VEX raise #UD (SDM 2.3.2).
	p := 0
	for p < len(b) && p < maxInsnLen && isSegOrAddrPrefix(b[p]) {
		p++
	}
	if p < len(b) {
		switch op := b[p]; {
		case op == 0xc4 || op == 0xc5 || op == 0x62:
			return decodeVEX(b, p, pc)
		case op == 0x8f && p+1 < len(b) && b[p+1]&0x1f >= 8:
			return decodeVEX(b, p, pc)
		}
	}

	inst, err := x86asm.Decode(b, 64)
	// x86asm reports a prefix followed by an opcode it does not know as a
	// 1-byte instruction with Op 0 and no error; treat it as a failure.
	if err != nil || inst.Op == 0 || inst.Len <= 0 || inst.Len > len(b) {
		if in, det, ok := decodeLegacyFallback(b, pc); ok {
			return in, det, nil
		}
		if err == nil {
			err = errors.New("unknown opcode")
		}
		return Insn{}, insnDetail{}, fmt.Errorf("%w: bytes %s: %v", ErrDecode, badBytes(b), err)
	}

	in := Insn{PC: pc, Len: inst.Len, Kind: Other}
	var det insnDetail
	for _, a := range inst.Args {
		if m, ok := a.(x86asm.Mem); ok && m.Base == x86asm.RIP {
			det.ripRel, det.dispOff = true, -1
			if inst.PCRel == 4 { // x86asm says where the disp32 sits
				det.dispOff = inst.PCRelOff
			}
		}
	}
	rel, hasRel := x86asm.Rel(0), false
	if len(inst.Args) > 0 {
		rel, hasRel = inst.Args[0].(x86asm.Rel)
	}
	target := func() uint64 { return pc + uint64(inst.Len) + uint64(int64(rel)) }

	switch inst.Op {
	case x86asm.CALL:
		if hasRel {
			in.Kind, in.Target = Call, target()
		} else {
			in.Kind = CallIndirect
		}
	case x86asm.LCALL:
		in.Kind = CallIndirect
	case x86asm.JMP:
		if hasRel {
			in.Kind, in.Target = Jmp, target()
		} else {
			in.Kind = JmpIndirect
		}
	case x86asm.LJMP:
		in.Kind = JmpIndirect
	case x86asm.JA, x86asm.JAE, x86asm.JB, x86asm.JBE, x86asm.JE, x86asm.JG, x86asm.JGE,
		x86asm.JL, x86asm.JLE, x86asm.JNE, x86asm.JNO, x86asm.JNP, x86asm.JNS, x86asm.JO,
		x86asm.JP, x86asm.JS, x86asm.JCXZ, x86asm.JECXZ, x86asm.JRCXZ,
		x86asm.LOOP, x86asm.LOOPE, x86asm.LOOPNE,
		// xbegin's operand is the abort handler: a branch target like any other.
		x86asm.XBEGIN:
		if !hasRel {
			return Insn{}, insnDetail{}, fmt.Errorf("%w: bytes %s: branch without displacement", ErrDecode, badBytes(b))
		}
		in.Kind, in.Target = Jcc, target()
	case x86asm.RET, x86asm.LRET, x86asm.IRET, x86asm.IRETD, x86asm.IRETQ:
		in.Kind = Ret
	case x86asm.NOP:
		in.Kind = Nop
	case x86asm.INT:
		if inst.Len == 1 && b[0] == 0xcc {
			in.Kind = Int3
		}
	case x86asm.SYSCALL, x86asm.SYSENTER:
		in.Kind = Syscall
	case x86asm.UD0, x86asm.UD1, x86asm.UD2:
		in.Kind = Ud2
	case x86asm.HLT:
		in.Kind = Hlt
	}
	return in, det, nil
}

func isSegOrAddrPrefix(c byte) bool {
	switch c {
	case 0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x67:
		return true
	}
	return false
}

func isLegacyPrefix(c byte) bool {
	switch c {
	case 0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x66, 0x67, 0xf0, 0xf2, 0xf3:
		return true
	}
	return false
}

// modrmLen returns the number of bytes taken by the ModRM byte at b[0] and the
// SIB byte and displacement that follow it, and whether the operand is
// RIP-relative (mod 00, r/m 101: SDM vol. 2, 2.2.1.6). The encoding is the
// same with a 67 prefix in 64-bit mode (32-bit addressing, EIP-relative).
func modrmLen(b []byte) (n int, ripRel bool, ok bool) {
	if len(b) < 1 {
		return 0, false, false
	}
	modrm := b[0]
	mod, rm := modrm>>6, modrm&7
	n = 1
	if mod == 3 {
		return n, false, true
	}
	if rm == 4 { // SIB follows
		if len(b) < 2 {
			return 0, false, false
		}
		sib := b[1]
		n++
		if mod == 0 && sib&7 == 5 { // no base: disp32
			n += 4
		}
	} else if mod == 0 && rm == 5 {
		n += 4
		ripRel = true
	}
	switch mod {
	case 1:
		n++
	case 2:
		n += 4
	}
	return n, ripRel, true
}

// decodeVEX is a length decoder for VEX (c4/c5), EVEX (62) and XOP (8f)
// encoded instructions, which x86asm does not (fully) handle. b starts at
// the instruction; the escape byte is at b[p] (after optional segment and
// address-size prefixes). Layouts are from the Intel SDM vol. 2, 2.3 (VEX) and
// 2.7 (EVEX), and AMD APM vol. 3, 1.8 (XOP). None of these instructions
// affects control flow, so the kind is always Other.
func decodeVEX(b []byte, p int, pc uint64) (Insn, insnDetail, error) {
	fail := func(why string) (Insn, insnDetail, error) {
		return Insn{}, insnDetail{}, fmt.Errorf("%w: bytes %s: %s", ErrDecode, badBytes(b), why)
	}
	esc := b[p]
	var (
		mapSel int
		pfxLen int // bytes of the VEX/EVEX/XOP prefix itself
	)
	switch esc {
	case 0xc5: // c5 [R vvvv L pp]: map 0F
		mapSel, pfxLen = 1, 2
	case 0xc4: // c4 [R X B mmmmm] [W vvvv L pp]
		if len(b) < p+2 {
			return fail("truncated VEX prefix")
		}
		mapSel, pfxLen = int(b[p+1]&0x1f), 3
		if mapSel < 1 || mapSel > 3 {
			return fail(fmt.Sprintf("unsupported VEX opcode map %d", mapSel))
		}
	case 0x8f: // XOP: 8f [R X B mmmmm] [W vvvv L pp], maps 8, 9, 10
		if len(b) < p+2 {
			return fail("truncated XOP prefix")
		}
		mapSel, pfxLen = int(b[p+1]&0x1f), 3
		if mapSel < 8 || mapSel > 10 {
			return fail(fmt.Sprintf("unsupported XOP opcode map %d", mapSel))
		}
	case 0x62: // EVEX: 62 [R X B R' 0 mmm] [W vvvv 1 pp] [z L'L b V' aaa]
		if len(b) < p+4 {
			return fail("truncated EVEX prefix")
		}
		p0, p1 := b[p+1], b[p+2]
		mapSel, pfxLen = int(p0&7), 4
		if p0&0x08 != 0 || p1&0x04 == 0 {
			// Reserved bits that must be 0 / 1 outside APX extensions.
			return fail("unsupported EVEX prefix (reserved bits set, APX?)")
		}
		switch mapSel {
		case 1, 2, 3, 5, 6:
		default:
			return fail(fmt.Sprintf("unsupported EVEX opcode map %d", mapSel))
		}
	}
	pos := p + pfxLen
	if pos >= len(b) {
		return fail("truncated before opcode")
	}
	opcode := b[pos]
	pos++
	var det insnDetail
	det.vex = true
	// vzeroupper / vzeroall (VEX.0F 77) are the only VEX instructions
	// without a ModRM byte.
	if !(mapSel == 1 && opcode == 0x77 && esc != 0x62) {
		n, rip, ok := modrmLen(b[pos:])
		if !ok {
			return fail("truncated ModRM/SIB")
		}
		if rip {
			det.ripRel, det.dispOff = true, pos+1
		}
		pos += n
	}
	switch mapSel {
	case 3, 8: // 0F3A and XOP map 8: imm8 always
		pos++
	case 10: // XOP map 10 (bextr, lwpins, lwpval): imm32
		pos += 4
	case 1:
		switch opcode {
		case 0x70, 0x71, 0x72, 0x73, 0xc2, 0xc4, 0xc5, 0xc6:
			pos++
		}
	}
	if pos > maxInsnLen {
		return fail("instruction longer than 15 bytes")
	}
	if pos > len(b) {
		return fail("truncated instruction")
	}
	return Insn{PC: pc, Len: pos, Kind: Other}, det, nil
}

// decodeLegacyFallback is a length decoder for the handful of 0f-map
// instructions GCC and glibc emit that x86asm does not know: the
// reserved-NOP/hint space 0f 18..1f (prefetch hints, cldemote, rdssp,
// nop Ev), the 0f 01 system group (serialize, setssbsy, saveprevssp, ...),
// 0f c7 (rdrand, rdseed, rdpid), 0f ae (incssp, clwb, ...), 0f 38 (no
// immediate) and 0f 3a (imm8), ud0/ud1. It reports ok=false for anything else.
func decodeLegacyFallback(b []byte, pc uint64) (Insn, insnDetail, bool) {
	p := 0
	for p < len(b) && p < maxInsnLen && isLegacyPrefix(b[p]) {
		p++
	}
	if p < len(b) && b[p]&0xf0 == 0x40 { // REX must immediately precede the opcode
		p++
	}
	if p+1 >= len(b) || b[p] != 0x0f {
		return Insn{}, insnDetail{}, false
	}
	op := b[p+1]
	pos := p + 2
	imm := 0
	kind := Other
	switch {
	case op == 0x38:
		pos++
	case op == 0x3a:
		pos++
		imm = 1
	case op >= 0x18 && op <= 0x1f, op == 0x01, op == 0xc7, op == 0xae, op == 0x00:
	case op == 0xb9, op == 0xff:
		kind = Ud2
	default:
		return Insn{}, insnDetail{}, false
	}
	if pos >= len(b) {
		return Insn{}, insnDetail{}, false
	}
	n, rip, ok := modrmLen(b[pos:])
	if !ok {
		return Insn{}, insnDetail{}, false
	}
	var det insnDetail
	if rip {
		det.ripRel, det.dispOff = true, pos+1
	}
	pos += n + imm
	if pos > len(b) || pos > maxInsnLen {
		return Insn{}, insnDetail{}, false
	}
	return Insn{PC: pc, Len: pos, Kind: kind}, det, true
}
