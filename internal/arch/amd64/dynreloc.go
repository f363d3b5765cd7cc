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
	}
	return arch.DynOther
}
