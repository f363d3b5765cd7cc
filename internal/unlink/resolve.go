package unlink

import (
	"debug/elf"
	"fmt"
	"sort"
)

// symValue is a symbol's address (TLS symbols hold an offset in the TLS
// segment in linked files: gABI, "Symbol Values").
func (lf *file) symValue(i int) uint64 {
	s := lf.syms[i]
	if elf.ST_TYPE(s.Info) == elf.STT_TLS {
		return s.Value + lf.tlsBase
	}
	return s.Value
}

// bySection reports whether r refers to an address rather than a named
// symbol: a relocation against a section symbol, or a made-up one.
func (lf *file) bySection(r lrel) bool {
	return r.synth || elf.ST_TYPE(lf.syms[r.sym].Info) == elf.STT_SECTION || lf.label(r)
}

// label reports whether r refers to a local label the link kept because a
// kept relocation names it (.LC0: a string or constant): no program has
// it in its symbol table, so it is taken as the address it names.
func (lf *file) label(r lrel) bool {
	if r.synth || r.sym == 0 || lf.bySym[r.sym] != nil {
		return false
	}
	s := lf.syms[r.sym]
	return elf.ST_BIND(s.Info) == elf.STB_LOCAL && elf.ST_TYPE(s.Info) == elf.STT_NOTYPE &&
		s.Section != elf.SHN_UNDEF && s.Section < elf.SHN_LORESERVE
}

// value is r's S+A.
func (lf *file) value(r lrel) int64 {
	if r.synth {
		return r.v
	}
	return int64(lf.symValue(r.sym)) + r.addend
}

// pcRel reports whether relocation type t is PC-relative.
func (lf *file) pcRel(t uint32) bool {
	ri, err := lf.a.RelocInfo(t)
	return err == nil && ri.PCRel
}

// codeTargets sets t, the address referred to, of a function's relocations
// against section symbols.
func (lf *file) codeTargets(fn *region) {
	var fields []int
	var idx []int
	for k, r := range fn.rels {
		if r.synth || !lf.bySection(r) {
			continue
		}
		fn.rels[k].t = uint64(lf.value(r))
		if lf.label(r) {
			fn.rels[k].t = lf.symValue(r.sym)
			continue
		}
		if lf.pcRel(r.typ) {
			fields = append(fields, int(r.p-fn.start))
			idx = append(idx, k)
		}
	}
	if len(fields) == 0 {
		return
	}
	bias, err := lf.a.PCRelBias(lf.bytesOf(fn), fields)
	if err != nil {
		lf.unres[fn.name] = fmt.Sprintf("its code does not decode: %v", err)
		return
	}
	for j, k := range idx {
		fn.rels[k].t = uint64(int64(fn.rels[k].t) + bias[j])
	}
}

// dataTargets sets t for a data region's relocations against section
// symbols. A PC-relative entry of anonymous data is taken to be relative to
// the start of its table (GCC's PIC jump tables: ".long .L3-.L4", .L4 the
// table, which is the address the code refers to and so the region's start).
func (lf *file) dataTargets(d *region) {
	for k, r := range d.rels {
		if !lf.bySection(r) {
			continue
		}
		t := lf.value(r)
		switch {
		case lf.label(r):
			t = int64(lf.symValue(r.sym))
		case d.anon && lf.pcRel(r.typ):
			t -= int64(r.p - d.start)
		}
		d.rels[k].t = uint64(t)
	}
}

// endOf returns the data object whose end is addr, when no object starts
// there (a loop bound "p < table + N"). Text there is taken to be a string
// literal placed right after the object, not its end.
func (lf *file) endOf(addr uint64) *region {
	i := sort.Search(len(lf.items), func(i int) bool { return lf.items[i].start >= addr }) - 1
	if i < 0 || lf.items[i].fn || lf.items[i].end != addr {
		return nil
	}
	if si := lf.sectionAt(addr); si >= 0 && lf.f.Sections[si].Type != elf.SHT_NOBITS {
		if stringLen(lf.secData(si)[addr-lf.f.Sections[si].Addr:]) > 1 {
			return nil
		}
	}
	return lf.items[i]
}

