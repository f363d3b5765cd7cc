package diff

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
)

// object is a parsed ELF64 relocatable object, with the raw file positions
// of its symbol and relocation entries so that they can be rewritten in
// place (see rewrite.go).
type object struct {
	raw    []byte
	f      *elf.File
	syms   []elf.Symbol // index = symbol table index; 0 is the null symbol
	symtab int          // section index of .symtab
	file   string       // STT_FILE name
	// relas maps a section index to the relocations applying to it.
	relas map[int][]rel
}

// rel is one RELA entry (System V gABI, "Relocation Entries").
type rel struct {
	off    uint64
	typ    uint32
	sym    uint32
	addend int64
	pos    int // file offset of the entry (for rewriting)
}

// maxSection bounds section sizes (as the patch linker does), so that a
// hostile object cannot make Compare allocate unbounded zeroed .bss copies.
const maxSection = 256 << 20

const (
	symEntSize  = 24 // sizeof(Elf64_Sym)
	relaEntSize = 24 // sizeof(Elf64_Rela)
)

func parse(data []byte) (o *object, err error) {
	defer func() {
		if r := recover(); r != nil {
			o, err = nil, fmt.Errorf("%w: malformed ELF object: %v", ErrBadObject, r)
		}
	}()
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadObject, err)
	}
	if f.Class != elf.ELFCLASS64 || f.Data != elf.ELFDATA2LSB || f.Type != elf.ET_REL {
		return nil, fmt.Errorf("%w: want an ELF64 little-endian relocatable object (gcc -c), got %v %v %v", ErrBadObject, f.Class, f.Data, f.Type)
	}
	o = &object{raw: data, f: f, symtab: -1, relas: map[int][]rel{}}
	for i, s := range f.Sections {
		if s.Type != elf.SHT_NOBITS && s.Type != elf.SHT_NULL && (s.Offset > uint64(len(data)) || s.FileSize > uint64(len(data))-s.Offset) {
			return nil, fmt.Errorf("%w: section %s lies outside the file", ErrBadObject, s.Name)
		}
		if s.Size > maxSection {
			return nil, fmt.Errorf("%w: section %s is %d bytes, more than the %d-byte limit", ErrBadObject, s.Name, s.Size, maxSection)
		}
		if s.Type == elf.SHT_SYMTAB {
			if o.symtab >= 0 {
				return nil, fmt.Errorf("%w: more than one symbol table", ErrBadObject)
			}
			o.symtab = i
		}
	}
	if o.symtab < 0 {
		return nil, fmt.Errorf("%w: no symbol table", ErrBadObject)
	}
	syms, err := f.Symbols()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return nil, fmt.Errorf("%w: read symbols: %w", ErrBadObject, err)
	}
	o.syms = append([]elf.Symbol{{}}, syms...)
	for i, s := range o.syms {
		if i == 0 {
			continue
		}
		if s.Section != elf.SHN_UNDEF && s.Section < elf.SHN_LORESERVE && int(s.Section) >= len(f.Sections) {
			return nil, fmt.Errorf("%w: symbol %q has bad section index %d", ErrBadObject, s.Name, s.Section)
		}
		if elf.ST_TYPE(s.Info) == elf.STT_FILE && o.file == "" {
			o.file = s.Name
		}
	}
	for _, s := range f.Sections {
		if s.Type != elf.SHT_RELA {
			continue
		}
		if int(s.Info) >= len(f.Sections) || int(s.Link) != o.symtab {
			return nil, fmt.Errorf("%w: relocation section %s has bad links", ErrBadObject, s.Name)
		}
		if s.Size%relaEntSize != 0 || s.Flags&elf.SHF_COMPRESSED != 0 {
			return nil, fmt.Errorf("%w: relocation section %s has size %d, not a multiple of %d", ErrBadObject, s.Name, s.Size, relaEntSize)
		}
		d := data[s.Offset : s.Offset+s.Size]
		for off := 0; off+relaEntSize <= len(d); off += relaEntSize {
			info := binary.LittleEndian.Uint64(d[off+8:])
			r := rel{off: binary.LittleEndian.Uint64(d[off:]), typ: uint32(info), sym: uint32(info >> 32),
				addend: int64(binary.LittleEndian.Uint64(d[off+16:])), pos: int(s.Offset) + off}
			if int(r.sym) >= len(o.syms) {
				return nil, fmt.Errorf("%w: relocation in %s refers to bad symbol %d", ErrBadObject, s.Name, r.sym)
			}
			o.relas[int(s.Info)] = append(o.relas[int(s.Info)], r)
		}
	}
	return o, nil
}

// sec returns section i, nil for special indices.
func (o *object) sec(i elf.SectionIndex) *elf.Section {
	if i == elf.SHN_UNDEF || i >= elf.SHN_LORESERVE || int(i) >= len(o.f.Sections) {
		return nil
	}
	return o.f.Sections[i]
}

// bytesOf returns [off, off+size) of section s (zeros for SHT_NOBITS); ok is
// false when the range is outside the section.
func (o *object) bytesOf(s *elf.Section, off, size uint64) ([]byte, bool) {
	if off > s.Size || size > s.Size-off {
		return nil, false
	}
	if s.Type == elf.SHT_NOBITS {
		return make([]byte, size), true
	}
	if s.Offset+s.Size > uint64(len(o.raw)) {
		return nil, false
	}
	return o.raw[s.Offset+off : s.Offset+off+size], true
}
