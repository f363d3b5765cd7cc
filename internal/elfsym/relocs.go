package elfsym

import (
	"bytes"
	"debug/dwarf"
	"debug/elf"
	"errors"
	"fmt"
)

// DynReloc is one dynamic relocation (.rela.dyn / .rela.plt or their REL
// counterparts).
type DynReloc struct {
	// Offset is r_offset: the link-time address of the place relocated (for
	// GLOB_DAT, JUMP_SLOT, TPOFF64... the GOT slot).
	Offset uint64
	// Type is the machine-specific relocation type (elf.R_X86_64_*).
	Type uint32
	// Sym is the name of the symbol the relocation refers to, "" for none
	// (RELATIVE, IRELATIVE, module-local TLS).
	Sym string
	// Addend is r_addend (0 for REL entries, whose addend is in the place).
	Addend int64
}

// DynRelocs returns the dynamic relocations of the file: the allocated
// SHT_RELA/SHT_REL sections in section order (.rela.dyn then .rela.plt), or,
// when the section headers are stripped, the DT_RELA/DT_REL and DT_JMPREL
// tables found through PT_DYNAMIC. SHT_RELR (packed relative relocations)
// carries no symbols and is not returned.
func (f *File) DynRelocs() (_ []DynReloc, err error) {
	defer guard(&err, "read dynamic relocations")
	var out []DynReloc
	foundSection := false
	// Symbol tables by section index, loaded on first use. Dynamic
	// relocation sections link to .dynsym; the IRELATIVE tables of static
	// executables may link to nothing (index 0) or to .symtab.
	tables := map[uint32][]elf.Symbol{}
	symsFor := func(link uint32) ([]elf.Symbol, error) {
		if t, ok := tables[link]; ok {
			return t, nil
		}
		var syms []elf.Symbol
		var err error
		switch {
		case link == 0:
		case int(link) >= len(f.f.Sections):
			return nil, fmt.Errorf("%w: sh_link %d out of range", ErrMalformed, link)
		case f.f.Sections[link].Type == elf.SHT_DYNSYM:
			syms, err = f.f.DynamicSymbols()
		case f.f.Sections[link].Type == elf.SHT_SYMTAB:
			syms, err = f.f.Symbols()
		default:
			return nil, fmt.Errorf("%w: sh_link %d is not a symbol table", ErrMalformed, link)
		}
		if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
			return nil, fmt.Errorf("read symbols of section %d: %w", link, err)
		}
		tables[link] = syms
		return syms, nil
	}
	for i, s := range f.f.Sections {
		if (s.Type != elf.SHT_RELA && s.Type != elf.SHT_REL) || s.Flags&elf.SHF_ALLOC == 0 {
			continue
		}
		foundSection = true
		syms, err := symsFor(s.Link)
		if err != nil {
			return nil, fmt.Errorf("section %d %s: %w", i, s.Name, err)
		}
		data, err := f.readAt(s.Offset, s.Size)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", s.Name, err)
		}
		name := func(idx uint64) (string, error) {
			if idx == 0 {
				return "", nil
			}
			// debug/elf omits the null symbol: index x is syms[x-1].
			if idx > uint64(len(syms)) {
				return "", fmt.Errorf("%w: symbol index %d out of range (%d symbols)", ErrMalformed, idx, len(syms))
			}
			return syms[idx-1].Name, nil
		}
		rs, err := f.decodeRelocs(data, s.Type == elf.SHT_RELA, name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.Name, err)
		}
		out = append(out, rs...)
	}
	if foundSection {
		return out, nil
	}
	return f.dynRelocsFromDynamic()
}

// decodeRelocs decodes Elf{32,64}_Rel[a] entries. r_info packs the symbol index
// and type: (sym<<32 | type) for ELFCLASS64, (sym<<8 | type) for ELFCLASS32
// (gABI "Relocation").
func (f *File) decodeRelocs(data []byte, rela bool, name func(uint64) (string, error)) ([]DynReloc, error) {
	ps := f.ptrSize()
	ent := 2 * ps
	if rela {
		ent = 3 * ps
	}
	if len(data)%ent != 0 {
		return nil, fmt.Errorf("%w: relocation table size %d is not a multiple of %d", ErrMalformed, len(data), ent)
	}
	bo := f.f.ByteOrder
	out := make([]DynReloc, 0, len(data)/ent)
	for i := 0; i+ent <= len(data); i += ent {
		e := data[i : i+ent]
		off := getUint(bo, e, ps)
		info := getUint(bo, e[ps:], ps)
		var symIdx uint64
		var typ uint32
		if ps == 8 {
			symIdx, typ = info>>32, uint32(info)
		} else {
			symIdx, typ = info>>8, uint32(info&0xff)
		}
		r := DynReloc{Offset: off, Type: typ}
		if rela {
			a := getUint(bo, e[2*ps:], ps)
			if ps == 4 {
				r.Addend = int64(int32(uint32(a)))
			} else {
				r.Addend = int64(a)
			}
		}
		n, err := name(symIdx)
		if err != nil {
			return nil, fmt.Errorf("relocation at %#x: %w", off, err)
		}
		r.Sym = n
		out = append(out, r)
	}
	return out, nil
}

