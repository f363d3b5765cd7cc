// Package arch describes, for the engine and the linker, everything hotpatch needs
// to know about the CPU of the *target* process: how to decode a function well
// enough to redirect it safely, how to encode the redirecting jump, and how to
// apply the relocations of an object compiled for it.
//
// Implementations live in one package per architecture (internal/arch/amd64,
// internal/arch/arm64). They are plain Go with no dependency on the host, so
// every architecture is built and tested on every host. They register
// themselves with Register; callers look them up with ForMachine.
package arch

import (
	"debug/elf"
	"errors"
	"fmt"
	"sync"
)

// Sentinel errors callers branch on with errors.Is.
var (
	// ErrUnsupportedArch: no implementation is registered for the ELF machine.
	ErrUnsupportedArch = errors.New("unsupported architecture")
	// ErrUnsupportedReloc: the relocation type is not one the linker handles.
	ErrUnsupportedReloc = errors.New("unsupported relocation type")
	// ErrRelocOverflow: a relocated value does not fit its field.
	ErrRelocOverflow = errors.New("relocation value out of range")
	// ErrOutOfRange: a jump cannot reach its destination with the encoding asked for.
	ErrOutOfRange = errors.New("jump destination out of range")
	// ErrNotPatchable: a function cannot be redirected safely; the wrapping
	// error says why.
	ErrNotPatchable = errors.New("function cannot be redirected safely")
)

// Arch is the target-CPU knowledge the rest of hotpatch uses.
type Arch interface {
	// Name is the short name ("amd64", "arm64").
	Name() string
	// Machine is the ELF e_machine value.
	Machine() elf.Machine
	// PtrSize is the size of a pointer in bytes.
	PtrSize() int

	Redirector
	FuncAnalyzer
	Relocator

	// DynRelocKind classifies a dynamic relocation type found in a loaded
	// module (.rela.dyn/.rela.plt), for reading what the dynamic linker bound.
	DynRelocKind(t uint32) DynKind

	// UnwindRegs names the DWARF register numbers the stack unwinder tracks.
	UnwindRegs() UnwindRegs

	// AuditArch is the AUDIT_ARCH_* value (linux/audit.h) of the native
	// system call convention: seccomp_data.arch, which seccomp filters check.
	AuditArch() uint32

	EntryMover
	LinkedCode
}

// LinkedCode reads code in a linked file (an executable or shared library),
// where the static linker has resolved every relocated field and may have
// rewritten the instruction around one (relaxation).
type LinkedCode interface {
	// PCRelBias returns, for each PC-relative relocated field at offset
	// fields[i] of code (one function's bytes), the distance from the field
	// to the address the instruction's operand is relative to: the value
	// written is S+A-P, the instruction computes its address from that
	// anchor, so the address referred to is S+A+bias. With --emit-relocs this
	// is how the datum a reference against a section symbol means is found
	// (x86-64: the end of the instruction; the psABI's -4 addend is the
	// common case, an immediate after the field makes it -5 or -8).
	PCRelBias(code []byte, fields []int) ([]int64, error)
	// Relaxed reports whether the difference at byte i between an object's
	// code (orig; mask is 0 under its relocated fields) and the linked
	// program's bytes (linked) is the static linker's relaxation of the
	// instruction that holds a relocated field, e.g. x86-64's GOTPCRELX
	// "mov foo@GOTPCREL(%rip)" turned into "lea foo(%rip)".
	Relaxed(orig, mask, linked []byte, i int) bool
	// OutBranches returns the direct branches of code (one function's
	// bytes, at addr) whose destination lies outside it. In a linked file
	// the assembler resolved those between functions of one section itself
	// (no -ffunction-sections, as in LTO code generation), so no kept
	// relocation marks their fields.
	OutBranches(code []byte, addr uint64) ([]OutBranch, error)
}

// OutBranch is a direct branch that leaves its function.
type OutBranch struct {
	Field int    // offset of the displacement field in the function
	Size  int    // its size in bytes
	Dest  uint64 // the destination
	// Reloc is the relocation type that expresses the field (0 when none
	// can: a short displacement), and Bias the distance from the field to
	// where the displacement is relative to (see PCRelBias).
	Reloc uint32
	Bias  int64
}

