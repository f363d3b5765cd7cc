// Package linker is hotpatch's patch linker. It loads an ELF relocatable
// object (a .o file compiled by gcc, typically with -O2 -ffunction-sections
// -fdata-sections, with or without -fPIC), resolves its symbols through a
// Resolver that knows the target process, lays it out into page-aligned
// segments (text, read-only data with the patch's own GOT, data+bss) and
// applies its relocations for a given base address.
//
// It is pure computation and never touches a process: the engine calls
// ParseObject and Prepare before stopping the target, and Prepared.Link, which
// is plain arithmetic, as many times as it needs (for instance when the hole
// chosen for the patch region is gone by the time the target is stopped).
// Everything that depends on the target CPU (relocation formulas, far-call
// stubs) goes through arch.Arch.
package linker

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/hotpatch/hotpatch/internal/arch"
)

// Sentinel errors callers branch on with errors.Is. Errors from relocation
// arithmetic wrap arch.ErrUnsupportedReloc or arch.ErrRelocOverflow.
var (
	// ErrUnresolved: symbols the object needs are not found in the target. The
	// error names every such symbol and the sections that reference it.
	ErrUnresolved = errors.New("unresolved symbols")
	// ErrBadObject: the object is malformed, or is well-formed but cannot be
	// loaded into a running process; the wrapping error says why.
	ErrBadObject = errors.New("bad patch object")
)

// Section index limits; debug/elf does not export SHN_LORESERVE.
const shnLoReserve = 0xff00

// shtX8664Unwind is SHT_X86_64_UNWIND (psABI), the type of .eh_frame on x86-64.
const shtX8664Unwind elf.SectionType = 0x70000001

// maxAlign is the largest section alignment the linker honours: segments are
// page-aligned and the region base is page-aligned, so anything up to a page is
// guaranteed; larger alignments would need a specially aligned region.
const maxAlign = 4096

// ObjSymbol describes one symbol of the object.
type ObjSymbol struct {
	Name  string
	Local bool
	// Weak is true for STB_WEAK symbols.
	Weak    bool
	Type    elf.SymType
	Size    uint64
	Section string // section name; "COMMON" for common symbols, "ABS" for absolute ones, "" if undefined
	TLS     bool
}

// kind of an object section for layout.
type secKind int

const (
	kindSkip   secKind = iota // not loaded: non-alloc, notes, unwind tables, groups, ...
	kindText                  // SHF_EXECINSTR
	kindRodata                // alloc, neither writable nor executable
	kindData                  // alloc, writable, with contents
	kindBSS                   // alloc, writable, SHT_NOBITS
	kindTLS                   // .tdata/.tbss: never loaded, bound to the target's variables (Prepare)
)

type section struct {
	name  string
	typ   elf.SectionType
	flags elf.SectionFlag
	size  uint64
	align uint64
	data  []byte // nil for SHT_NOBITS
	kind  secKind
	relas []rela
	// relaSec names the relocation section(s) applying to this one, for errors.
	relaSec string
}

type rela struct {
	off    uint64
	typ    uint32
	sym    uint32
	addend int64
}

type symbol struct {
	name  string
	bind  elf.SymBind
	typ   elf.SymType
	shndx elf.SectionIndex
	value uint64
	size  uint64
}

func (s *symbol) defined() bool { return s.shndx != elf.SHN_UNDEF }

// Object is a parsed relocatable object. It is immutable: Prepare may be called
// on it several times, with different resolvers.
type Object struct {
	arch arch.Arch
	file string
	secs []section
	syms []symbol // index 0 is the null symbol
	// ehFrame is the index of the loaded .eh_frame section, -1 if none. Its
	// data starts with the EHFrameHeader-byte marker.
	ehFrame int
}

// EHFrameMagic starts the EHFrameHeader bytes the linker puts in front of a
// patch's .eh_frame. The engine records in the 8 bytes after it the address
// it registered with the target's unwinder, so that revert, which knows only
// the patch region, can find and deregister it.
const EHFrameMagic = "HPEHFRM\x00"

