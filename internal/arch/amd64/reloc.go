package amd64

// Relocation arithmetic of the x86-64 psABI ("System V Application Binary
// Interface, AMD64 Architecture Processor Supplement", section 4.4.1
// "Relocation Types"), for the relocations gcc emits in relocatable objects
// compiled with the small and large code models, with and without -fPIC.
//
// Notation (as in the psABI): S is the value of the symbol, A the addend, P the
// address of the place being relocated, G+GOT the address of the symbol's slot
// in the global offset table (RelocValues.GOTEntry), GOT the address of the
// table itself. The patch linker always gives a symbol referenced through the
// GOT a real slot, so the optional "relaxations" of GOTPCRELX/REX_GOTPCRELX
// (rewriting "mov foo@GOTPCREL(%rip)" into "lea foo(%rip)") are never needed:
// the unrelaxed instruction is always correct. The opposite rewrite, for PIE
// and non-PIC code that addresses a library's data as if it were in reach,
// is in fardata.go.

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/hotpatch/hotpatch/internal/arch"
)

// fieldKind says how a computed value is stored and range-checked.
type fieldKind int

const (
	fieldNone fieldKind = iota // R_X86_64_NONE: nothing written
	fieldS32                   // 32-bit field, value must fit int32 (word32 sign-extended)
	fieldU32                   // 32-bit field, value must fit uint32 (word32 zero-extended)
	fieldW64                   // 64-bit field, any value
)

// formula says which psABI expression a relocation computes.
type formula int

const (
	fNone       formula = iota
	fSA                 // S + A
	fSAP                // S + A - P
	fGotEntAP           // G + GOT + A - P
	fTPOffA             // TPOff + A (thread-pointer offset of the symbol)
	fSAGot              // S + A - GOT
	fGotAP              // GOT + A - P
	fGotEntAP64         // as fGotEntAP, 64-bit
	fDTPOffA            // DTPOFF + A (offset of the symbol in its module's TLS block)
)

type relocDef struct {
	info  arch.RelocInfo
	f     formula
	field fieldKind
}

func def(t elf.R_X86_64, size int, f formula, field fieldKind, got, tls, call, pcrel bool) relocDef {
	return relocDef{
		info:  arch.RelocInfo{Name: t.String(), Size: size, GOT: got, TLS: tls, Call: call, PCRel: pcrel},
		f:     f,
		field: field,
	}
}