// Relocated is a copy of the instructions a redirect overwrites, placed
// elsewhere (Detours' trampoline): a thread stopped inside the overwritten
// bytes continues there, in the copy, and the copy jumps back into the old
// body after the overwritten bytes.
type Relocated struct {
	// Addr is where Code must be placed.
	Addr uint64
	Code []byte
	// Map gives, for each instruction boundary strictly inside the overwritten
	// bytes, the address of the matching instruction in the copy.
	Map map[uint64]uint64
}

// EntryMover moves threads out of the bytes a redirect overwrites.
type EntryMover interface {
	// RelocateEntry returns a copy, to be placed at addr, of the instructions
	// of fn that start inside the bytes r overwrites, with PC-relative operands
	// and relative branches fixed up for addr, followed by a jump back to the
	// first instruction after them in fn. It returns an error when an
	// instruction cannot be relocated (a displacement out of reach, an
	// encoding not handled).
	RelocateEntry(fn Func, r Redirect, addr uint64) (Relocated, error)
	// RewindEntry reports whether a thread stopped at pc, strictly inside the
	// bytes r overwrites, can be put back at r.Addr as if it had not executed
	// the instructions between them: true when those only pushed registers,
	// lowered the stack pointer or set status flags (dead at a function entry).
	// The thread's stack pointer must then be raised by spDelta.
	RewindEntry(fn Func, r Redirect, pc uint64) (spDelta uint64, ok bool)
}

// UnwindRegs are DWARF register numbers (the psABI's DWARF register mapping).
type UnwindRegs struct {
	SP, FP, RA uint64
	// CallLen is how far a return address lies past the start of its call
	// instruction at least; unwinders look up pc-1 for caller frames.
	CallLen uint64
}

// DynKind is what a dynamic relocation tells hotpatch about the process.
type DynKind int

// Dynamic relocation kinds.
const (
	DynOther     DynKind = iota
	DynSlot              // a GOT slot bound to a symbol (GLOB_DAT, JUMP_SLOT)
	DynIRelative         // a GOT slot holding an IFUNC's chosen implementation; addend = resolver
	DynTPOff             // a GOT slot holding a TLS offset from the thread pointer (TPOFF64)
	DynTPMod             // a GOT slot holding a TLS module id (DTPMOD64)
)

// Func is one function of the target as the redirect planner sees it.
type Func struct {
	Name string
	// Addr is the function's run-time address.
	Addr uint64
	// Code is the function's bytes (st_size of its symbol).
	Code []byte
	// Tail holds the bytes that follow the function up to the next symbol or the
	// end of its section. When the function is shorter than the jump, the jump
	// may extend into Tail if those bytes are alignment padding nothing executes.
	Tail []byte
	// Gap holds the bytes between the end of the function just below this one
	// (Prev) and Addr, and Prev that function's code, which ends where Gap
	// starts: alignment padding there, after Prev's last instruction, can hold
	// the long jump of a slot redirect (see Redirect.Slot). Both are nil when
	// unknown (no symbol below, or another section). When that function's
	// size is unknown (a size-0 symbol), Gap is nil and Prev runs from its
	// start up to Addr: the implementation finds where its code ends.
	Gap  []byte
	Prev []byte
	// Near lists other gaps between two functions within reach of a short
	// jump from the entry (beyond Gap and Tail), nearest first: a slot may
	// go there when the padding right around the function is too small.
	Near []Gap
}

// Gap is a run of bytes between two functions: Prev ends at Addr, Next
// starts at Addr+len(Bytes).
type Gap struct {
	Addr       uint64
	Bytes      []byte
	Prev, Next []byte
}

// Redirect is a planned redirect: write Jump over Orig at Addr.
type Redirect struct {
	// Addr is where the jump is written: the function entry, or just after a
	// landing-pad instruction (endbr64, BTI) that is kept in place.
	Addr uint64
	// Orig holds the bytes at Addr that the jump replaces (len(Orig) == len(Jump)).
	Orig []byte
	// Jump is the jump instruction to write.
	Jump []byte
	// Kind names the encoding ("jmp rel32", "jmp abs64", ...), for reports.
	Kind string
	// Slot, when non-nil, is a long jump to the destination written into dead
	// bytes near the function (alignment padding nothing executes), and Jump is
	// then a short jump to Slot.Addr: for a function too short for the long
	// jump, or with a branch target inside its first bytes. Slot is written
	// before Jump and restored after it.
	Slot *Redirect
}

