package amd64

import (
	"bytes"
	"debug/elf"
	"fmt"

	"github.com/hotpatch/hotpatch/internal/arch"
)

// PCRelBias implements arch.LinkedCode: a RIP-relative operand (and a
// rel32 branch) is relative to the end of its instruction (Intel SDM vol. 2,
// 2.2.1.6 "RIP-Relative Addressing"), so the bias is the number of bytes
// from the field to the end of the instruction that holds it: 4 for a plain
// disp32 or rel32, more when an immediate follows (cmpl $imm8, x(%rip): 5).
// The code is decoded linearly from its first byte: GCC and Clang put no data
// inside x86-64 functions (jump tables go to .rodata).
func (Arch) PCRelBias(code []byte, fields []int) ([]int64, error) {
	insns, err := Decode(code, 0)
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(fields))
	for i, f := range fields {
		lo, hi := 0, len(insns)
		for lo < hi { // the first instruction ending after f
			m := (lo + hi) / 2
			if int(insns[m].End()) <= f {
				lo = m + 1
			} else {
				hi = m
			}
		}
		k := lo
		if k == len(insns) || int(insns[k].PC) > f || int(insns[k].End()) < f+4 {
			return nil, fmt.Errorf("%w: no instruction holds a 4-byte field at offset %#x", ErrDecode, f)
		}
		out[i] = int64(insns[k].End()) - int64(f)
	}
	return out, nil
}

// Relaxed implements arch.LinkedCode for the relaxations GNU ld and lld
// apply to GOT-relative instructions whose 4-byte field (masked in orig)
// follows the opcode (x86-64 psABI, "Optimize GOTPCRELX Relocations"):
//
//   - mov foo@GOTPCREL(%rip), %reg (8b) becomes lea foo(%rip), %reg (8d);
//   - call *foo@GOTPCREL(%rip) (ff 15) becomes addr32 call foo (67 e8).
//
// The other rewrites the psABI allows (mov $imm into a register, test and
// binary operations with an immediate, jmp *foo@GOTPCREL becoming jmp foo;
// nop) change more than these bytes and are reported as differences: the
// caller then names the function.
func (Arch) Relaxed(orig, mask, linked []byte, i int) bool {
	if i < 0 || i >= len(orig) || len(mask) != len(orig) || len(linked) != len(orig) {
		return false
	}
	fieldAt := func(k int) bool { // a masked 4-byte field starts at k
		if k <= 0 || k+4 > len(mask) || mask[k-1] == 0 {
			return false
		}
		return bytes.Equal(mask[k:k+4], []byte{0, 0, 0, 0})
	}
	o, cur := orig, linked
	switch {
	case fieldAt(i+2) && o[i] == 0x8b && cur[i] == 0x8d:
		return true
	case fieldAt(i+2) && i+1 < len(o) && o[i] == 0xff && o[i+1] == 0x15 && cur[i] == 0x67 && cur[i+1] == 0xe8:
		return true
	case fieldAt(i+1) && i > 0 && o[i-1] == 0xff && o[i] == 0x15 && cur[i-1] == 0x67 && cur[i] == 0xe8:
		return true
	}
	return false
}

// OutBranches implements arch.LinkedCode: the call, jmp and jcc with a
// displacement whose destination is outside [addr, addr+len(code)). The
// displacement is the instruction's last field (Intel SDM vol. 2, "CALL",
// "JMP", "Jcc"): rel32 after e8, e9 or 0f 8x, expressed as R_X86_64_PLT32
// (calls and jumps, which is what GCC emits for them) or R_X86_64_PC32
// (conditional branches); rel8 otherwise, which no relocation can express.
func (Arch) OutBranches(code []byte, addr uint64) ([]arch.OutBranch, error) {
	insns, err := Decode(code, addr)
	if err != nil {
		return nil, err
	}
	end := addr + uint64(len(code))
	var out []arch.OutBranch
	for _, in := range insns {
		if !in.Kind.IsBranch() || (in.Target >= addr && in.Target < end) {
			continue
		}
		off := int(in.PC - addr)
		last := off + in.Len
		b := arch.OutBranch{Dest: in.Target, Size: 1, Field: last - 1, Bias: 1}
		switch {
		case in.Len >= 5 && (code[last-5] == 0xe8 || code[last-5] == 0xe9):
			b.Size, b.Field, b.Bias, b.Reloc = 4, last-4, 4, uint32(elf.R_X86_64_PLT32)
		case in.Len >= 6 && code[last-6] == 0x0f && code[last-5]&0xf0 == 0x80:
			b.Size, b.Field, b.Bias, b.Reloc = 4, last-4, 4, uint32(elf.R_X86_64_PC32)
		}
		out = append(out, b)
	}
	return out, nil
}