// findAnon makes the regions of anonymous data: every address referred to
// through a section symbol that lies in no function or data object, in a
// section that holds no code. Tables among them can refer to further
// anonymous data, hence the rounds.
func (lf *file) findAnon() error {
	for _, it := range lf.items {
		if it.fn {
			lf.codeTargets(it)
		} else {
			lf.dataTargets(it)
		}
	}
	starts := map[int]map[uint64]bool{}
	add := func(rs []lrel) bool {
		grew := false
		for _, r := range rs {
			if !lf.bySection(r) || lf.itemAt(r.t) != nil || lf.endOf(r.t) != nil {
				continue
			}
			si := lf.sectionAt(r.t)
			if si < 0 || lf.f.Sections[si].Flags&elf.SHF_EXECINSTR != 0 {
				continue
			}
			if starts[si] == nil {
				starts[si] = map[uint64]bool{}
			}
			if !starts[si][r.t] {
				starts[si][r.t], grew = true, true
			}
		}
		return grew
	}
	for _, it := range lf.items {
		add(it.rels)
	}
	for round := 0; ; round++ {
		lf.makeAnon(starts)
		grew := false
		for _, rs := range lf.anon {
			for _, a := range rs {
				lf.dataTargets(a)
				grew = add(a.rels) || grew
			}
		}
		if !grew || round == 4 {
			break
		}
	}
	return lf.resolveAll()
}

// makeAnon builds the anonymous regions from their start addresses.
func (lf *file) makeAnon(starts map[int]map[uint64]bool) {
	lf.anon = map[int][]*region{}
	for si, set := range starts {
		sec := lf.f.Sections[si]
		var ss []uint64
		for a := range set {
			ss = append(ss, a)
		}
		sort.Slice(ss, func(i, j int) bool { return ss[i] < ss[j] })
		data := lf.secData(si)
		for k, a := range ss {
			end := sec.Addr + sec.Size
			if k+1 < len(ss) {
				end = ss[k+1]
			}
			if i := sort.Search(len(lf.items), func(i int) bool { return lf.items[i].start > a }); i < len(lf.items) && lf.items[i].start < end {
				end = lf.items[i].start
			}
			r := &region{anon: true, typ: elf.STT_OBJECT, bindv: elf.STB_LOCAL, sec: si, start: a, end: end}
			if n := stringLen(data[a-sec.Addr:]); n > 1 && sec.Type != elf.SHT_NOBITS {
				r.end = max(r.end, a+uint64(n))
				r.str = r.end == a+uint64(n)
			}
			rs := lf.allRels[si] // sorted by place
			for k := sort.Search(len(rs), func(k int) bool { return rs[k].p >= r.start }); k < len(rs) && rs[k].p < r.end; k++ {
				r.rels = append(r.rels, rs[k])
			}
			lf.anon[si] = append(lf.anon[si], r)
		}
	}
}

// stringLen returns the length of the NUL-terminated text at the start of
// b, the NUL included; 0 if b does not start with text.
func stringLen(b []byte) int {
	for i, c := range b {
		switch {
		case c == 0:
			return i + 1
		case c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != 0x1b, c == 0x7f, i >= 4096:
			return 0
		}
	}
	return 0
}

// anonAt returns the anonymous region starting at addr.
func (lf *file) anonAt(addr uint64) *region {
	si := lf.sectionAt(addr)
	rs := lf.anon[si]
	i := sort.Search(len(rs), func(i int) bool { return rs[i].start >= addr })
	if i < len(rs) && rs[i].start == addr {
		return rs[i]
	}
	return nil
}

