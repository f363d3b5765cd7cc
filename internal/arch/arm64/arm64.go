// Package arm64 is hotpatch's knowledge of arm64 (AArch64) targets: the jump
// encodings used to redirect a function and landing-pad recognition. It is
// plain Go, built and tested on every host.
//
// It does not implement the whole arch.Arch interface yet (no decoder,
// redirect planner or relocations), so it does not register itself with
// arch.Register.
//
// Encodings are from the Arm Architecture Reference Manual for A-profile
// (ARM DDI 0487), section C6.2 (B, BR, LDR (literal), BTI). Instructions are
// 32 bits, little-endian in memory on Linux.
package arm64

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/hotpatch/hotpatch/internal/arch"
)

// ErrMisaligned is returned (wrapped) when a branch source or destination is
// not 4-byte aligned: A64 instructions are always at multiples of 4.
var ErrMisaligned = errors.New("address not 4-byte aligned")

// Arch describes arm64 targets.
type Arch struct{}

// Name returns "arm64".
func (Arch) Name() string { return "arm64" }

// Machine returns elf.EM_AARCH64.
func (Arch) Machine() elf.Machine { return elf.EM_AARCH64 }

// AuditArch is AUDIT_ARCH_AARCH64 (EM_AARCH64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE).
func (Arch) AuditArch() uint32 { return 0xc00000b7 }

// PtrSize returns 8.
func (Arch) PtrSize() int { return 8 }

// Instruction encodings.
const (
	opB       = 0x14000000 // B imm26: 000101 imm26
	bRange    = 1 << 27    // B reaches [pc-128 MiB, pc+128 MiB)
	ldrX16Lit = 0x58000050 // LDR X16, .+8: 01 011 0 00 imm19=2 Rt=16
	brX16     = 0xd61f0200 // BR X16: 1101011 0000 11111 000000 Rn=16 00000
	btiMask   = 0xffffff3f // BTI is HINT #(32|op2<<1): op2 in bits 7:6 ("targets": -, c, j, jc)
	btiBase   = 0xd503241f
	// Nop is the A64 NOP (HINT #0).
	Nop = 0xd503201f
)

// Lengths of the jump encodings in bytes.
const (
	BLen       = 4
	AbsJumpLen = 16
)

// EncodeB returns "B to" placed at from: a PC-relative branch with a signed
// 26-bit word offset, reaching ±128 MiB. It returns an error wrapping
// arch.ErrOutOfRange when to is out of reach and ErrMisaligned when from or to
// is not a multiple of 4.
func EncodeB(from, to uint64) ([]byte, error) {
	if from%4 != 0 || to%4 != 0 {
		return nil, fmt.Errorf("b from %#x to %#x: %w", from, to, ErrMisaligned)
	}
	d := int64(to - from)
	if d < -bRange || d >= bRange {
		return nil, fmt.Errorf("b from %#x to %#x (offset %d): %w", from, to, d, arch.ErrOutOfRange)
	}
	insn := uint32(opB) | uint32(d>>2)&(1<<26-1)
	return binary.LittleEndian.AppendUint32(nil, insn), nil
}

// EncodeAbsJump returns a 16-byte jump to any 64-bit address:
//
//	ldr x16, .+8
//	br  x16
//	.quad to
//
// It clobbers x16 (IP0), which the AAPCS64 (section 6.1.1, "General-purpose
// registers") reserves as an intra-procedure-call scratch register that
// linker veneers and PLT stubs may corrupt at any call, so no caller keeps a
// live value in it across a branch to a function entry. The literal is read
// with an 8-byte load; it need not be 8-byte aligned because Linux runs user
// space with alignment checking off (SCTLR_EL1.A = 0) for normal memory.
// BR to x16 (or x17) is also what a BTI "c" landing pad accepts, should the
// destination be guarded.
func EncodeAbsJump(to uint64) []byte {
	b := make([]byte, 0, AbsJumpLen)
	b = binary.LittleEndian.AppendUint32(b, ldrX16Lit)
	b = binary.LittleEndian.AppendUint32(b, brX16)
	return binary.LittleEndian.AppendUint64(b, to)
}

// IsBTI reports whether insn is a BTI landing pad (BTI, BTI c, BTI j, BTI jc).
// A redirect must keep it in place and write the jump after it, so that
// indirect branches into a guarded page still land on a valid pad.
func IsBTI(insn uint32) bool { return insn&btiMask == btiBase }

// ErrNotSupported is returned (wrapped) by the parts of arch.Arch this
// package does not implement yet.
var ErrNotSupported = errors.New("not supported on arm64 yet")

// RelocateEntry would copy the instructions a redirect overwrites elsewhere
// (arch.EntryMover); arm64 has no instruction decoder here yet.
func (Arch) RelocateEntry(fn arch.Func, r arch.Redirect, addr uint64) (arch.Relocated, error) {
	return arch.Relocated{}, fmt.Errorf("relocate the entry of %s: %w", fn.Name, ErrNotSupported)
}

// RewindEntry (arch.EntryMover) never rewinds on arm64 yet.
func (Arch) RewindEntry(fn arch.Func, r arch.Redirect, pc uint64) (uint64, bool) { return 0, false }

// PCRelBias implements arch.LinkedCode: AArch64's PC-relative instructions
// (ADR, ADRP, B, BL, LDR literal) are relative to their own address, which
// is where the relocated field starts (a fixed 4-byte instruction).
func (Arch) PCRelBias(code []byte, fields []int) ([]int64, error) {
	return make([]int64, len(fields)), nil
}

// Relaxed implements arch.LinkedCode. The AArch64 GOT relaxations (ADRP+LDR
// into ADRP+ADD) are not recognised: the difference is reported, which
// refuses rather than guesses.
func (Arch) Relaxed(orig, mask, linked []byte, i int) bool { return false }

// OutBranches implements arch.LinkedCode. Not implemented for AArch64
// (B/BL immediates resolved by the assembler would need R_AARCH64_CALL26):
// the linked-output route is refused.
func (Arch) OutBranches(code []byte, addr uint64) ([]arch.OutBranch, error) {
	return nil, fmt.Errorf("%w: reading branches of linked AArch64 code is not implemented", arch.ErrUnsupportedArch)
}
