package unlink

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"sort"
)

// symRef names a symbol of the object being written: a local or a global
// by position in its list (locals come first in .symtab: gABI, "Symbol
// Table"); ok is false for the null symbol.
type symRef struct {
	global bool
	pos    int
	ok     bool
}

type outSym struct {
	name        string
	info, other byte
	shndx       uint16
	value, size uint64
}

type outSec struct {
	name       string
	typ        elf.SectionType
	flags      elf.SectionFlag
	data       []byte
	size       uint64
	link, info uint32
	align, ent uint64
	rels       []lrel // content sections: relocations, places relative to the section
	nameOff    uint32
	fileOff    uint64
}

// writer assembles the relocatable object.
type writer struct {
	lf      *file
	secs    []*outSec
	locals  []outSym
	globals []outSym
	undef   map[string]symRef
}

func (w *writer) addSym(s outSym, global bool) symRef {
	if global {
		w.globals = append(w.globals, s)
		return symRef{global: true, pos: len(w.globals) - 1, ok: true}
	}
	w.locals = append(w.locals, s)
	return symRef{pos: len(w.locals) - 1, ok: true}
}

func (w *writer) index(r symRef) uint32 {
	if !r.ok {
		return 0
	}
	if r.global {
		return uint32(1 + len(w.locals) + r.pos)
	}
	return uint32(1 + r.pos)
}

// undefSym returns the undefined symbol of a name (one per name, binding and type).
func (w *writer) undefSym(name string, bind elf.SymBind, typ elf.SymType) symRef {
	if bind == elf.STB_WEAK && typ != elf.STT_NOTYPE {
		bind = elf.STB_GLOBAL // a missing target copy must be an error, not address 0
	}
	k := fmt.Sprintf("%s\x00%d\x00%d", name, bind, typ)
	if r, ok := w.undef[k]; ok {
		return r
	}
	r := w.addSym(outSym{name: name, info: byte(elf.ST_INFO(bind, typ))}, bind != elf.STB_LOCAL)
	w.undef[k] = r
	return r
}

// alignOf is the alignment a region keeps: the largest power of two that
// divides its address, at most its linked section's.
func alignOf(addr, secAlign uint64) uint64 {
	a := uint64(1)
	for a < secAlign && a < 64 && addr%(a*2) == 0 {
		a *= 2
	}
	return a
}

// write lays the object out.
func (lf *file) write(name string) (*Result, error) {
	w := &writer{lf: lf, undef: map[string]symRef{}}
	w.addSym(outSym{name: name, info: byte(elf.ST_INFO(elf.STB_LOCAL, elf.STT_FILE)), shndx: uint16(elf.SHN_ABS)}, false)
	res := &Result{Unresolved: map[string]string{}}
	var kept []*region
	for _, it := range lf.items {
		if it.keep {
			kept = append(kept, it)
		}
	}
	var anons []*region
	for _, rs := range lf.anon {
		for _, a := range rs {
			if a.keep {
				anons = append(anons, a)
			}
		}
	}
	sort.Slice(anons, func(i, j int) bool { return anons[i].start < anons[j].start })
	kept = append(kept, anons...)
	for n, r := range kept {
		ls := lf.f.Sections[r.sec]
		s := &outSec{typ: ls.Type, flags: ls.Flags & (elf.SHF_WRITE | elf.SHF_ALLOC | elf.SHF_EXECINSTR | elf.SHF_TLS),
			size: r.end - r.start, align: alignOf(r.start, max(ls.Addralign, 1))}
		switch {
		case r.fn:
			s.name, s.align = ls.Name+"."+r.name, max(s.align, min(16, max(ls.Addralign, 1)))
		case r.str:
			s.name, s.flags, s.ent, s.align = fmt.Sprintf("%s.str.%d", ls.Name, n), s.flags|elf.SHF_MERGE|elf.SHF_STRINGS, 1, 1
		case r.anon:
			s.name = fmt.Sprintf("%s.anon.%d", ls.Name, n)
		default:
			s.name = ls.Name + "." + r.name
		}
		if s.typ != elf.SHT_NOBITS {
			s.data = append([]byte(nil), lf.bytesOf(r)...)
		}
		w.secs = append(w.secs, s)
		shndx := uint16(len(w.secs)) // section 0 is the null section
		r.outSec = len(w.secs)
		if r.anon {
			r.sym = w.addSym(outSym{info: byte(elf.ST_INFO(elf.STB_LOCAL, elf.STT_SECTION)), shndx: shndx}, false)
		} else {
			r.sym = w.addSym(outSym{name: r.name, info: byte(elf.ST_INFO(r.bindv, r.typ)), other: r.other, shndx: shndx, size: r.end - r.start},
				r.bindv != elf.STB_LOCAL)
			if !r.fn {
				res.Data = append(res.Data, r.name)
			}
		}
		if why := lf.unres[r.name]; why != "" && r.fn {
			res.Unresolved[r.name] = why
		}
	}
	for _, r := range kept {
		s := w.secs[r.outSec-1]
		for _, rl := range r.rels {
			if ri, err := lf.a.RelocInfo(rl.typ); err == nil {
				for k := rl.p - r.start; k < rl.p-r.start+uint64(ri.Size) && k < uint64(len(s.data)); k++ {
					s.data[k] = 0
				}
			} else if r.fn && res.Unresolved[r.name] == "" {
				res.Unresolved[r.name] = err.Error()
			}
			rl.p -= r.start
			s.rels = append(s.rels, rl)
		}
	}
	if data, rels := ehSection(lf.ehFrames()); len(data) > 0 {
		w.secs = append(w.secs, &outSec{name: ".eh_frame", typ: elf.SHT_PROGBITS, flags: elf.SHF_ALLOC, data: data, size: uint64(len(data)), align: 8, rels: rels})
	}
	return res, w.finish(res)
}