// relocs lists every relocation type the linker handles.
var relocs = map[elf.R_X86_64]relocDef{
	elf.R_X86_64_NONE: def(elf.R_X86_64_NONE, 0, fNone, fieldNone, false, false, false, false),
	// word64 S + A: absolute pointers in data (function pointer tables, ...).
	elf.R_X86_64_64: def(elf.R_X86_64_64, 8, fSA, fieldW64, false, false, false, false),
	// word32 S + A - P: RIP-relative data references in non-PIC / PIE code.
	elf.R_X86_64_PC32: def(elf.R_X86_64_PC32, 4, fSAP, fieldS32, false, false, false, true),
	// word32 L + A - P: calls and tail jumps ("call foo@PLT"). We have no PLT:
	// L is the function itself, or a FarStub when it is out of rel32 reach.
	elf.R_X86_64_PLT32: def(elf.R_X86_64_PLT32, 4, fSAP, fieldS32, false, false, true, true),
	// word32 S + A, zero-extended to 64 bits by the instruction (movl $sym, %eax).
	elf.R_X86_64_32: def(elf.R_X86_64_32, 4, fSA, fieldU32, false, false, false, false),
	// word32 S + A, sign-extended (movq $sym, %rax; sym(,%rdi,8) addressing).
	elf.R_X86_64_32S: def(elf.R_X86_64_32S, 4, fSA, fieldS32, false, false, false, false),
	// word32 G + GOT + A - P: "mov foo@GOTPCREL(%rip), %reg" (-fPIC extern data).
	elf.R_X86_64_GOTPCREL:      def(elf.R_X86_64_GOTPCREL, 4, fGotEntAP, fieldS32, true, false, false, true),
	elf.R_X86_64_GOTPCRELX:     relaxable(def(elf.R_X86_64_GOTPCRELX, 4, fGotEntAP, fieldS32, true, false, false, true), 2, 0),
	elf.R_X86_64_REX_GOTPCRELX: relaxable(def(elf.R_X86_64_REX_GOTPCRELX, 4, fGotEntAP, fieldS32, true, false, false, true), 3, 0),
	// word64 G + GOT + A - P (large code model).
	elf.R_X86_64_GOTPCREL64: def(elf.R_X86_64_GOTPCREL64, 8, fGotEntAP64, fieldW64, true, false, false, true),
	// word32 G + GOT + A - P where the slot holds the variable's offset from the
	// thread pointer: initial-exec TLS ("mov foo@gottpoff(%rip), %rax;
	// mov %fs:(%rax), %eax"), what PIE code uses for extern __thread.
	elf.R_X86_64_GOTTPOFF: relaxable(def(elf.R_X86_64_GOTTPOFF, 4, fGotEntAP, fieldS32, true, true, false, true), 3, 0),
	// word32 TPOFF + A: local-exec TLS in non-PIC code ("mov %fs:foo@tpoff, %eax").
	elf.R_X86_64_TPOFF32: def(elf.R_X86_64_TPOFF32, 4, fTPOffA, fieldS32, false, true, false, false),
	// word64 TPOFF + A.
	elf.R_X86_64_TPOFF64: def(elf.R_X86_64_TPOFF64, 8, fTPOffA, fieldW64, false, true, false, false),
	// word32 G + GOT + A - P where the GOT entry is a tls_index {module id,
	// offset} pair: general-dynamic TLS in -fPIC code ("lea foo@tlsgd(%rip),
	// %rdi; call __tls_get_addr@PLT"). The patch gets its own pair holding
	// the module id the dynamic linker gave the variable's module, so that
	// __tls_get_addr finds the variable for whichever thread calls (also a
	// dlopen'ed module whose block is allocated lazily, per thread).
	elf.R_X86_64_TLSGD: relaxable(tlsDef(elf.R_X86_64_TLSGD, arch.TLSIndexGD), 4, 8),
	// word32 as TLSGD with a {module id, 0} pair: local-dynamic TLS
	// ("lea foo@tlsld(%rip), %rdi; call __tls_get_addr@PLT", then
	// foo@dtpoff(%rax)).
	elf.R_X86_64_TLSLD: relaxable(tlsDef(elf.R_X86_64_TLSLD, arch.TLSIndexLD), 3, 6),
	// word32 / word64 DTPOFF + A: the variable's offset in its module's block.
	elf.R_X86_64_DTPOFF32: dtpDef(elf.R_X86_64_DTPOFF32, 4, fieldS32),
	elf.R_X86_64_DTPOFF64: dtpDef(elf.R_X86_64_DTPOFF64, 8, fieldW64),
	// word64 S + A - P.
	elf.R_X86_64_PC64: def(elf.R_X86_64_PC64, 8, fSAP, fieldW64, false, false, false, true),
	// word64 S + A - GOT (large model PIC data references).
	elf.R_X86_64_GOTOFF64: def(elf.R_X86_64_GOTOFF64, 8, fSAGot, fieldW64, false, false, false, false),
	// word32 / word64 GOT + A - P (address of the GOT, e.g. _GLOBAL_OFFSET_TABLE_).
	elf.R_X86_64_GOTPC32: def(elf.R_X86_64_GOTPC32, 4, fGotAP, fieldS32, false, false, false, true),
	elf.R_X86_64_GOTPC64: def(elf.R_X86_64_GOTPC64, 8, fGotAP, fieldW64, false, false, false, true),
}

// relaxable sets the bytes around the field that GNU ld (bfd
// elf_x86_64_convert_load, elf_x86_64_tls_transition) rewrites when it
// relaxes the instruction in a linked executable or library; Drepper, "ELF
// Handling For Thread-Local Storage" §5.5, gives the TLS sequences:
//   - GOTPCRELX: "mov" -> "lea" (opcode), "call *" -> "addr32 call",
//     "jmp *" -> "jmp; nop" (the nop in the field's last byte): the opcode
//     and ModRM before the field;
//   - REX_GOTPCRELX: also "mov foo@GOTPCREL(%rip), %reg" -> "mov $foo, %reg"
//     and the ALU forms -> immediates, which rewrite the REX prefix too;
//   - GOTTPOFF (IE -> LE): "mov foo@gottpoff(%rip), %reg" -> "mov
//     $foo@tpoff, %reg" / "add" -> "lea" or "add $": REX, opcode, ModRM;
//   - TLSGD (GD -> IE/LE): the whole 16-byte "data16 lea; data16 data16
//     rex64 call __tls_get_addr" (or "data16 lea; data16 rex64 call
//     *__tls_get_addr@GOTPCREL") sequence: 4 bytes before, 8 after;
//   - TLSLD (LD -> LE): "lea; call __tls_get_addr" (12 bytes, 13 with
//     "call *...@GOTPCREL"): 3 bytes before, up to 6 after.
func relaxable(d relocDef, before, after int) relocDef {
	d.info.RelaxBefore, d.info.RelaxAfter = before, after
	return d
}

