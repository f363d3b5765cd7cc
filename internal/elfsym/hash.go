package elfsym

import (
	"debug/elf"
	"fmt"
)

// Looking one name up through the ELF hash tables.
//
// Building a whole symbol table (Symbols) reads and indexes every symbol of a
// file; for the C library that is thousands of strings, a map and two sorts,
// when resolving a patch needs a handful of names from it. The dynamic
// linker's own way is the hash table of .dynsym: .gnu.hash (DT_GNU_HASH,
// "ELF: better symbol lookup via DT_GNU_HASH", Drepper; every modern GNU
// toolchain emits it) or the System V .hash (gABI "Hash Table"). A lookup
// hashes the name, and compares only the few symbols of its chain. The
// sections are read once per File and kept; everything read from them is
// bounds-checked, and guard turns any slip into ErrMalformed.

// dynHash is what LookupDynamic reads, once per File.
type dynHash struct {
	ok     bool // false: no .dynsym with a usable hash table
	gnu    bool
	hash   []byte // .gnu.hash or .hash
	dynsym []byte
	dynstr []byte
	versym []byte            // .gnu.version, may be nil
	verdef map[uint16]string // version index -> name, from .gnu.version_d
	entsz  int               // size of one .dynsym entry
	class  elf.Class
	f      *File
}

// LookupDynamic returns the defined symbols of .dynsym named name (with the
// version rules of Table.Lookup: "name@VER", "name@@VER", and a bare name
// bound to the default version when several exist), found through the hash
// table. ok is false when the file has no .dynsym with a hash table; the
// caller then falls back to Symbols. The symbols are those Symbols reports
// with Dynamic set.
func (f *File) LookupDynamic(name string) (_ []Symbol, ok bool, err error) {
	defer guard(&err, "look up "+name)
	f.hashOnce.Do(func() { f.dh, f.dhErr = f.readDynHash() })
	if f.dhErr != nil {
		return nil, false, f.dhErr
	}
	if !f.dh.ok {
		return nil, false, nil
	}
	base, ver, def := splitVersion(name)
	var cands []Symbol
	visit := func(i uint32) error {
		s, sname, err := f.dh.symbol(i)
		if err != nil {
			return err
		}
		if sname == base && s.Defined() {
			cands = append(cands, s)
		}
		return nil
	}
	if f.dh.gnu {
		err = f.dh.gnuChain(base, visit)
	} else {
		err = f.dh.sysvChain(base, visit)
	}
	if err != nil {
		return nil, false, err
	}
	return matchVersion(cands, ver, def), true, nil
}

func (f *File) readDynHash() (*dynHash, error) {
	h := &dynHash{class: f.f.Class, f: f, entsz: 24}
	if h.class == elf.ELFCLASS32 {
		h.entsz = 16
	}
	dynsym := f.f.SectionByType(elf.SHT_DYNSYM)
	if dynsym == nil || dynsym.Type == elf.SHT_NOBITS {
		return h, nil
	}
	hs := f.f.SectionByType(elf.SHT_GNU_HASH)
	h.gnu = hs != nil
	if hs == nil {
		hs = f.f.SectionByType(elf.SHT_HASH)
	}
	if hs == nil || hs.Type == elf.SHT_NOBITS || int(dynsym.Link) >= len(f.f.Sections) {
		return h, nil
	}
	read := func(s *elf.Section) ([]byte, error) {
		if s.Size > 1<<30 {
			return nil, fmt.Errorf("section %s: %w: size %#x", s.Name, ErrMalformed, s.Size)
		}
		b, err := s.Data()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", s.Name, err)
		}
		return b, nil
	}
	var err error
	if h.hash, err = read(hs); err != nil {
		return nil, err
	}
	if h.dynsym, err = read(dynsym); err != nil {
		return nil, err
	}
	if h.dynstr, err = read(f.f.Sections[dynsym.Link]); err != nil {
		return nil, err
	}
	if vs := f.f.SectionByType(elf.SHT_GNU_VERSYM); vs != nil {
		if h.versym, err = read(vs); err != nil {
			return nil, err
		}
	}
	if vd := f.f.SectionByType(elf.SHT_GNU_VERDEF); vd != nil && int(vd.Link) < len(f.f.Sections) {
		data, err := read(vd)
		if err != nil {
			return nil, err
		}
		strs, err := read(f.f.Sections[vd.Link])
		if err != nil {
			return nil, err
		}
		if h.verdef, err = parseVerdef(f, data, strs); err != nil {
			return nil, err
		}
	}
	h.ok = true
	return h, nil
}