// dynamic returns the entries of PT_DYNAMIC (tag -> first value), read from
// the file without the section headers.
func (f *File) dynamic() (map[elf.DynTag]uint64, bool, error) {
	for _, p := range f.f.Progs {
		if p.Type != elf.PT_DYNAMIC {
			continue
		}
		data, err := f.readAt(p.Off, p.Filesz)
		if err != nil {
			return nil, true, fmt.Errorf("read PT_DYNAMIC: %w", err)
		}
		ps := f.ptrSize()
		bo := f.f.ByteOrder
		m := map[elf.DynTag]uint64{}
		for i := 0; i+2*ps <= len(data); i += 2 * ps {
			tag := elf.DynTag(getUint(bo, data[i:], ps))
			if ps == 4 {
				tag = elf.DynTag(int32(uint32(tag)))
			}
			if tag == elf.DT_NULL {
				break
			}
			if _, dup := m[tag]; !dup {
				m[tag] = getUint(bo, data[i+ps:], ps)
			}
		}
		return m, true, nil
	}
	return nil, false, nil
}

// dynRelocsFromDynamic reads the relocation tables the dynamic linker uses,
// located by DT_RELA/DT_RELASZ, DT_REL/DT_RELSZ and DT_JMPREL/DT_PLTRELSZ/
// DT_PLTREL, with symbol names from DT_SYMTAB/DT_STRTAB. All of these are
// link-time addresses translated to file offsets through PT_LOAD.
func (f *File) dynRelocsFromDynamic() ([]DynReloc, error) {
	dyn, ok, err := f.dynamic()
	if err != nil || !ok {
		return nil, err
	}
	ps := f.ptrSize()
	symtab, hasSym := dyn[elf.DT_SYMTAB]
	strtab := dyn[elf.DT_STRTAB]
	strsz := dyn[elf.DT_STRSZ]
	syment := dyn[elf.DT_SYMENT]
	if syment == 0 {
		syment = 24
		if ps == 4 {
			syment = 16
		}
	}
	name := func(idx uint64) (string, error) {
		if idx == 0 {
			return "", nil
		}
		if !hasSym {
			return "", fmt.Errorf("%w: symbol index %d without DT_SYMTAB", ErrMalformed, idx)
		}
		if idx > 1<<32 || syment > 1<<16 {
			return "", fmt.Errorf("%w: symbol index %d out of range", ErrMalformed, idx)
		}
		b, err := f.readVirtSeg(symtab+idx*syment, 4)
		if err != nil {
			return "", fmt.Errorf("read dynamic symbol %d: %w", idx, err)
		}
		stName := uint64(f.f.ByteOrder.Uint32(b))
		return f.cString(strtab, stName, strsz)
	}

	var out []DynReloc
	jmp, hasJmp := dyn[elf.DT_JMPREL]
	pltsz := dyn[elf.DT_PLTRELSZ]
	table := func(addr, size uint64, rela bool) error {
		if size == 0 {
			return nil
		}
		data, err := f.readVirtSeg(addr, size)
		if err != nil {
			return err
		}
		rs, err := f.decodeRelocs(data, rela, name)
		if err != nil {
			return err
		}
		out = append(out, rs...)
		return nil
	}
	for _, t := range []struct {
		addr, size elf.DynTag
		rela       bool
	}{{elf.DT_RELA, elf.DT_RELASZ, true}, {elf.DT_REL, elf.DT_RELSZ, false}} {
		addr, ok := dyn[t.addr]
		if !ok {
			continue
		}
		size := dyn[t.size]
		// Some linkers count the PLT relocations in DT_RELASZ when they
		// follow .rela.dyn (glibc's elf/dynamic-link.h handles the
		// overlap); do not report them twice.
		if hasJmp && jmp > addr && jmp-addr < size {
			size = jmp - addr
		}
		if err := table(addr, size, t.rela); err != nil {
			return nil, fmt.Errorf("read %v table: %w", t.addr, err)
		}
	}
	if hasJmp {
		rela := dyn[elf.DT_PLTREL] != uint64(elf.DT_REL)
		if err := table(jmp, pltsz, rela); err != nil {
			return nil, fmt.Errorf("read DT_JMPREL table: %w", err)
		}
	}
	return out, nil
}