// InSlot reports whether pc lies in the slot's bytes (pc == Slot.Addr included:
// a thread there has taken the short jump already).
func (r Redirect) InSlot(pc uint64) bool {
	return r.Slot != nil && pc >= r.Slot.Addr && pc < r.Slot.Addr+uint64(len(r.Slot.Jump))
}

// Contains reports whether pc lies strictly inside the replaced bytes: a thread
// there would resume in the middle of the new instruction. pc == Addr is fine.
func (r Redirect) Contains(pc uint64) bool {
	return pc > r.Addr && pc < r.Addr+uint64(len(r.Jump))
}

// Redirector plans the redirect of one function.
type Redirector interface {
	// PlanRedirect returns how to redirect every later call of fn to dest. It
	// refuses (an error wrapping ErrNotPatchable that says why) when the bytes to
	// be overwritten are not safe to overwrite: too short without padding, a
	// branch inside the function lands inside them, a call returns into them,
	// or the code cannot be decoded.
	PlanRedirect(fn Func, dest uint64) (Redirect, error)
}

// FuncInfo is what Analyze learns from a function's code.
type FuncInfo struct {
	// Calls holds the destinations of direct calls.
	Calls []uint64
	// CallSites holds the address of each direct call instruction, parallel to Calls.
	CallSites []uint64
	// TailJumps holds destinations of direct jumps that leave the function.
	TailJumps []uint64
	// IndirectCalls counts calls through a register or memory.
	IndirectCalls int
}

// FuncAnalyzer decodes a function.
type FuncAnalyzer interface {
	Analyze(code []byte, addr uint64) (FuncInfo, error)
}

// RelocInfo classifies a relocation type for the linker.
type RelocInfo struct {
	// Name is the ABI name, e.g. "R_X86_64_PC32".
	Name string
	// Size is the number of bytes the relocation writes.
	Size int
	// GOT: the linker must give the symbol a slot in the patch's own GOT and
	// pass its address as RelocValues.GOTEntry.
	GOT bool
	// TLS: the symbol is thread-local; the linker passes its offset from the
	// thread pointer in RelocValues.TPOff (and, with GOT, stores that offset in
	// the GOT slot instead of an address).
	TLS bool
	// Call: a PC-relative call/jump; when S is out of reach the linker may pass
	// the address of a far-jump stub (FarStub) as S instead.
	Call bool
	// PCRel: the value is relative to the place.
	PCRel bool
	// TLSIndex: the GOT entry is not one slot but a tls_index pair for
	// __tls_get_addr (general/local-dynamic TLS): TLSIndexGD holds the
	// symbol's module id and offset in that module's block, TLSIndexLD the
	// module id and 0.
	TLSIndex int
	// DTPRel: the value is the symbol's offset in its module's TLS block
	// (RelocValues.DTPOff), not its thread-pointer offset.
	DTPRel bool
	// RelaxBefore and RelaxAfter count the bytes before and after the field
	// that the static linker may rewrite when it relaxes the instruction
	// sequence (GOTPCRELX mov -> lea, TLS initial-exec -> local-exec, ...):
	// in a linked program they need not match the object's.
	RelaxBefore, RelaxAfter int
}

// TLSIndex kinds.
const (
	TLSIndexGD = 1
	TLSIndexLD = 2
)

// RelocValues are the inputs of one relocation, named as in the psABI.
type RelocValues struct {
	P        uint64 // address of the place being relocated
	S        uint64 // value of the symbol
	A        int64  // addend
	GOTEntry uint64 // address of the symbol's slot in the patch's GOT
	GOT      uint64 // address of the patch's GOT
	TPOff    int64  // TLS: offset of the variable from the thread pointer
	DTPOff   int64  // TLS: offset of the variable in its module's TLS block
}

