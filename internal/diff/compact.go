package diff

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
)

// compact returns the rewritten object without the bytes the patch linker
// never reads, so that a patch carries only what it loads: the code of the
// dropped (unchanged) functions, whose sections lost SHF_ALLOC in rewrite,
// their relocation sections, and the debugging information and other
// non-allocated sections (.debug_*, .comment) with their relocations. Those
// sections keep their headers (so that no section or symbol index changes)
// with size 0. What stays: every allocated section, the relocations that
// apply to one, the symbol and string tables, and section groups. The kept
// sections are laid out again one after the other, then the section header
// table (ELF places no order on them: System V gABI, "Sections").
func compact(obj []byte) (_ []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: malformed ELF object: %v", ErrBadObject, r)
		}
	}()
	f, err := elf.NewFile(bytes.NewReader(obj))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadObject, err)
	}
	shoff, shentsize, err := shdrTable(obj)
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	keep := func(s *elf.Section) bool {
		switch s.Type {
		case elf.SHT_NULL, elf.SHT_NOBITS:
			return false // no file bytes
		case elf.SHT_SYMTAB, elf.SHT_STRTAB, elf.SHT_GROUP, elf.SHT_SYMTAB_SHNDX:
			return true
		case elf.SHT_RELA, elf.SHT_REL:
			return int(s.Info) < len(f.Sections) && f.Sections[s.Info].Flags&elf.SHF_ALLOC != 0
		}
		return s.Flags&elf.SHF_ALLOC != 0
	}
	out := append([]byte(nil), obj[:64]...)
	hdrs := append([]byte(nil), obj[shoff:shoff+uint64(len(f.Sections))*shentsize]...)
	for i, s := range f.Sections {
		h := hdrs[uint64(i)*shentsize:]
		if s.Type == elf.SHT_NULL || s.Type == elf.SHT_NOBITS {
			continue
		}
		if !keep(s) {
			le.PutUint64(h[shOffset:], 0)
			le.PutUint64(h[shSize:], 0)
			continue
		}
		if s.Offset > uint64(len(obj)) || s.FileSize > uint64(len(obj))-s.Offset {
			return nil, fmt.Errorf("%w: section %s lies outside the file", ErrBadObject, s.Name)
		}
		align := max(s.Addralign, 1)
		for uint64(len(out))%align != 0 {
			out = append(out, 0)
		}
		le.PutUint64(h[shOffset:], uint64(len(out)))
		out = append(out, obj[s.Offset:s.Offset+s.FileSize]...)
	}
	for len(out)%8 != 0 {
		out = append(out, 0)
	}
	le.PutUint64(out[0x28:], uint64(len(out))) // e_shoff
	return append(out, hdrs...), nil
}