func tlsDef(t elf.R_X86_64, index int) relocDef {
	d := def(t, 4, fGotEntAP, fieldS32, true, true, false, true)
	d.info.TLSIndex = index
	return d
}

func dtpDef(t elf.R_X86_64, size int, field fieldKind) relocDef {
	d := def(t, size, fDTPOffA, field, false, true, false, false)
	d.info.DTPRel = true
	return d
}

func lookup(t uint32) (relocDef, error) {
	d, ok := relocs[elf.R_X86_64(t)]
	if !ok {
		return relocDef{}, fmt.Errorf("%w: %v", arch.ErrUnsupportedReloc, elf.R_X86_64(t))
	}
	return d, nil
}

// RelocInfo implements arch.Relocator.
func (Arch) RelocInfo(t uint32) (arch.RelocInfo, error) {
	d, err := lookup(t)
	if err != nil {
		return arch.RelocInfo{}, err
	}
	return d.info, nil
}

// ApplyReloc implements arch.Relocator. All arithmetic is modulo 2^64, as the
// psABI specifies; the range check of 32-bit fields then looks at the result
// as a signed (word32 sign-extended) or unsigned (zero-extended) number.
func (Arch) ApplyReloc(t uint32, loc []byte, v arch.RelocValues) error {
	d, err := lookup(t)
	if err != nil {
		return err
	}
	if len(loc) < d.info.Size {
		return fmt.Errorf("%s: place has %d bytes, need %d", d.info.Name, len(loc), d.info.Size)
	}
	a := uint64(v.A)
	var val uint64
	switch d.f {
	case fNone:
		return nil
	case fSA:
		val = v.S + a
	case fSAP:
		val = v.S + a - v.P
	case fGotEntAP, fGotEntAP64:
		val = v.GOTEntry + a - v.P
	case fTPOffA:
		val = uint64(v.TPOff) + a
	case fDTPOffA:
		val = uint64(v.DTPOff) + a
	case fSAGot:
		val = v.S + a - v.GOT
	case fGotAP:
		val = v.GOT + a - v.P
	}
	switch d.field {
	case fieldS32:
		if s := int64(val); s < math.MinInt32 || s > math.MaxInt32 {
			return fmt.Errorf("%s: %w: %#x (%d) does not fit a signed 32-bit field", d.info.Name, arch.ErrRelocOverflow, val, s)
		}
		binary.LittleEndian.PutUint32(loc, uint32(val))
	case fieldU32:
		if val > math.MaxUint32 {
			return fmt.Errorf("%s: %w: %#x does not fit an unsigned 32-bit field", d.info.Name, arch.ErrRelocOverflow, val)
		}
		binary.LittleEndian.PutUint32(loc, uint32(val))
	case fieldW64:
		binary.LittleEndian.PutUint64(loc, val)
	}
	return nil
}

// farStubSize is the length of FarStub's output.
const farStubSize = 14

// FarStub implements arch.Relocator. It returns
//
//	ff 25 00 00 00 00    jmp *0(%rip)
//	<dest, 8 bytes>      .quad dest
//
// The indirect jump reads its target from the 8 bytes right after it
// (RIP-relative displacement 0 is relative to the end of the instruction), so
// the stub works at any address and reaches any 64-bit destination. It clobbers
// no register, so it is transparent both for calls (the return address pushed
// by the call still points after the original call) and for tail jumps.
func (Arch) FarStub(dest uint64) []byte {
	b := make([]byte, farStubSize)
	b[0], b[1] = 0xff, 0x25
	binary.LittleEndian.PutUint64(b[6:], dest)
	return b
}

// RelocTarget implements arch.Relocator: S = field - A for S + A forms and
// S = field + P - A for S + A - P forms, the field read as ApplyReloc
// stores it (word32 sign- or zero-extended, word64).
func (Arch) RelocTarget(t uint32, loc []byte, p uint64, a int64) (uint64, bool) {
	d, err := lookup(t)
	if err != nil || len(loc) < d.info.Size {
		return 0, false
	}
	var val uint64
	switch d.field {
	case fieldS32:
		val = uint64(int64(int32(binary.LittleEndian.Uint32(loc))))
	case fieldU32:
		val = uint64(binary.LittleEndian.Uint32(loc))
	case fieldW64:
		val = binary.LittleEndian.Uint64(loc)
	default:
		return 0, false
	}
	switch d.f {
	case fSA:
		return val - uint64(a), true
	case fSAP:
		return val + p - uint64(a), true
	}
	return 0, false
}