// parseVerdef maps each version index of .gnu.version_d to its name (the
// first Verdaux of the entry; gABI extension, LSB "Symbol Versioning").
func parseVerdef(f *File, data, strs []byte) (map[uint16]string, error) {
	bo := f.f.ByteOrder
	out := map[uint16]string{}
	for off, n := uint64(0), 0; n < 1<<16; n++ {
		if off+20 > uint64(len(data)) {
			return nil, fmt.Errorf(".gnu.version_d: %w: entry at %#x out of bounds", ErrMalformed, off)
		}
		e := data[off:]
		ndx, cnt := bo.Uint16(e[4:]), bo.Uint16(e[6:])
		aux, next := uint64(bo.Uint32(e[12:])), uint64(bo.Uint32(e[16:]))
		if cnt > 0 {
			a := off + aux
			if a+8 > uint64(len(data)) {
				return nil, fmt.Errorf(".gnu.version_d: %w: aux at %#x out of bounds", ErrMalformed, a)
			}
			name, ok := cstr(strs, uint64(bo.Uint32(data[a:])))
			if !ok {
				return nil, fmt.Errorf(".gnu.version_d: %w: bad name offset", ErrMalformed)
			}
			out[ndx&0x7fff] = name
		}
		if next == 0 {
			return out, nil
		}
		off += next
	}
	return nil, fmt.Errorf(".gnu.version_d: %w: too many entries", ErrMalformed)
}

// cstr returns the NUL-terminated string at off of strs.
func cstr(strs []byte, off uint64) (string, bool) {
	if off >= uint64(len(strs)) {
		return "", false
	}
	for i := off; i < uint64(len(strs)); i++ {
		if strs[i] == 0 {
			return string(strs[off:i]), true
		}
	}
	return "", false
}

// symbol decodes .dynsym entry i.
func (h *dynHash) symbol(i uint32) (Symbol, string, error) {
	off := uint64(i) * uint64(h.entsz)
	if off+uint64(h.entsz) > uint64(len(h.dynsym)) {
		return Symbol{}, "", fmt.Errorf(".dynsym: %w: symbol %d out of bounds", ErrMalformed, i)
	}
	e := h.dynsym[off:]
	bo := h.f.f.ByteOrder
	var s Symbol
	var nameOff uint64
	var info byte
	if h.class == elf.ELFCLASS32 {
		nameOff, s.Value, s.Size = uint64(bo.Uint32(e)), uint64(bo.Uint32(e[4:])), uint64(bo.Uint32(e[8:]))
		info, s.Section = e[12], elf.SectionIndex(bo.Uint16(e[14:]))
	} else {
		nameOff, info, s.Section = uint64(bo.Uint32(e)), e[4], elf.SectionIndex(bo.Uint16(e[6:]))
		s.Value, s.Size = bo.Uint64(e[8:]), bo.Uint64(e[16:])
	}
	s.Type, s.Bind, s.Dynamic = elf.ST_TYPE(info), elf.ST_BIND(info), true
	name, ok := cstr(h.dynstr, nameOff)
	if !ok {
		return Symbol{}, "", fmt.Errorf(".dynsym: %w: symbol %d: bad name offset", ErrMalformed, i)
	}
	s.Name = name
	// As debug/elf and Symbols read it: index 0 is local, 1 global
	// (unversioned); the high bit (VERSYM_HIDDEN) makes a defined version a
	// non-default one ("name@VER").
	if vo := uint64(i) * 2; vo+2 <= uint64(len(h.versym)) {
		vs := bo.Uint16(h.versym[vo:])
		if idx := vs & 0x7fff; idx > 1 {
			s.Version = h.verdef[idx]
			s.DefaultVersion = s.Version != "" && s.Defined() && vs&0x8000 == 0
		}
	}
	return s, name, nil
}

// gnuHash is the hash function of DT_GNU_HASH (Bernstein's, h*33 + c).
func gnuHash(name string) uint32 {
	h := uint32(5381)
	for i := 0; i < len(name); i++ {
		h = h*33 + uint32(name[i])
	}
	return h
}