// Relocator applies relocations of the target's ABI.
type Relocator interface {
	// RelocInfo classifies type t; it returns an error wrapping
	// ErrUnsupportedReloc for types the linker does not handle.
	RelocInfo(t uint32) (RelocInfo, error)
	// ApplyReloc writes relocation t into loc, the bytes at P (at least
	// RelocInfo(t).Size long). It returns an error wrapping ErrRelocOverflow
	// when the value does not fit.
	ApplyReloc(t uint32, loc []byte, v RelocValues) error
	// RelocTarget inverts relocation t as the static linker applied it:
	// from the bytes at P (loc) and the addend it returns S, the address
	// the field refers to (run-pre matching of stripped targets reads the
	// target's references this way). ok is false for types whose field
	// does not hold S (GOT and TLS forms, unknown types).
	RelocTarget(t uint32, loc []byte, p uint64, a int64) (s uint64, ok bool)
	// FarStub returns a position-independent stub that jumps to dest from
	// anywhere, used for calls whose destination is out of direct reach.
	FarStub(dest uint64) []byte
}

var (
	mu    sync.RWMutex
	archs = map[elf.Machine]Arch{}
)

// Register makes an implementation available to ForMachine. Implementations
// call it from init.
func Register(a Arch) {
	mu.Lock()
	defer mu.Unlock()
	archs[a.Machine()] = a
}

// ForMachine returns the implementation for an ELF machine.
func ForMachine(m elf.Machine) (Arch, error) {
	mu.RLock()
	defer mu.RUnlock()
	if a, ok := archs[m]; ok {
		return a, nil
	}
	return nil, fmt.Errorf("%w: %v", ErrUnsupportedArch, m)
}

// PaddedRedirect is a redirect through padding reserved above a function
// (GCC/Clang -fpatchable-function-entry=N,M), the Windows hotpatch scheme: a
// long jump written into the padding, which nothing executes, and a short jump
// at the entry that reaches it.
type PaddedRedirect struct {
	// Pad is the long jump written into the padding above the entry.
	Pad Redirect
	// Entry is the short jump written at the entry (after a landing pad).
	Entry Redirect
	// Order lists the offsets of Entry's bytes in the order they must be
	// written, one single-byte store at a time, when applying; reverting
	// writes Entry.Orig in the reverse order. Every intermediate state decodes
	// as valid instructions for a thread at any byte of the entry, so running
	// threads need not be stopped (see the implementation for the argument).
	Order []int
}

// PaddedRedirector is implemented by architectures that support patch-ready
// functions.
type PaddedRedirector interface {
	// PaddingBefore is how many bytes of padding above the entry the scheme
	// uses (M in -fpatchable-function-entry=N,M).
	PaddingBefore() int
	// PlanPadded plans a padded redirect of fn to dest. pre holds the
	// PaddingBefore() bytes just before fn.Addr. ok is false (with a reason)
	// when the function is not patch-ready: the padding and the entry do not
	// hold the compiler's NOPs (or this scheme's jumps to dest, for a
	// re-apply), or dest is out of reach of the padding's jump.
	PlanPadded(fn Func, pre []byte, dest uint64) (r PaddedRedirect, ok bool, why string)
}

// FarRef is the plan, made by a FarRefPlanner, for one instruction of patch
// code whose 32-bit field addresses a data symbol of the target that may lie
// out of the field's reach from wherever the patch region is placed (a
// library's variable, terabytes from code placed near the executable). The
// instruction is rewritten to take the symbol's address from a slot of the
// patch's own GOT, in place or through an out-of-line stub in the region.
type FarRef struct {
	// Start and Len locate the instruction in its section.
	Start, Len int
	// SlotAddend: the slot the rewritten code reads holds S + SlotAddend.
	SlotAddend int64
	// StubLen is the size of the out-of-line stub, 0 when the instruction is
	// rewritten in place.
	StubLen int
	// Encode returns the Len bytes that replace the instruction and the
	// StubLen bytes of the stub, for the instruction at run-time address
	// insn, the stub at stub and the GOT slot at slot (all three in the patch
	// region, so within reach of each other).
	Encode func(insn, stub, slot uint64) (code, stubCode []byte, err error)
}

// FarRefPlanner is implemented by architectures that can reach far data
// from instructions with a 32-bit field (see FarRef).
type FarRefPlanner interface {
	// PlanFarRef plans the rewrite of the instruction of code (a text
	// section) holding the field of relocation t at offset off; from is the
	// offset of an instruction boundary at or before it (the start of the
	// function holding it). A is the relocation's addend. It returns an error
	// for instruction forms it cannot rewrite; the reference then has to be
	// reached directly.
	PlanFarRef(code []byte, from, off int, t uint32, a int64) (FarRef, error)
}