// EHFrameHeader is the size of the marker in front of .eh_frame.
const EHFrameHeader = 16

// Arch returns the implementation for the object's machine.
func (o *Object) Arch() arch.Arch { return o.arch }

// SourceFile returns the name in the object's STT_FILE symbol, "" if none.
func (o *Object) SourceFile() string { return o.file }

// Functions returns the defined STT_FUNC symbols (global and local), sorted by name.
func (o *Object) Functions() []ObjSymbol {
	return o.list(func(s *symbol) bool { return s.defined() && s.typ == elf.STT_FUNC })
}

// Data returns the defined STT_OBJECT symbols (including common symbols), sorted by name.
func (o *Object) Data() []ObjSymbol {
	return o.list(func(s *symbol) bool { return s.defined() && s.typ == elf.STT_OBJECT })
}

// Undefined returns the undefined symbols, sorted by name. The assembler's
// _GLOBAL_OFFSET_TABLE_ is not listed: it is the patch's own GOT.
func (o *Object) Undefined() []ObjSymbol {
	return o.list(func(s *symbol) bool { return !s.defined() && s.name != "" && s.name != gotSymbol })
}

func (o *Object) list(keep func(*symbol) bool) []ObjSymbol {
	var out []ObjSymbol
	for i := 1; i < len(o.syms); i++ {
		s := &o.syms[i]
		if keep(s) {
			out = append(out, o.objSymbol(s))
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (o *Object) objSymbol(s *symbol) ObjSymbol {
	return ObjSymbol{
		Name:    s.name,
		Local:   s.bind == elf.STB_LOCAL,
		Weak:    s.bind == elf.STB_WEAK,
		Type:    s.typ,
		Size:    s.size,
		Section: o.secName(s.shndx),
		TLS:     s.typ == elf.STT_TLS,
	}
}

func (o *Object) secName(i elf.SectionIndex) string {
	switch {
	case i == elf.SHN_UNDEF:
		return ""
	case i == elf.SHN_COMMON:
		return "COMMON"
	case i == elf.SHN_ABS:
		return "ABS"
	case int(i) < len(o.secs):
		return o.secs[i].name
	}
	return fmt.Sprintf("section#%d", i)
}

// symName names symbol i for error messages: its name, or for a section
// symbol the section's name.
func (o *Object) symName(i uint32) string {
	if int(i) >= len(o.syms) {
		return fmt.Sprintf("symbol#%d", i)
	}
	s := &o.syms[i]
	if s.typ == elf.STT_SECTION || s.name == "" {
		return o.secName(s.shndx)
	}
	return s.name
}

func bad(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadObject, fmt.Sprintf(format, args...))
}

// ParseObject parses an ELF64 little-endian relocatable object for a machine
// registered with arch. The input is untrusted: every index, offset and size is
// validated and a panic in the parser is returned as an error wrapping
// ErrBadObject.
//
// Objects that cannot work in a running process are refused here: objects
// with constructors or destructors (.init_array, .ctors, ...: nothing would
// ever run them, the process's start-up is long over). Thread-local
// variables the object defines (SHF_TLS sections) are never loaded: Prepare
// binds each to the target's variable, and refuses a new one.
func ParseObject(data []byte) (o *Object, err error) {
	defer func() {
		if r := recover(); r != nil {
			o, err = nil, bad("malformed ELF object: %v", r)
		}
	}()
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadObject, err)
	}
	if f.Class != elf.ELFCLASS64 {
		return nil, bad("%v objects are not supported, want ELFCLASS64", f.Class)
	}
	if f.Data != elf.ELFDATA2LSB {
		return nil, bad("%v objects are not supported, want little endian", f.Data)
	}
	if f.Type != elf.ET_REL {
		return nil, bad("file type is %v, want a relocatable object (ET_REL, gcc -c)", f.Type)
	}
	a, err := arch.ForMachine(f.Machine)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadObject, err)
	}
	if err := checkExtents(f, len(data)); err != nil {
		return nil, err
	}
	o = &Object{arch: a, secs: make([]section, len(f.Sections)), ehFrame: -1}
	symtab, err := o.readSections(f)
	if err != nil {
		return nil, err
	}
	if err := o.readSymbols(f, symtab); err != nil {
		return nil, err
	}
	if err := o.readRelocations(f, symtab); err != nil {
		return nil, err
	}
	return o, nil
}