// target returns the symbol a relocation is written against and its addend.
func (w *writer) target(to ref) (symRef, int64) {
	switch {
	case to.r != nil && to.r.keep:
		return to.r.sym, to.addend
	case to.r != nil:
		return w.undefSym(to.r.name, to.r.bindv, to.r.typ), to.addend
	case to.name != "":
		return w.undefSym(to.name, to.bind, to.typ), to.addend
	}
	return symRef{}, to.addend
}

// finish writes the relocation sections, the symbol and string tables and
// the headers.
func (w *writer) finish(res *Result) error {
	symtabIdx, err := w.addRelaSections()
	if err != nil {
		return err
	}
	w.addSymtab(symtabIdx)
	w.addShstrtab()
	res.Object = w.layout()
	return nil
}

// addRelaSections adds a .rela section after the content sections for each
// one with relocations, and returns the index the symbol table will have
// (right after them).
func (w *writer) addRelaSections() (symtabIdx uint32, err error) {
	le := binary.LittleEndian
	type pending struct {
		content int
		rels    []lrel
	}
	var relSecs []pending
	for i, s := range w.secs {
		if len(s.rels) > 0 {
			relSecs = append(relSecs, pending{i + 1, s.rels})
		}
	}
	// Resolve targets first: that may add undefined symbols.
	type outRel struct {
		off  uint64
		info uint64
		add  int64
	}
	relData := make([][]outRel, len(relSecs))
	syms := make([][]symRef, len(relSecs))
	for k, p := range relSecs {
		for _, rl := range p.rels {
			sr, add := w.target(rl.to)
			syms[k] = append(syms[k], sr)
			relData[k] = append(relData[k], outRel{off: rl.p, info: uint64(rl.typ), add: add})
		}
	}
	nContent := len(w.secs)
	if nContent+len(relSecs)+4 >= int(elf.SHN_LORESERVE) {
		return 0, fmt.Errorf("%w: the object would have %d sections, more than ELF's %d without extended indices", ErrBadFile, nContent+len(relSecs)+4, elf.SHN_LORESERVE)
	}
	symtabIdx = uint32(nContent + len(relSecs) + 1)
	for k, p := range relSecs {
		var b []byte
		for j, r := range relData[k] {
			var e [24]byte
			le.PutUint64(e[0:], r.off)
			le.PutUint64(e[8:], uint64(w.index(syms[k][j]))<<32|r.info)
			le.PutUint64(e[16:], uint64(r.add))
			b = append(b, e[:]...)
		}
		w.secs = append(w.secs, &outSec{name: ".rela" + w.secs[p.content-1].name, typ: elf.SHT_RELA, flags: elf.SHF_INFO_LINK,
			data: b, size: uint64(len(b)), link: symtabIdx, info: uint32(p.content), align: 8, ent: 24})
	}
	return symtabIdx, nil
}

