package diff

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
)

// Offsets in Elf64_Shdr and Elf64_Sym (System V gABI, "Sections" and
// "Symbol Table").
const (
	shFlags  = 8
	shOffset = 24
	shSize   = 32
	stInfo   = 4
	stShndx  = 6
	stValue  = 8
)

// relNone is R_X86_64_NONE (and R_AARCH64_NONE): the linker skips it.
const relNone = 0

// rewrite returns a copy of the object in which the functions in drop are
// no longer loaded and symbols are renamed:
//
//   - each dropped function's section loses SHF_ALLOC, so the patch linker
//     does not load it (nor apply its relocations), and its symbol becomes
//     undefined (STB_WEAK turned STB_GLOBAL, so that a missing target copy
//     is an error, not address 0); the engine resolves it to the target's
//     copy — locals through the STT_FILE name;
//   - relocations against a dropped section's section symbol (how the
//     assembler refers to static functions) are rewritten against the
//     function's symbol, with the addend made relative to it;
//   - in .eh_frame, relocations against dropped code become R_*_NONE: the
//     FDE's initial location stays 0, and libgcc's unwinder ignores FDEs
//     whose pc_begin is 0 (unwind-dw2-fde.c, "link-once functions that were
//     removed"); the target's own tables describe the target's copies;
//   - renamed symbols get their new names appended in a copy of the string
//     table placed at the end of the file (sh_offset/sh_size updated): an ELF
//     file's sections need not be in file order.
func rewrite(o *object, drop []*item, renames map[int]string) ([]byte, error) {
	out := append([]byte(nil), o.raw...)
	le := binary.LittleEndian
	f := o.f
	shoff, shentsize, err := shdrTable(out)
	if err != nil {
		return nil, err
	}
	shdr := func(i int) []byte { return out[shoff+uint64(i)*shentsize:] }
	symtab := f.Sections[o.symtab]
	sym := func(i int) []byte { return out[symtab.Offset+uint64(i)*symEntSize:] }

	dropped := map[elf.SectionIndex]*item{}
	for _, it := range drop {
		dropped[it.sec] = it
	}
	for si := range dropped {
		b := shdr(int(si))
		le.PutUint64(b[shFlags:], le.Uint64(b[shFlags:])&^uint64(elf.SHF_ALLOC))
	}
	for _, it := range drop {
		b := sym(it.sym)
		info := b[stInfo]
		if elf.ST_BIND(info) == elf.STB_WEAK {
			b[stInfo] = byte(elf.ST_INFO(elf.STB_GLOBAL, elf.ST_TYPE(info)))
		}
		le.PutUint16(b[stShndx:], uint16(elf.SHN_UNDEF))
		le.PutUint64(b[stValue:], 0)
	}
	for target, rels := range o.relas {
		ts := f.Sections[target]
		if ts.Flags&elf.SHF_ALLOC == 0 || dropped[elf.SectionIndex(target)] != nil {
			continue
		}
		for _, r := range rels {
			sy := o.syms[r.sym]
			it := dropped[sy.Section]
			if it == nil || elf.ST_TYPE(sy.Info) != elf.STT_SECTION {
				continue
			}
			e := out[r.pos:]
			if ts.Name == ".eh_frame" {
				le.PutUint64(e[8:], uint64(relNone))
				le.PutUint64(e[16:], 0)
				continue
			}
			le.PutUint64(e[8:], uint64(it.sym)<<32|uint64(r.typ))
			le.PutUint64(e[16:], uint64(r.addend-int64(it.val)))
		}
	}
	if len(renames) > 0 {
		strIdx := int(symtab.Link)
		if strIdx <= 0 || strIdx >= len(f.Sections) {
			return nil, fmt.Errorf("%w: symbol table has no string table", ErrBadObject)
		}
		st := f.Sections[strIdx]
		old, ok := o.bytesOf(st, 0, st.Size)
		if !ok {
			return nil, fmt.Errorf("%w: string table outside the file", ErrBadObject)
		}
		tab := append([]byte(nil), old...)
		for i, name := range renames {
			le.PutUint32(sym(i)[0:], uint32(len(tab)))
			tab = append(tab, name...)
			tab = append(tab, 0)
		}
		le.PutUint64(shdr(strIdx)[shOffset:], uint64(len(out)))
		le.PutUint64(shdr(strIdx)[shSize:], uint64(len(tab)))
		out = append(out, tab...)
	}
	return out, nil
}

// shdrTable returns e_shoff and e_shentsize of an ELF64 header.
func shdrTable(b []byte) (uint64, uint64, error) {
	if len(b) < 64 {
		return 0, 0, fmt.Errorf("%w: short ELF header", ErrBadObject)
	}
	off := binary.LittleEndian.Uint64(b[0x28:])
	ent := uint64(binary.LittleEndian.Uint16(b[0x3a:]))
	n := uint64(binary.LittleEndian.Uint16(b[0x3c:]))
	if ent < 64 || off > uint64(len(b)) || n*ent > uint64(len(b))-off {
		return 0, 0, fmt.Errorf("%w: bad section header table", ErrBadObject)
	}
	return off, ent, nil
}