// checkExtents checks every section's extent against the file before
// anything reads it: debug/elf would otherwise allocate buffers for sizes the
// file cannot back before noticing.
func checkExtents(f *elf.File, size int) error {
	for _, s := range f.Sections {
		if s.Type == elf.SHT_NOBITS || s.Type == elf.SHT_NULL {
			continue
		}
		if s.Offset > uint64(size) || s.FileSize > uint64(size)-s.Offset {
			return bad("section %s [%#x, +%#x) lies outside the file (%d bytes)", s.Name, s.Offset, s.FileSize, size)
		}
		if s.Flags&elf.SHF_COMPRESSED != 0 && (s.Flags&elf.SHF_ALLOC != 0 || s.Type == elf.SHT_SYMTAB || s.Type == elf.SHT_STRTAB || s.Type == elf.SHT_RELA) {
			return bad("section %s is compressed", s.Name)
		}
	}
	return nil
}

// readSections fills o.secs from the section headers, reads the loaded
// sections' bytes and returns the index of the symbol table (-1 if none).
func (o *Object) readSections(f *elf.File) (symtab int, err error) {
	symtab = -1
	for i, s := range f.Sections {
		sec := &o.secs[i]
		sec.name, sec.typ, sec.flags, sec.size, sec.align = s.Name, s.Type, s.Flags, s.Size, s.Addralign
		if s.Type == elf.SHT_SYMTAB {
			if symtab >= 0 {
				return -1, bad("more than one symbol table")
			}
			symtab = i
		}
		if s.Flags&elf.SHF_ALLOC == 0 {
			continue
		}
		if err := o.readLoaded(i, s); err != nil {
			return -1, err
		}
	}
	return symtab, nil
}

// readLoaded classifies the loaded (SHF_ALLOC) section i and reads its bytes.
func (o *Object) readLoaded(i int, s *elf.Section) error {
	sec := &o.secs[i]
	// Every loaded section's alignment feeds the layout arithmetic
	// (round up to it): a huge or non-power-of-two value would wrap it
	// (an .eh_frame aligned to 0xfffffffffffffffa made Prepare allocate
	// a negative length). Refuse it here, so that build refuses it too.
	if s.Addralign > maxAlign {
		return bad("section %s asks for %d-byte alignment, more than a page", s.Name, s.Addralign)
	}
	if s.Addralign&(s.Addralign-1) != 0 {
		return bad("section %s alignment %d is not a power of two", s.Name, s.Addralign)
	}
	switch {
	case s.Flags&elf.SHF_TLS != 0:
		// Thread-local variables: Prepare binds each to the target's
		// variable of the same name, or refuses a new one.
		if s.Size > 0 {
			sec.kind = kindTLS
		}
	case s.Type == elf.SHT_INIT_ARRAY || s.Type == elf.SHT_FINI_ARRAY || s.Type == elf.SHT_PREINIT_ARRAY ||
		s.Name == ".ctors" || s.Name == ".dtors" || strings.HasPrefix(s.Name, ".ctors.") || strings.HasPrefix(s.Name, ".dtors.") ||
		s.Name == ".init" || s.Name == ".fini":
		if s.Size == 0 {
			return nil
		}
		return bad("section %s holds constructors or destructors: the target's start-up and exit code would never run them for a patch loaded into a running process", s.Name)
	case s.Type == elf.SHT_NOTE || strings.HasPrefix(s.Name, ".note"):
		// .note.gnu.property and friends: metadata for the program loader.
	case (s.Type == shtX8664Unwind || s.Type == elf.SHT_PROGBITS) && s.Name == ".eh_frame" && s.Size > 0 && s.Size <= maxSize && o.ehFrame < 0:
		return o.readEHFrame(i, s)
	case s.Type == shtX8664Unwind || s.Name == ".eh_frame" || s.Name == ".eh_frame_hdr":
		// Other unwind sections are not needed at run time.
	case s.Type == elf.SHT_PROGBITS || s.Type == elf.SHT_NOBITS:
		return readContents(sec, s)
	default:
		return bad("section %s has unsupported type %v", s.Name, s.Type)
	}
	return nil
}