// addSymtab adds .symtab (at symtabIdx: locals, then globals) and its
// .strtab.
func (w *writer) addSymtab(symtabIdx uint32) {
	le := binary.LittleEndian
	var strtab []byte
	strtab = append(strtab, 0)
	var symtab []byte
	symtab = append(symtab, make([]byte, 24)...)
	for _, s := range append(append([]outSym(nil), w.locals...), w.globals...) {
		var e [24]byte
		if s.name != "" {
			le.PutUint32(e[0:], uint32(len(strtab)))
			strtab = append(append(strtab, s.name...), 0)
		}
		e[4], e[5] = s.info, s.other
		le.PutUint16(e[6:], s.shndx)
		le.PutUint64(e[8:], s.value)
		le.PutUint64(e[16:], s.size)
		symtab = append(symtab, e[:]...)
	}
	w.secs = append(w.secs,
		&outSec{name: ".symtab", typ: elf.SHT_SYMTAB, data: symtab, size: uint64(len(symtab)), link: symtabIdx + 1, info: uint32(1 + len(w.locals)), align: 8, ent: 24},
		&outSec{name: ".strtab", typ: elf.SHT_STRTAB, data: strtab, size: uint64(len(strtab)), align: 1})
}

// addShstrtab adds the section name table, last, and gives every section
// its name's offset.
func (w *writer) addShstrtab() {
	shstr := []byte{0}
	shs := &outSec{name: ".shstrtab", typ: elf.SHT_STRTAB, align: 1}
	w.secs = append(w.secs, shs)
	for _, s := range w.secs {
		s.nameOff = uint32(len(shstr))
		shstr = append(append(shstr, s.name...), 0)
	}
	shs.data, shs.size = shstr, uint64(len(shstr))
}

// layout writes the file: ELF header, the sections' contents, each at its
// alignment, and the section headers (the last section is .shstrtab).
func (w *writer) layout() []byte {
	le := binary.LittleEndian
	out := make([]byte, 64)
	for _, s := range w.secs {
		if s.typ == elf.SHT_NOBITS {
			continue
		}
		for uint64(len(out))%max(s.align, 1) != 0 {
			out = append(out, 0)
		}
		s.fileOff = uint64(len(out))
		out = append(out, s.data...)
	}
	for len(out)%8 != 0 {
		out = append(out, 0)
	}
	shoff := uint64(len(out))
	out = append(out, make([]byte, 64)...) // the null section header
	for _, s := range w.secs {
		var h [64]byte
		le.PutUint32(h[0:], s.nameOff)
		le.PutUint32(h[4:], uint32(s.typ))
		le.PutUint64(h[8:], uint64(s.flags))
		le.PutUint64(h[24:], s.fileOff)
		le.PutUint64(h[32:], s.size)
		le.PutUint32(h[40:], s.link)
		le.PutUint32(h[44:], s.info)
		le.PutUint64(h[48:], max(s.align, 1))
		le.PutUint64(h[56:], s.ent)
		out = append(out, h[:]...)
	}
	copy(out[0:], []byte{0x7f, 'E', 'L', 'F', byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT), byte(elf.ELFOSABI_NONE)})
	le.PutUint16(out[16:], uint16(elf.ET_REL))
	le.PutUint16(out[18:], uint16(w.lf.f.Machine))
	le.PutUint32(out[20:], uint32(elf.EV_CURRENT))
	le.PutUint64(out[40:], shoff)
	le.PutUint16(out[52:], 64)                    // e_ehsize
	le.PutUint16(out[58:], 64)                    // e_shentsize
	le.PutUint16(out[60:], uint16(len(w.secs)+1)) // e_shnum
	le.PutUint16(out[62:], uint16(len(w.secs)))   // e_shstrndx
	return out
}
