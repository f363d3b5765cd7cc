// Package unlink turns a linked ELF file (an executable or a shared library)
// whose relocations the static linker kept (ld --emit-relocs) back into one
// relocatable object that the object comparison (internal/diff) and the patch
// linker understand: every function and every data object in a section of
// its own, with the relocations of its bytes re-expressed against symbols.
//
// It is how hotpatch compares two builds made with link-time optimisation:
// their objects hold compiler IR, no machine code, so the code can only be
// compared after the link. The linked file is the program as it runs; the
// kept relocations say which bytes are addresses and what they refer to.
//
// # What a relocation refers to
//
// The linker emits each relocation with its final type (after relaxation:
// a GOTPCRELX load it turned into a lea comes out as R_X86_64_PC32), against
// a symbol of the output's .symtab or against an output section's symbol
// with the addend made relative to that section. A relocation against a named
// symbol refers to that symbol. One against a section symbol refers to the
// datum at S+A+bias: for a PC-relative field in code the bias is where the
// instruction's operand is relative to (arch.LinkedCode.PCRelBias: on x86-64
// the end of the instruction, so an immediate after the field is honoured);
// for a PC-relative entry of an anonymous table (a switch's jump table,
// ".long .L3-.L4") it is minus the entry's distance from the table's start;
// otherwise 0. The datum is the function or data object whose bytes hold that
// address (or whose end it is: "p < table + N"), else a piece of anonymous
// read-only data (string literals, constants, jump tables), which becomes a
// section of its own reaching from its address to the next referenced
// address or named object (and at least over the whole string there). The
// relocation is then written against the datum's symbol with A' = S+A-start:
// the value the linker computed is kept exactly, whatever the bias.
//
// Relocated fields are zeroed (a RELA object holds its addends in the
// relocations). Symbol versions are kept in the names of undefined symbols
// ("memcpy@GLIBC_2.14") and dropped from defined ones.
//
// The input comes from the build being examined; it is parsed defensively
// all the same, and a panic in the parser is returned as ErrBadFile.
package unlink

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/hotpatch/hotpatch/internal/arch"
	_ "github.com/hotpatch/hotpatch/internal/arch/amd64" // register x86-64
)

// Sentinel errors.
var (
	// ErrBadFile: the file is malformed or not a linked ELF64 LE file.
	ErrBadFile = errors.New("bad linked file")
	// ErrNoRelocs: the file was linked without -Wl,--emit-relocs (or
	// stripped): nothing tells which bytes are addresses.
	ErrNoRelocs = errors.New("linked file has no kept relocations (link with -Wl,--emit-relocs)")
)

// maxSection bounds the sections read (zeroed .bss copies included).
const maxSection = 1 << 30

// Options select what the object holds.
type Options struct {
	// Name is the object's STT_FILE name.
	Name string
	// Funcs, when not nil, restricts the object to these functions (by
	// name) and to the data they refer to, directly or through other data;
	// every other function or data object referred to becomes an undefined
	// symbol, which the patch linker resolves to the target's copy.
	Funcs map[string]bool
	// Data names data objects to define in a restricted object even when no
	// kept function refers to them (the other build's closure, so that both
	// objects of a comparison define the same existing variables).
	Data map[string]bool
}

// Result is the object and what it defines.
type Result struct {
	Object []byte
	// Data lists the named data objects the object defines.
	Data []string
	// Unresolved maps a function to why one of its references could not be
	// expressed (the object refers to the undefined symbol hotpatch.unresolved
	// instead); a patch that carries such a function must be refused.
	Unresolved map[string]string
}

// region is one section of the object: a function, a data object or a
// piece of anonymous data.
type region struct {
	name       string // symbol name ("" for anonymous data)
	fn, anon   bool
	typ        elf.SymType // STT_FUNC, STT_OBJECT, STT_TLS
	bindv      elf.SymBind
	other      byte
	sec        int // section index in the linked file
	start, end uint64
	str        bool // anonymous: exactly one NUL-terminated string
	rels       []lrel
	keep       bool
	outSec     int
	sym        symRef // defined symbol (items) or section symbol (anon)
}

// lrel is a relocation of the linked file, with what it refers to.
type lrel struct {
	p      uint64
	typ    uint32
	sym    int
	addend int64
	t      uint64 // against a section symbol: the address referred to
	to     ref
	// synth: a branch the assembler resolved (arch.LinkedCode.OutBranches),
	// made a relocation here; v is its S+A.
	synth bool
	v     int64
}

// ref is what a relocation refers to in the object: a region (kept, or
// an undefined symbol of its name) or a symbol by name, and the addend
// relative to it.
type ref struct {
	r      *region
	name   string
	bind   elf.SymBind
	typ    elf.SymType
	addend int64
}