// readEHFrame loads section i, the patch's unwind tables (needed to throw C++
// exceptions through patched code), read-only behind a marker (EHFrameMagic,
// see Image.EHFrame) and followed by the 4-byte zero terminator that crtend.o
// adds in a linked program: __register_frame walks the CIEs/FDEs until a zero
// length (libgcc unwind-dw2-fde.c). The engine registers it.
func (o *Object) readEHFrame(i int, s *elf.Section) error {
	sec := &o.secs[i]
	d, err := s.Data()
	if err != nil || uint64(len(d)) != s.Size {
		return bad("read section %s: %v", s.Name, err)
	}
	sec.kind = kindRodata
	sec.align = max(s.Addralign, 8)
	sec.data = append(append(append(make([]byte, 0, len(d)+EHFrameHeader+4), EHFrameMagic...), make([]byte, EHFrameHeader-len(EHFrameMagic))...), d...)
	sec.data = append(sec.data, 0, 0, 0, 0)
	sec.size = uint64(len(sec.data))
	o.ehFrame = i
	return nil
}

// readContents gives a code or data section (SHT_PROGBITS or SHT_NOBITS) its
// kind and, unless it is .bss-like, its bytes. Its alignment is checked by
// readLoaded.
func readContents(sec *section, s *elf.Section) error {
	if s.Size > maxSize {
		return bad("section %s is %d bytes, more than the %d-byte limit", s.Name, s.Size, maxSize)
	}
	switch {
	case s.Flags&elf.SHF_EXECINSTR != 0:
		sec.kind = kindText
	case s.Flags&elf.SHF_WRITE == 0:
		sec.kind = kindRodata
	case s.Type == elf.SHT_NOBITS:
		sec.kind = kindBSS
	default:
		sec.kind = kindData
	}
	if s.Type == elf.SHT_NOBITS {
		if sec.kind != kindBSS {
			return bad("SHT_NOBITS section %s is not writable data", s.Name)
		}
		return nil
	}
	d, err := s.Data()
	if err != nil {
		return fmt.Errorf("%w: read section %s: %w", ErrBadObject, s.Name, err)
	}
	if uint64(len(d)) != s.Size {
		return bad("section %s: read %d bytes, want %d", s.Name, len(d), s.Size)
	}
	sec.data = d
	return nil
}

// readSymbols reads the symbol table into o.syms and checks each symbol
// against its section. debug/elf's Symbols drops the null symbol; it is put
// back so that indices match r_sym.
func (o *Object) readSymbols(f *elf.File, symtab int) error {
	o.syms = []symbol{{}}
	if symtab < 0 {
		return nil
	}
	syms, err := f.Symbols()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return fmt.Errorf("%w: read symbols: %w", ErrBadObject, err)
	}
	for _, s := range syms {
		sym := symbol{
			name:  s.Name,
			bind:  elf.ST_BIND(s.Info),
			typ:   elf.ST_TYPE(s.Info),
			shndx: s.Section,
			value: s.Value,
			size:  s.Size,
		}
		if err := o.checkSymbol(&sym); err != nil {
			return err
		}
		if sym.typ == elf.STT_FILE && o.file == "" {
			o.file = sym.name
		}
		o.syms = append(o.syms, sym)
	}
	return nil
}