// gnuChain visits the .dynsym indices whose hash matches name's in the
// .gnu.hash chain of its bucket (after the Bloom filter lets it through).
// Layout: nbuckets, symoffset, bloom_size, bloom_shift (32-bit words), then
// bloom_size ELFCLASS words, nbuckets 32-bit buckets, and one 32-bit chain
// word per symbol from symoffset on, whose low bit ends the chain.
func (h *dynHash) gnuChain(name string, visit func(uint32) error) error {
	bo := h.f.f.ByteOrder
	b := h.hash
	if len(b) < 16 {
		return fmt.Errorf(".gnu.hash: %w: short header", ErrMalformed)
	}
	nbuckets, symoff := uint64(bo.Uint32(b)), uint64(bo.Uint32(b[4:]))
	bloomSize, shift := uint64(bo.Uint32(b[8:])), bo.Uint32(b[12:])
	word := uint64(8)
	if h.class == elf.ELFCLASS32 {
		word = 4
	}
	bloomOff := uint64(16)
	bucketOff := bloomOff + bloomSize*word
	chainOff := bucketOff + nbuckets*4
	if nbuckets == 0 || bloomSize == 0 || bloomSize > 1<<28 || nbuckets > 1<<28 || chainOff > uint64(len(b)) {
		return fmt.Errorf(".gnu.hash: %w: %d buckets, %d Bloom words in %d bytes", ErrMalformed, nbuckets, bloomSize, len(b))
	}
	hv := gnuHash(name)
	bits := word * 8
	w := b[bloomOff+(uint64(hv)/bits%bloomSize)*word:]
	var bloom uint64
	if word == 8 {
		bloom = bo.Uint64(w)
	} else {
		bloom = uint64(bo.Uint32(w))
	}
	mask := uint64(1)<<(uint64(hv)%bits) | uint64(1)<<(uint64(hv>>shift)%bits)
	if bloom&mask != mask {
		return nil // certainly not there
	}
	i := uint64(bo.Uint32(b[bucketOff+uint64(hv)%nbuckets*4:]))
	if i == 0 || i < symoff {
		return nil
	}
	for n := 0; n < 1<<20; n, i = n+1, i+1 {
		co := chainOff + (i-symoff)*4
		if co+4 > uint64(len(b)) {
			return fmt.Errorf(".gnu.hash: %w: chain runs past the section", ErrMalformed)
		}
		c := bo.Uint32(b[co:])
		if c|1 == hv|1 {
			if err := visit(uint32(i)); err != nil {
				return err
			}
		}
		if c&1 != 0 {
			return nil
		}
	}
	return fmt.Errorf(".gnu.hash: %w: chain does not end", ErrMalformed)
}

// sysvHash is the hash function of the System V .hash table (gABI).
func sysvHash(name string) uint32 {
	var h uint32
	for i := 0; i < len(name); i++ {
		h = h<<4 + uint32(name[i])
		g := h & 0xf0000000
		h ^= g >> 24
		h &^= g
	}
	return h
}

// sysvChain visits the .dynsym indices in name's .hash bucket chain.
// Layout: nbucket, nchain, then nbucket buckets and nchain chain words.
func (h *dynHash) sysvChain(name string, visit func(uint32) error) error {
	bo := h.f.f.ByteOrder
	b := h.hash
	if len(b) < 8 {
		return fmt.Errorf(".hash: %w: short header", ErrMalformed)
	}
	nbucket, nchain := uint64(bo.Uint32(b)), uint64(bo.Uint32(b[4:]))
	if nbucket == 0 || 8+(nbucket+nchain)*4 > uint64(len(b)) {
		return fmt.Errorf(".hash: %w: %d buckets, %d chains in %d bytes", ErrMalformed, nbucket, nchain, len(b))
	}
	chain := 8 + nbucket*4
	i := uint64(bo.Uint32(b[8+uint64(sysvHash(name))%nbucket*4:]))
	for n := uint64(0); i != 0; n++ {
		if i >= nchain || n > nchain {
			return fmt.Errorf(".hash: %w: chain out of bounds or cyclic", ErrMalformed)
		}
		if err := visit(uint32(i)); err != nil {
			return err
		}
		i = uint64(bo.Uint32(b[chain+i*4:]))
	}
	return nil
}
