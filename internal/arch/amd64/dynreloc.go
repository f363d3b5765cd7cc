package amd64

import (
	"debug/elf"

	"github.com/hotpatch/hotpatch/internal/arch"
)

// DynRelocKind implements arch.Arch (x86-64 psABI, table 4.10).
func (Arch) DynRelocKind(t uint32) arch.DynKind {
	switch elf.R_X86_64(t) {
	case elf.R_X86_64_GLOB_DAT, elf.R_X86_64_JMP_SLOT:
		return arch.DynSlot
	case elf.R_X86_64_IRELATIVE:
		return arch.DynIRelative
	case elf.R_X86_64_TPOFF64:
		return arch.DynTPOff
	case elf.R_X86_64_DTPMOD64:
		return arch.DynTPMod
	}
	return arch.DynOther
}

// UnwindRegs implements arch.Arch: %rsp is DWARF register 7, %rbp 6, and the
// return address column is 16 (x86-64 psABI, figure 3.36).
func (Arch) UnwindRegs() arch.UnwindRegs { return arch.UnwindRegs{SP: 7, FP: 6, RA: 16, CallLen: 1} }