// resolveAll decides what every relocation of every region refers to.
func (lf *file) resolveAll() error {
	regions := append([]*region(nil), lf.items...)
	for _, rs := range lf.anon {
		regions = append(regions, rs...)
	}
	for _, reg := range regions {
		for k := range reg.rels {
			to, bad := lf.resolve(reg.rels[k])
			if bad != "" {
				who := reg.name
				if reg.anon {
					who = fmt.Sprintf("anonymous data at %#x", reg.start)
				}
				if lf.unres[who] == "" {
					lf.unres[who] = bad
				}
				to = ref{name: "hotpatch.unresolved", bind: elf.STB_GLOBAL, typ: elf.STT_NOTYPE}
			}
			reg.rels[k].to = to
		}
	}
	return nil
}

// resolve returns what relocation r refers to, or why that is unknown.
func (lf *file) resolve(r lrel) (ref, string) {
	if !r.synth && r.sym == 0 {
		return ref{addend: r.addend}, "" // absolute (R_*_NONE or an absolute addend)
	}
	if !lf.bySection(r) {
		sy := lf.syms[r.sym]
		if it := lf.bySym[r.sym]; it != nil {
			return ref{r: it, addend: int64(lf.symValue(r.sym)) + r.addend - int64(it.start)}, ""
		}
		name := sy.Name
		if sy.Section != elf.SHN_UNDEF {
			name = baseName(name)
		}
		if name == "" {
			return ref{}, fmt.Sprintf("a relocation at %#x refers to a symbol without a name", r.p)
		}
		return ref{name: name, bind: elf.ST_BIND(sy.Info), typ: elf.ST_TYPE(sy.Info), addend: r.addend}, ""
	}
	v := lf.value(r)
	if it := lf.itemAt(r.t); it != nil {
		return ref{r: it, addend: v - int64(it.start)}, ""
	}
	if it := lf.endOf(r.t); it != nil {
		return ref{r: it, addend: v - int64(it.start)}, ""
	}
	if a := lf.anonAt(r.t); a != nil {
		return ref{r: a, addend: v - int64(a.start)}, ""
	}
	// Code outside every sized function (_init, PLT stubs): the closest
	// named symbol before it, by name.
	si := lf.sectionAt(r.t)
	bestIdx := -1
	for i := 1; i < len(lf.syms); i++ {
		s := lf.syms[i]
		if s.Name == "" || int(s.Section) != si || si < 0 || s.Value > r.t || elf.ST_TYPE(s.Info) == elf.STT_SECTION || elf.ST_TYPE(s.Info) == elf.STT_FILE {
			continue
		}
		if bestIdx < 0 || s.Value > lf.syms[bestIdx].Value {
			bestIdx = i
		}
	}
	if bestIdx < 0 {
		return ref{}, fmt.Sprintf("the relocation at %#x refers to %#x, which lies in no function, data object or section", r.p, r.t)
	}
	s := lf.syms[bestIdx]
	return ref{name: baseName(s.Name), bind: elf.ST_BIND(s.Info), typ: elf.ST_TYPE(s.Info), addend: v - int64(s.Value)}, ""
}

// choose marks the regions the object defines: all of them, or (with
// opt.Funcs) the functions named and the data they reach.
func (lf *file) choose(opt Options) {
	var todo []*region
	mark := func(r *region) {
		if !r.keep {
			r.keep = true
			todo = append(todo, r)
		}
	}
	for _, it := range lf.items {
		switch {
		case opt.Funcs == nil:
			it.keep = true
		case it.fn && opt.Funcs[it.name], !it.fn && opt.Data[it.name]:
			mark(it)
		}
	}
	if opt.Funcs == nil {
		for _, rs := range lf.anon {
			for _, a := range rs {
				a.keep = true
			}
		}
		return
	}
	for len(todo) > 0 {
		r := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		for _, rl := range r.rels {
			if t := rl.to.r; t != nil && !t.fn {
				mark(t)
			}
		}
	}
}
