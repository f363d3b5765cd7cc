// Package amd64 is hotpatch's knowledge of x86-64 targets: decoding functions
// (golang.org/x/arch/x86/x86asm plus a length decoder for VEX/EVEX encodings it
// does not handle), planning safe redirects, encoding jumps, and applying the
// relocations of the x86-64 psABI. It is plain Go, built and tested on every host.
package amd64

import (
	"debug/elf"

	"github.com/hotpatch/hotpatch/internal/arch"
)

// Arch implements arch.Arch for x86-64.
type Arch struct{}

func init() { arch.Register(Arch{}) }

// Name implements arch.Arch.
func (Arch) Name() string { return "amd64" }

// Machine implements arch.Arch.
func (Arch) Machine() elf.Machine { return elf.EM_X86_64 }

// AuditArch is AUDIT_ARCH_X86_64 (EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE).
func (Arch) AuditArch() uint32 { return 0xc000003e }

// PtrSize implements arch.Arch.
func (Arch) PtrSize() int { return 8 }
