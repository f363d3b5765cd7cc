package amd64

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/hotpatch/hotpatch/internal/arch"
)

// Lengths of the jump encodings.
const (
	JmpRel8Len  = 2  // eb rel8
	JmpRel32Len = 5  // e9 rel32
	JmpAbsLen   = 14 // ff 25 00 00 00 00 + .quad dest
)

// Nop2 is the two-byte NOP (66 90, "xchg %ax,%ax").
var Nop2 = []byte{0x66, 0x90}

// endbr64 is the CET indirect-branch-tracking landing pad (Intel SDM vol. 2,
// ENDBR64). On CPUs or processes without IBT it executes as a NOP.
var endbr64 = []byte{0xf3, 0x0f, 0x1e, 0xfa}

// IsEndbr64 reports whether b starts with endbr64 (f3 0f 1e fa).
func IsEndbr64(b []byte) bool { return bytes.HasPrefix(b, endbr64) }

// rel returns to - (from + n), the displacement of an n-byte relative jump at
// from, computed in two's complement so that wrap-around is handled.
func rel(from, to uint64, n int) int64 { return int64(to - (from + uint64(n))) }

// EncodeJmpRel32 returns "jmp rel32" (e9 + disp32) placed at from and jumping to
// to. The displacement is relative to the end of the 5-byte instruction. It
// returns an error wrapping arch.ErrOutOfRange when to is more than ±2 GiB away.
func EncodeJmpRel32(from, to uint64) ([]byte, error) {
	d := rel(from, to, JmpRel32Len)
	if d < math.MinInt32 || d > math.MaxInt32 {
		return nil, fmt.Errorf("jmp rel32 from %#x to %#x (displacement %d): %w", from, to, d, arch.ErrOutOfRange)
	}
	b := make([]byte, JmpRel32Len)
	b[0] = 0xe9
	binary.LittleEndian.PutUint32(b[1:], uint32(int32(d)))
	return b, nil
}

// EncodeJmpRel8 returns "jmp rel8" (eb + disp8) placed at from and jumping to
// to, or an error wrapping arch.ErrOutOfRange when to is not within -128..+127
// bytes of the end of the 2-byte instruction.
func EncodeJmpRel8(from, to uint64) ([]byte, error) {
	d := rel(from, to, JmpRel8Len)
	if d < math.MinInt8 || d > math.MaxInt8 {
		return nil, fmt.Errorf("jmp rel8 from %#x to %#x (displacement %d): %w", from, to, d, arch.ErrOutOfRange)
	}
	return []byte{0xeb, byte(int8(d))}, nil
}

// EncodeJmpAbs returns a 14-byte position-independent jump to any 64-bit
// address: "jmp *0(%rip)" (ff 25 00 00 00 00) followed by the 8-byte
// destination, which the indirect jump reads from right after itself.
//
// It clobbers no register. That matters at a function entry: every argument
// register is live there, and for a variadic callee %al holds the number of
// vector registers used (System V x86-64 psABI, 3.5.7), so a
// "movabs $dest,%rax; jmp *%rax" sequence would break calls. The
// destination quadword is never executed: the jmp transfers control first.
func EncodeJmpAbs(to uint64) []byte {
	b := make([]byte, JmpAbsLen)
	copy(b, []byte{0xff, 0x25, 0, 0, 0, 0})
	binary.LittleEndian.PutUint64(b[6:], to)
	return b
}