// file is the parsed linked file.
type file struct {
	f       *elf.File
	a       arch.Arch
	raw     []byte
	data    map[int][]byte
	syms    []elf.Symbol // index = symbol table index
	tlsBase uint64
	items   []*region // functions and data, sorted by start
	bySym   map[int]*region
	anon    map[int][]*region // per linked section, sorted by start
	allRels map[int][]lrel    // per linked section, sorted by place
	unres   map[string]string
}

// Object converts a linked file; see the package comment.
func Object(linked []byte, opt Options) (res *Result, err error) {
	defer func() {
		if r := recover(); r != nil {
			res, err = nil, fmt.Errorf("%w: %v", ErrBadFile, r)
		}
	}()
	lf, err := parseFile(linked)
	if err != nil {
		return nil, err
	}
	if err := lf.findAnon(); err != nil {
		return nil, err
	}
	lf.choose(opt)
	return lf.write(opt.Name)
}

func parseFile(b []byte) (*file, error) {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadFile, err)
	}
	if f.Class != elf.ELFCLASS64 || f.Data != elf.ELFDATA2LSB || (f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN) {
		return nil, fmt.Errorf("%w: want a linked ELF64 little-endian executable or shared library, got %v %v %v", ErrBadFile, f.Class, f.Data, f.Type)
	}
	a, err := arch.ForMachine(f.Machine)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadFile, err)
	}
	lf := &file{f: f, a: a, raw: b, data: map[int][]byte{}, bySym: map[int]*region{}, anon: map[int][]*region{}, unres: map[string]string{}}
	symtab := -1
	for i, s := range f.Sections {
		if s.Type != elf.SHT_NOBITS && s.Type != elf.SHT_NULL && (s.Offset > uint64(len(b)) || s.FileSize > uint64(len(b))-s.Offset) {
			return nil, fmt.Errorf("%w: section %s lies outside the file", ErrBadFile, s.Name)
		}
		if s.Type == elf.SHT_SYMTAB {
			symtab = i
		}
		if s.Flags&elf.SHF_ALLOC != 0 && s.Size > maxSection {
			return nil, fmt.Errorf("%w: section %s is %d bytes, more than the %d-byte limit", ErrBadFile, s.Name, s.Size, maxSection)
		}
	}
	if symtab < 0 {
		return nil, fmt.Errorf("%w: no symbol table (.symtab): was it stripped?", ErrNoRelocs)
	}
	syms, err := f.Symbols()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadFile, err)
	}
	lf.syms = append([]elf.Symbol{{}}, syms...)
	for _, p := range f.Progs {
		if p.Type == elf.PT_TLS {
			lf.tlsBase = p.Vaddr
		}
	}
	rels := map[int][]lrel{}
	for _, s := range f.Sections {
		if s.Type != elf.SHT_RELA || int(s.Link) != symtab || int(s.Info) <= 0 || int(s.Info) >= len(f.Sections) ||
			f.Sections[s.Info].Flags&elf.SHF_ALLOC == 0 {
			continue
		}
		if s.Size%24 != 0 {
			return nil, fmt.Errorf("%w: relocation section %s has a bad size", ErrBadFile, s.Name)
		}
		d := b[s.Offset : s.Offset+s.Size]
		for off := 0; off+24 <= len(d); off += 24 {
			info := binary.LittleEndian.Uint64(d[off+8:])
			r := lrel{p: binary.LittleEndian.Uint64(d[off:]), typ: uint32(info), sym: int(info >> 32), addend: int64(binary.LittleEndian.Uint64(d[off+16:]))}
			if r.sym >= len(lf.syms) {
				return nil, fmt.Errorf("%w: relocation in %s refers to bad symbol %d", ErrBadFile, s.Name, r.sym)
			}
			rels[int(s.Info)] = append(rels[int(s.Info)], r)
		}
	}
	if len(rels) == 0 {
		return nil, ErrNoRelocs
	}
	lf.collectItems()
	for si, rs := range rels {
		sort.Slice(rs, func(i, j int) bool { return rs[i].p < rs[j].p })
		for _, r := range rs {
			if it := lf.itemAt(r.p); it != nil && it.sec == si {
				it.rels = append(it.rels, r)
			}
		}
	}
	lf.allRels = rels
	for _, it := range lf.items {
		if it.fn {
			lf.outBranches(it)
		}
	}
	return lf, nil
}

// outBranches adds a relocation for every branch of fn that leaves it and
// has none (see arch.LinkedCode.OutBranches).
func (lf *file) outBranches(fn *region) {
	bs, err := lf.a.OutBranches(lf.bytesOf(fn), fn.start)
	if err != nil {
		lf.unres[fn.name] = fmt.Sprintf("its code does not decode: %v", err)
		return
	}
	have := map[uint64]bool{}
	for _, r := range fn.rels {
		have[r.p] = true
	}
	for _, b := range bs {
		p := fn.start + uint64(b.Field)
		if have[p] {
			continue
		}
		if b.Reloc == 0 {
			lf.unres[fn.name] = fmt.Sprintf("a %d-byte branch at %#x leaves the function for %#x, which the patch cannot reach", b.Size, p, b.Dest)
			continue
		}
		fn.rels = append(fn.rels, lrel{p: p, typ: b.Reloc, synth: true, v: int64(b.Dest) - b.Bias, t: b.Dest})
	}
	sort.Slice(fn.rels, func(i, j int) bool { return fn.rels[i].p < fn.rels[j].p })
}