// cString reads the NUL-terminated string at strtab+off (bounded by strsz when
// known).
func (f *File) cString(strtab, off, strsz uint64) (string, error) {
	if strsz != 0 && off >= strsz {
		return "", fmt.Errorf("%w: string offset %#x beyond DT_STRSZ %#x", ErrMalformed, off, strsz)
	}
	limit := uint64(4096)
	if strsz != 0 {
		limit = min(limit, strsz-off)
	}
	b, err := f.readVirtUpTo(strtab+off, limit)
	if err != nil {
		return "", fmt.Errorf("read dynamic string: %w", err)
	}
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return string(b[:i]), nil
	}
	return "", fmt.Errorf("%w: unterminated dynamic string at %#x", ErrMalformed, off)
}

// readVirtUpTo reads up to max bytes at vaddr, stopping at the end of the
// file-backed part of the PT_LOAD segment holding vaddr.
func (f *File) readVirtUpTo(vaddr, max uint64) ([]byte, error) {
	for _, p := range f.f.Progs {
		if p.Type != elf.PT_LOAD || vaddr < p.Vaddr || vaddr-p.Vaddr >= p.Filesz {
			continue
		}
		return f.readVirtSeg(vaddr, min(max, p.Filesz-(vaddr-p.Vaddr)))
	}
	return nil, fmt.Errorf("read %#x: %w: no PT_LOAD covers it", vaddr, ErrNoData)
}

// CompileUnit is a DWARF compile unit.
type CompileUnit struct {
	// Name is DW_AT_name (the primary source file).
	Name string
	// Producer is DW_AT_producer; with -grecord-gcc-switches (gcc's default)
	// it lists the options the unit was compiled with.
	Producer string
	// Ranges are the [low, high) link-time address ranges of the unit's code.
	Ranges [][2]uint64
}

// CompileUnits returns the DWARF compile units, or nil, nil when the file has
// no .debug_info.
func (f *File) CompileUnits() (_ []CompileUnit, err error) {
	defer guard(&err, "read DWARF")
	if f.f.Section(".debug_info") == nil && f.f.Section(".zdebug_info") == nil {
		return nil, nil
	}
	d, err := f.f.DWARF()
	if err != nil {
		return nil, fmt.Errorf("read DWARF: %w", err)
	}
	var out []CompileUnit
	r := d.Reader()
	// A hostile DW_AT_sibling can point backwards and make SkipChildren loop
	// forever; entries must come at strictly increasing offsets.
	// Every entry takes at least one byte of .debug_info, so more entries
	// than bytes means the reader is not advancing (debug/dwarf can return
	// null entries forever on a truncated unit).
	limit := uint64(1 << 20)
	if s := f.f.Section(".debug_info"); s != nil {
		limit = s.Size*16 + 1<<16 // generous: .zdebug_info sizes are compressed
	}
	last, first := dwarf.Offset(0), true
	for n := uint64(0); ; n++ {
		if n > limit {
			return nil, fmt.Errorf("read DWARF: %w: entries do not advance", ErrMalformed)
		}
		e, err := r.Next()
		if err != nil {
			return nil, fmt.Errorf("read DWARF entry: %w", err)
		}
		if e == nil {
			break
		}
		if e.Tag == 0 {
			continue // null entry (Next reports it with offset 0)
		}
		if !first && e.Offset <= last {
			return nil, fmt.Errorf("read DWARF: %w: entry at %#x after %#x", ErrMalformed, e.Offset, last)
		}
		last, first = e.Offset, false
		if e.Tag == dwarf.TagCompileUnit || e.Tag == dwarf.TagPartialUnit {
			cu := CompileUnit{}
			cu.Name, _ = e.Val(dwarf.AttrName).(string)
			cu.Producer, _ = e.Val(dwarf.AttrProducer).(string)
			rs, err := d.Ranges(e)
			if err != nil {
				return nil, fmt.Errorf("DWARF ranges of %s: %w", cu.Name, err)
			}
			cu.Ranges = rs
			out = append(out, cu)
		}
		if e.Children {
			r.SkipChildren()
		}
	}
	return out, nil
}