// checkSymbol refuses a symbol whose section index, extent or type the
// linker cannot honour.
func (o *Object) checkSymbol(sym *symbol) error {
	switch {
	case sym.shndx == elf.SHN_UNDEF, sym.shndx == elf.SHN_ABS:
	case sym.shndx == elf.SHN_COMMON:
		// st_value of a common symbol is its alignment.
		if sym.value > maxAlign || sym.value&(sym.value-1) != 0 {
			return bad("common symbol %s has bad alignment %d", sym.name, sym.value)
		}
		if sym.size > maxSize {
			return bad("common symbol %s is %d bytes, more than the %d-byte limit", sym.name, sym.size, maxSize)
		}
	case sym.shndx >= shnLoReserve || int(sym.shndx) >= len(o.secs):
		return bad("symbol %q has bad section index %d", sym.name, sym.shndx)
	default:
		sec := &o.secs[sym.shndx]
		if sec.kind != kindSkip && sym.typ != elf.STT_SECTION && (sym.value > sec.size || sym.size > sec.size-sym.value) {
			return bad("symbol %s [%#x, +%#x) lies outside its section %s (%#x bytes)", sym.name, sym.value, sym.size, sec.name, sec.size)
		}
	}
	if sym.typ == elf.STT_GNU_IFUNC && sym.defined() {
		return bad("object defines the indirect function %s (STT_GNU_IFUNC): not supported", sym.name)
	}
	return nil
}

// readRelocations reads the SHT_RELA sections of the loaded sections into
// their targets' relas.
func (o *Object) readRelocations(f *elf.File, symtab int) error {
	for _, s := range f.Sections {
		if s.Type != elf.SHT_RELA && s.Type != elf.SHT_REL {
			continue
		}
		if s.Info >= uint32(len(o.secs)) {
			return bad("relocation section %s applies to bad section index %d", s.Name, s.Info)
		}
		target := &o.secs[s.Info]
		if target.kind == kindSkip || target.kind == kindBSS || target.kind == kindTLS {
			// Relocations of sections that are not loaded (debug info, .eh_frame).
			continue
		}
		if s.Type == elf.SHT_REL {
			return bad("relocation section %s is SHT_REL; only SHT_RELA is supported", s.Name)
		}
		if int(s.Link) != symtab || symtab < 0 {
			return bad("relocation section %s does not use the symbol table", s.Name)
		}
		d, err := s.Data()
		if err != nil {
			return fmt.Errorf("%w: read section %s: %w", ErrBadObject, s.Name, err)
		}
		if uint64(len(d)) != s.Size || len(d)%24 != 0 {
			return bad("relocation section %s has size %d, not a multiple of 24", s.Name, s.Size)
		}
		if target.relaSec != "" {
			target.relaSec += ","
		}
		target.relaSec += s.Name
		if err := o.readRelas(target, int(s.Info) == o.ehFrame, d); err != nil {
			return err
		}
	}
	return nil
}

// readRelas decodes the Elf64_Rela entries d of target (inEHFrame: the
// section loaded behind the EHFrameHeader marker) and checks their places.
func (o *Object) readRelas(target *section, inEHFrame bool, d []byte) error {
	for off := 0; off < len(d); off += 24 {
		info := binary.LittleEndian.Uint64(d[off+8:])
		r := rela{
			off:    binary.LittleEndian.Uint64(d[off:]),
			typ:    uint32(info),
			sym:    uint32(info >> 32),
			addend: int64(binary.LittleEndian.Uint64(d[off+16:])),
		}
		if inEHFrame {
			r.off += EHFrameHeader // behind the marker
		}
		if int(r.sym) >= len(o.syms) {
			return bad("relocation at %s+%#x refers to bad symbol index %d", target.name, r.off, r.sym)
		}
		// Unsupported types are refused by Prepare, so that the object can
		// still be listed; check the place of the ones we know.
		if ri, err := o.arch.RelocInfo(r.typ); err == nil && (r.off > target.size || uint64(ri.Size) > target.size-r.off) {
			return bad("relocation %s at %s+%#x lies outside the section (%#x bytes)", ri.Name, target.name, r.off, target.size)
		}
		target.relas = append(target.relas, r)
	}
	return nil
}