// baseName drops a symbol version ("name@@VER").
func baseName(n string) string {
	if i := strings.IndexByte(n, '@'); i > 0 {
		return n[:i]
	}
	return n
}

// collectItems makes a region of every sized function and data object; of
// several symbols at one address (aliases, versioned names) one is kept,
// preferring a global, unversioned name.
func (lf *file) collectItems() {
	byStart := map[uint64]*region{}
	rank := func(s elf.Symbol) int {
		r := 0
		switch elf.ST_BIND(s.Info) {
		case elf.STB_GLOBAL:
			r += 4
		case elf.STB_WEAK:
			r += 2
		}
		if !strings.Contains(s.Name, "@") {
			r++
		}
		return r
	}
	best := map[*region]int{}
	for i := 1; i < len(lf.syms); i++ {
		s := lf.syms[i]
		t := elf.ST_TYPE(s.Info)
		if s.Name == "" || s.Size == 0 || s.Section == elf.SHN_UNDEF || s.Section >= elf.SHN_LORESERVE || int(s.Section) >= len(lf.f.Sections) {
			continue
		}
		sec := lf.f.Sections[s.Section]
		if sec.Flags&elf.SHF_ALLOC == 0 {
			continue
		}
		switch {
		case t == elf.STT_FUNC && sec.Flags&elf.SHF_EXECINSTR != 0:
		case t == elf.STT_OBJECT || t == elf.STT_TLS:
		default:
			continue
		}
		start := s.Value
		if t == elf.STT_TLS {
			start += lf.tlsBase
		}
		if start < sec.Addr || s.Size > sec.Size || start-sec.Addr > sec.Size-s.Size {
			continue
		}
		if it := byStart[start]; it != nil && it.sec == int(s.Section) {
			lf.bySym[i] = it
			if rank(s) > best[it] {
				best[it] = rank(s)
				it.name, it.bindv, it.other = baseName(s.Name), elf.ST_BIND(s.Info), s.Other
			}
			it.end = max(it.end, start+s.Size)
			continue
		}
		it := &region{name: baseName(s.Name), fn: t == elf.STT_FUNC, typ: t, bindv: elf.ST_BIND(s.Info), other: s.Other,
			sec: int(s.Section), start: start, end: start + s.Size}
		best[it] = rank(s)
		byStart[start] = it
		lf.bySym[i] = it
		lf.items = append(lf.items, it)
	}
	sort.Slice(lf.items, func(i, j int) bool { return lf.items[i].start < lf.items[j].start })
	// An object nested in another (a symbol pointing inside a function) is
	// not a region of its own: references to it go to the outer one.
	var out []*region
	for _, it := range lf.items {
		if n := len(out); n > 0 && it.start < out[n-1].end {
			outer := out[n-1]
			for k, v := range lf.bySym {
				if v == it {
					lf.bySym[k] = outer
				}
			}
			continue
		}
		out = append(out, it)
	}
	lf.items = out
}

// itemAt returns the function or data object whose bytes hold addr.
func (lf *file) itemAt(addr uint64) *region {
	i := sort.Search(len(lf.items), func(i int) bool { return lf.items[i].start > addr }) - 1
	if i >= 0 && addr < lf.items[i].end {
		return lf.items[i]
	}
	return nil
}

// sectionAt returns the allocated section of the linked file holding addr.
func (lf *file) sectionAt(addr uint64) int {
	for i, s := range lf.f.Sections {
		if s.Flags&elf.SHF_ALLOC != 0 && s.Type != elf.SHT_NULL && addr >= s.Addr && addr-s.Addr < s.Size && s.Flags&elf.SHF_TLS == 0 {
			return i
		}
	}
	return -1
}

// secData returns the bytes of a linked section (zeros for SHT_NOBITS).
func (lf *file) secData(i int) []byte {
	if d, ok := lf.data[i]; ok {
		return d
	}
	s := lf.f.Sections[i]
	var d []byte
	if s.Type == elf.SHT_NOBITS {
		d = make([]byte, s.Size)
	} else {
		d = lf.raw[s.Offset : s.Offset+s.Size]
	}
	lf.data[i] = d
	return d
}

// bytesOf returns the linked bytes of a region.
func (lf *file) bytesOf(r *region) []byte {
	s := lf.f.Sections[r.sec]
	d := lf.secData(r.sec)
	return d[r.start-s.Addr : r.end-s.Addr]
}
