package linker

import (
	"debug/elf"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/hotpatch/hotpatch/internal/arch"
)

// Memory protections of segments. The values are Linux's PROT_* constants
// (mman.h, the same on every Linux architecture); they are spelled out here so
// that the linker builds on any host.
const (
	ProtRead  = 0x1
	ProtWrite = 0x2
	ProtExec  = 0x4
)

// PageSize is the alignment of segments and of the region base.
const PageSize = 4096

// maxSize bounds the size of a patch region (and of any section in it), so that
// hostile objects cannot make the linker allocate unbounded memory.
const maxSize = 256 << 20

// gotSymbol is the name the assembler uses for the address of the GOT.
const gotSymbol = "_GLOBAL_OFFSET_TABLE_"

// Resolver tells the linker where things live in the target.
type Resolver interface {
	// Resolve returns the run-time address in the target of an undefined symbol, or, for a defined data
	// object (ref.Defined), Found=true to bind the object's whole section to the target's existing copy instead
	// of allocating a fresh one (how a patch reaches the target's static variables). For TLS symbols it
	// returns the offset from the thread pointer in TPOff.
	Resolve(ref SymbolRef) (Resolution, error)
}

// SymbolRef is a symbol the linker asks a Resolver about.
type SymbolRef struct {
	Name string
	// File is the object's STT_FILE name, which locates Local symbols in the
	// target's symbol table.
	File    string
	Local   bool
	Weak    bool
	Type    elf.SymType
	Size    uint64
	Defined bool
	TLS     bool
}

// Resolution is a Resolver's answer.
type Resolution struct {
	Found bool
	Addr  uint64
	// For thread-local variables: the offset from the thread pointer
	// (initial/local-exec code), unless NoTPOff says it is not known; and,
	// when TLSModule is not 0, the module id the dynamic linker gave the
	// variable's module and DTPOff, the variable's offset in that module's
	// block (general/local-dynamic code, through __tls_get_addr).
	TPOff     int64
	NoTPOff   bool
	TLSModule uint64
	DTPOff    int64
}

// loc is where a symbol or section is at run time: an offset in the patch
// region (abs false) or an absolute address in the target (abs true).
type loc struct {
	abs    bool
	v      uint64
	tpoff  int64
	noTP   bool   // tpoff unknown (a library reached only through __tls_get_addr)
	mod    uint64 // TLS module id, 0 if unknown
	dtpoff int64
}

// tlsLoc is where the Resolver says a thread-local variable is.
func tlsLoc(res Resolution) loc {
	return loc{abs: true, v: res.Addr, tpoff: res.TPOff, noTP: res.NoTPOff, mod: res.TLSModule, dtpoff: res.DTPOff}
}

func (l loc) addr(base uint64) uint64 {
	if l.abs {
		return l.v
	}
	return base + l.v
}

type segLayout struct {
	name string
	off  uint64 // offset in the region
	prot int
	tmpl []byte // initial contents, full size
}

type preparedReloc struct {
	sec  int
	r    rela
	info arch.RelocInfo
	got  int // GOT slot index, -1 if none
	stub int // far-call stub index, -1 if none
	far  int // far-data rewrite index (Prepared.fars), -1 if none
}

// gotSlot is one slot of the patch's GOT: the symbol's address plus addend,
// or one of its TLS values.
type gotSlot struct {
	sym    uint32
	kind   slotKind
	addend int64
}

type slotKind int

const (
	slotAddr   slotKind = iota // S + addend
	slotTPOff                  // the thread-pointer offset of S
	slotModule                 // tls_index.ti_module of S
	slotDTPOff                 // tls_index.ti_offset of S
	slotZero                   // 0 (tls_index.ti_offset for local dynamic)
	slotGD                     // key only: the pair slotModule, slotDTPOff
	slotLD                     // key only: the pair slotModule, slotZero
)

// farRef is a planned rewrite of an instruction that may not reach its data
// symbol directly (arch.FarRef): used by Link only when the direct
// relocation overflows at the chosen base.
type farRef struct {
	plan   arch.FarRef
	got    int    // the slot holding S + plan.SlotAddend
	stubAt uint64 // region offset of the stub, if plan.StubLen > 0
}

type imageSym struct {
	key string
	sym int
}

// Prepared is an object whose symbols are resolved and whose layout is fixed;
// only the base address is left open.
type Prepared struct {
	o      *Object
	arch   arch.Arch
	size   uint64
	segs   []segLayout
	secLoc []loc // by section index; meaningful for loaded (or bound) sections
	secSeg []int // segment holding each section, -1 if not in the image
	placed []bool
	symLoc []loc // by symbol index
	relocs []preparedReloc

	gotOff uint64
	got    []gotSlot
	stubs  []uint64 // destinations
	stubAt []uint64 // region offsets of the stubs
	fars   []farRef
	reach  []uint64
	prefer []uint64
	low    uint64
	syms   []imageSym
}

// Size returns the number of bytes the patch region needs (a multiple of PageSize).
func (p *Prepared) Size() uint64 { return p.size }

// Reach returns, sorted, the target addresses (the value S+A each one
// computes) that PC-relative relocations with a 32-bit field, other than calls
// (which go through stubs when needed), must reach: the region must be placed
// so that every one is within ±2 GiB of every byte of it.
func (p *Prepared) Reach() []uint64 { return append([]uint64(nil), p.reach...) }

// Prefer returns, sorted, the target addresses that PC-relative data
// references would rather reach directly but need not: when the region is
// placed out of their reach, Link rewrites the instructions to go through
// the patch's GOT (see arch.FarRef), which costs a few instructions per
// access. Place the region within ±2 GiB of them when the Reach addresses and
// the redirects allow it.
func (p *Prepared) Prefer() []uint64 { return append([]uint64(nil), p.prefer...) }

// NeedsLow reports whether absolute 32-bit relocations (R_X86_64_32, 32S)
// refer to the patch itself; if so the whole region must lie below limit
// (base+Size() <= limit): 2 GiB for sign-extended fields, 4 GiB for
// zero-extended ones.
func (p *Prepared) NeedsLow() (limit uint64, ok bool) { return p.low, p.low != 0 }

// Prepare resolves the object's symbols through r, classifies its relocations
// and lays it out. Unresolved symbols are all reported in one error wrapping
// ErrUnresolved; unsupported relocations are refused with an error wrapping
// arch.ErrUnsupportedReloc that names the type, symbol and section.
//
// Writable data objects defined by the object are offered to r first (with
// SymbolRef.Defined): when r finds them in the target the section holding the
// object is bound to the target's copy, not allocated, and its relocations
// are not applied (the target's copy is already relocated). Read-only objects
// are always allocated fresh, since the patch may have changed their contents.
func Prepare(o *Object, r Resolver) (_ *Prepared, err error) {
	defer recoverBad(&err, "prepare")
	b := newPreparer(o, r)
	if err := b.bindDefined(); err != nil {
		return nil, err
	}
	if err := b.classifyRelocs(); err != nil {
		return nil, err
	}
	if err := b.resolveUndefined(); err != nil {
		return nil, err
	}
	b.assignGOTAndStubs()
	b.planFarRefs()
	spans, err := b.layOut()
	if err != nil {
		return nil, err
	}
	b.buildTemplates(spans)
	b.locateSymbols()
	if err := b.p.checkTLS(); err != nil {
		return nil, err
	}
	b.placementConstraints()
	b.imageSymbols()
	return b.p, nil
}

// preparer is the working state of one Prepare call: the Prepared being
// built and what its steps hand on to one another.
type preparer struct {
	p *Prepared
	r Resolver

	symPlaced []bool // by symbol index: symLoc is already final
	symsIn    []int  // named symbols per section
	commons   []int  // common symbols the target does not have, allocated in data
	need      map[uint32]*undef
	needOrder []uint32 // the keys of need, in first-reference order
	usesGOT   bool
	gotIdx    map[gotSlot]int

	off    uint64 // layout: the next free region offset
	tooBig bool   // layout: some section or the region passed maxSize
}

// undef is an undefined symbol the relocations need: the sections referring to it.
type undef struct {
	refs []string
}

// span is a [start, end) range of region offsets.
type span struct{ start, end uint64 }

// newPreparer sets up an empty Prepared for o, with no section in the image yet.
func newPreparer(o *Object, r Resolver) *preparer {
	p := &Prepared{
		o:      o,
		arch:   o.arch,
		secLoc: make([]loc, len(o.secs)),
		secSeg: make([]int, len(o.secs)),
		placed: make([]bool, len(o.secs)),
		symLoc: make([]loc, len(o.syms)),
	}
	for i := range p.secSeg {
		p.secSeg[i] = -1
	}
	return &preparer{
		p:         p,
		r:         r,
		symPlaced: make([]bool, len(o.syms)),
		need:      map[uint32]*undef{},
		gotIdx:    map[gotSlot]int{},
	}
}

// bindDefined is step 1: it offers the object's thread-local and writable
// data objects to the resolver, binding them to the target's copies, so that
// the patch shares the target's state instead of allocating its own.
func (b *preparer) bindDefined() error {
	p, o := b.p, b.p.o
	b.symsIn = make([]int, len(o.secs))
	for i := 1; i < len(o.syms); i++ {
		s := &o.syms[i]
		if s.defined() && s.shndx < shnLoReserve && s.typ != elf.STT_SECTION && s.typ != elf.STT_FILE {
			b.symsIn[s.shndx]++
		}
	}
	if err := p.bindTLS(b.r, b.symsIn); err != nil {
		return err
	}
	for i := 1; i < len(o.syms); i++ {
		s := &o.syms[i]
		if s.typ != elf.STT_OBJECT || !s.defined() || s.shndx == elf.SHN_ABS {
			continue
		}
		common := s.shndx == elf.SHN_COMMON
		if !common && o.secs[s.shndx].kind != kindData && o.secs[s.shndx].kind != kindBSS {
			continue
		}
		res, err := b.r.Resolve(SymbolRef{
			Name: s.name, File: o.file, Local: s.bind == elf.STB_LOCAL, Weak: s.bind == elf.STB_WEAK,
			Type: s.typ, Size: s.size, Defined: true,
		})
		if err != nil {
			return fmt.Errorf("resolve %s: %w", s.name, err)
		}
		switch {
		case common && res.Found:
			p.symLoc[i] = loc{abs: true, v: res.Addr}
			b.symPlaced[i] = true
		case common:
			b.commons = append(b.commons, i)
		case res.Found:
			sec := &o.secs[s.shndx]
			if b.symsIn[s.shndx] > 1 {
				return bad("section %s holds %s and %d other symbols; it cannot be bound to the target's %s alone (build with -fdata-sections)", sec.name, s.name, b.symsIn[s.shndx]-1, s.name)
			}
			p.secLoc[s.shndx] = loc{abs: true, v: res.Addr - s.value}
			p.placed[s.shndx] = true
		}
	}
	return nil
}

// classifyRelocs is step 2: it looks up every relocation of the sections to be
// loaded and records the undefined symbols they need, refusing (all at once)
// the relocations the architecture or the object cannot support.
func (b *preparer) classifyRelocs() error {
	p, o, a := b.p, b.p.o, b.p.arch
	var errs []error
	for si := range o.secs {
		sec := &o.secs[si]
		if p.placed[si] {
			continue // bound to the target's copy, which is already relocated
		}
		for _, rl := range sec.relas {
			info, err := a.RelocInfo(rl.typ)
			if err != nil {
				errs = append(errs, fmt.Errorf("relocation at %s+%#x against %s: %w", sec.name, rl.off, o.symName(rl.sym), err))
				continue
			}
			sym := &o.syms[rl.sym]
			if info.TLS && rl.sym != 0 && sym.typ != elf.STT_TLS {
				errs = append(errs, bad("TLS relocation %s at %s+%#x against non-TLS symbol %s", info.Name, sec.name, rl.off, o.symName(rl.sym)))
				continue
			}
			if info.GOT {
				b.usesGOT = true
			}
			if rl.sym != 0 && !sym.defined() {
				if sym.name == gotSymbol {
					b.usesGOT = true
				} else {
					b.noteNeed(rl.sym, sec.name)
				}
			}
			if sym.defined() && sym.shndx < shnLoReserve && o.secs[sym.shndx].kind == kindSkip {
				errs = append(errs, bad("relocation %s at %s+%#x refers to %s in section %s, which is not loaded", info.Name, sec.name, rl.off, o.symName(rl.sym), o.secs[sym.shndx].name))
				continue
			}
			p.relocs = append(p.relocs, preparedReloc{sec: si, r: rl, info: info, got: -1, stub: -1, far: -1})
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return nil
}

// noteNeed records that section secName refers to undefined symbol sym, for
// resolveUndefined and for naming the referrers of a symbol it cannot find.
func (b *preparer) noteNeed(sym uint32, secName string) {
	u := b.need[sym]
	if u == nil {
		u = &undef{}
		b.need[sym] = u
		b.needOrder = append(b.needOrder, sym)
	}
	if len(u.refs) == 0 || u.refs[len(u.refs)-1] != secName {
		u.refs = append(u.refs, secName)
	}
}

// resolveUndefined is step 3: it asks the resolver for every undefined symbol
// the relocations need, reporting all the missing ones in one error.
func (b *preparer) resolveUndefined() error {
	p, o := b.p, b.p.o
	var unresolved []string
	for _, i := range b.needOrder {
		sym := &o.syms[i]
		res, err := b.r.Resolve(SymbolRef{
			Name: sym.name, File: o.file, Local: sym.bind == elf.STB_LOCAL, Weak: sym.bind == elf.STB_WEAK,
			Type: sym.typ, Size: sym.size, TLS: sym.typ == elf.STT_TLS,
		})
		if err != nil {
			return fmt.Errorf("resolve %s: %w", sym.name, err)
		}
		switch {
		case res.Found:
			p.symLoc[i] = tlsLoc(res)
		case sym.bind == elf.STB_WEAK:
			// An undefined weak symbol that nobody defines is 0 (psABI / gABI).
			p.symLoc[i] = loc{abs: true}
		default:
			unresolved = append(unresolved, fmt.Sprintf("%s (referenced from %s)", sym.name, strings.Join(b.need[i].refs, ", ")))
			continue
		}
		b.symPlaced[i] = true
	}
	if len(unresolved) > 0 {
		return fmt.Errorf("%w: %s", ErrUnresolved, strings.Join(unresolved, "; "))
	}
	return nil
}

// symAbs returns the absolute target address of symbol i, and false when it
// is not known before layout (it lies in the patch region).
func (b *preparer) symAbs(i uint32) (uint64, bool) {
	p, o := b.p, b.p.o
	s := &o.syms[i]
	switch {
	case i == 0:
		return 0, true
	case !s.defined():
		return p.symLoc[i].v, s.name != gotSymbol
	case s.shndx == elf.SHN_ABS:
		return s.value, true
	case s.shndx == elf.SHN_COMMON:
		return p.symLoc[i].v, b.symPlaced[i]
	case s.shndx < shnLoReserve && p.placed[s.shndx] && p.secLoc[s.shndx].abs:
		if s.typ == elf.STT_SECTION {
			return p.secLoc[s.shndx].v, true
		}
		return p.secLoc[s.shndx].v + s.value, true
	}
	return 0, false
}

// assignGOTAndStubs is step 4: it gives each GOT relocation its slot(s) and
// each call to a target address its far-call stub, sharing both between
// relocations with the same key or destination.
func (b *preparer) assignGOTAndStubs() {
	p := b.p
	stubIdx := map[uint64]int{}
	for k := range p.relocs {
		pr := &p.relocs[k]
		if pr.info.GOT {
			// One slot for the address or TP offset; two consecutive ones
			// (a tls_index) for general/local dynamic.
			key, slots := gotSlot{sym: pr.r.sym}, []slotKind{slotAddr}
			switch {
			case pr.info.TLSIndex == arch.TLSIndexGD:
				key.kind, slots = slotGD, []slotKind{slotModule, slotDTPOff}
			case pr.info.TLSIndex == arch.TLSIndexLD:
				key.kind, slots = slotLD, []slotKind{slotModule, slotZero}
			case pr.info.TLS:
				key.kind, slots = slotTPOff, []slotKind{slotTPOff}
			}
			idx, ok := b.gotIdx[key]
			if !ok {
				idx = len(p.got)
				b.gotIdx[key] = idx
				for _, k := range slots {
					p.got = append(p.got, gotSlot{sym: pr.r.sym, kind: k})
				}
			}
			pr.got = idx
		}
		if pr.info.Call {
			if dest, ok := b.symAbs(pr.r.sym); ok {
				idx, ok := stubIdx[dest]
				if !ok {
					idx = len(p.stubs)
					stubIdx[dest] = idx
					p.stubs = append(p.stubs, dest)
				}
				pr.stub = idx
			}
		}
	}
}

// planFarRefs is the rest of step 4: where the architecture can, it plans the
// rewrite of each data reference to a target address through a GOT slot, for
// Link to use if the direct reference does not reach.
func (b *preparer) planFarRefs() {
	p, o := b.p, b.p.o
	fp, ok := p.arch.(arch.FarRefPlanner)
	if !ok {
		return
	}
	fi := newFuncIndex(o)
	// Decoding resumes after the previous planned instruction when it
	// lies in the same function (relocations come in offset order), so
	// planning a function costs one pass over its code.
	cursor := map[int]int{} // section -> an instruction boundary
	for k := range p.relocs {
		pr := &p.relocs[k]
		if _, abs := b.symAbs(pr.r.sym); !abs || pr.r.sym == 0 || !farCandidate(o, pr) {
			continue
		}
		from := fi.start(pr.sec, pr.r.off)
		if c, ok := cursor[pr.sec]; ok && c >= from && c <= int(pr.r.off) {
			from = c
		}
		plan, err := fp.PlanFarRef(o.secs[pr.sec].data, from, int(pr.r.off), pr.r.typ, pr.r.addend)
		if err != nil || fi.othersIn(pr, plan) {
			continue // stays a direct reference (Reach)
		}
		cursor[pr.sec] = plan.Start + plan.Len
		key := gotSlot{sym: pr.r.sym, addend: plan.SlotAddend}
		idx, ok := b.gotIdx[key]
		if !ok {
			idx = len(p.got)
			b.gotIdx[key] = idx
			p.got = append(p.got, key)
		}
		b.usesGOT = true
		pr.far = len(p.fars)
		p.fars = append(p.fars, farRef{plan: plan, got: idx})
	}
}

// place reserves size bytes aligned to align at the end of the layout and
// returns their offset, noting when the region grows past maxSize.
func (b *preparer) place(size, align uint64) uint64 {
	if align > 1 {
		b.off = (b.off + align - 1) &^ (align - 1)
	}
	at := b.off
	b.off += size
	if b.off > maxSize || size > maxSize {
		b.tooBig = true
	}
	return at
}

// placeSecs places, in that order of kinds, every section of those kinds not
// yet placed (or bound) into the segment being laid out.
func (b *preparer) placeSecs(kinds ...secKind) {
	p, o := b.p, b.p.o
	for _, kind := range kinds {
		for si := range o.secs {
			if o.secs[si].kind != kind || p.placed[si] {
				continue
			}
			p.secLoc[si] = loc{v: b.place(o.secs[si].size, o.secs[si].align)}
			p.placed[si] = true
			p.secSeg[si] = len(p.segs)
		}
	}
}

// segStart starts a new segment at the next page boundary and returns its offset.
func (b *preparer) segStart() uint64 {
	b.off = (b.off + PageSize - 1) &^ (PageSize - 1)
	return b.off
}

// layOut is step 5: it lays out text (+ stubs), rodata (+ GOT), data + bss
// (+ commons), each in its own page-aligned segment, fixing the region size.
func (b *preparer) layOut() ([]span, error) {
	p := b.p
	text := b.layText()
	rodata := b.layRodata()
	data := b.layData()
	b.segStart()
	if b.tooBig {
		return nil, bad("patch needs more than %d bytes", maxSize)
	}
	p.size = b.off
	return []span{text, rodata, data}, nil
}

// layText lays out the text segment: code, then the far-call stubs and the
// far-reference stubs.
func (b *preparer) layText() span {
	p := b.p
	start := b.segStart()
	b.placeSecs(kindText)
	if len(p.stubs) > 0 {
		stubSize := uint64(len(p.arch.FarStub(0)))
		slot := (stubSize + 7) &^ 7
		for range p.stubs {
			p.stubAt = append(p.stubAt, b.place(slot, 16))
		}
	}
	for i := range p.fars {
		if n := uint64(p.fars[i].plan.StubLen); n > 0 {
			p.fars[i].stubAt = b.place(n, 16)
		}
	}
	p.segs = append(p.segs, segLayout{name: "text", off: start, prot: ProtRead | ProtExec})
	return span{start, b.off}
}

// layRodata lays out the read-only segment: read-only data, then the GOT.
func (b *preparer) layRodata() span {
	p, a := b.p, b.p.arch
	start := b.segStart()
	b.placeSecs(kindRodata)
	if b.usesGOT {
		p.gotOff = b.place(uint64(len(p.got))*uint64(a.PtrSize()), uint64(a.PtrSize()))
	}
	p.segs = append(p.segs, segLayout{name: "rodata", off: start, prot: ProtRead})
	return span{start, b.off}
}

// layData lays out the writable segment: data, bss, then the common symbols
// the target does not have.
func (b *preparer) layData() span {
	p, o := b.p, b.p.o
	start := b.segStart()
	b.placeSecs(kindData, kindBSS)
	for _, i := range b.commons {
		s := &o.syms[i]
		p.symLoc[i] = loc{v: b.place(s.size, s.value)}
		b.symPlaced[i] = true
	}
	p.segs = append(p.segs, segLayout{name: "data", off: start, prot: ProtRead | ProtWrite})
	return span{start, b.off}
}

// buildTemplates builds the segment templates (the sections' initial
// contents) from the segments' spans, and drops empty segments.
func (b *preparer) buildTemplates(spans []span) {
	p, o := b.p, b.p.o
	var segs []segLayout
	segMap := make([]int, len(p.segs))
	for i, sg := range p.segs {
		segMap[i] = -1
		sp := spans[i]
		if sp.end == sp.start {
			continue
		}
		sg.tmpl = make([]byte, sp.end-sp.start)
		segMap[i] = len(segs)
		segs = append(segs, sg)
	}
	for si := range o.secs {
		if p.secSeg[si] < 0 {
			continue
		}
		p.secSeg[si] = segMap[p.secSeg[si]]
		if p.secSeg[si] < 0 {
			continue // empty section in an empty (dropped) segment
		}
		sg := &segs[p.secSeg[si]]
		copy(sg.tmpl[p.secLoc[si].v-sg.off:], o.secs[si].data)
	}
	p.segs = segs
}

// locateSymbols gives every symbol not yet placed its location, from its
// section's (or the GOT's, or its absolute value).
func (b *preparer) locateSymbols() {
	p, o := b.p, b.p.o
	for i := 1; i < len(o.syms); i++ {
		s := &o.syms[i]
		switch {
		case b.symPlaced[i]:
		case !s.defined():
			if s.name == gotSymbol {
				p.symLoc[i] = loc{v: p.gotOff}
			}
		case s.shndx == elf.SHN_ABS:
			p.symLoc[i] = loc{abs: true, v: s.value}
		case s.shndx < shnLoReserve && p.placed[s.shndx]:
			l := p.secLoc[s.shndx]
			if s.typ != elf.STT_SECTION {
				l.v += s.value
				l.tpoff += int64(s.value)
				l.dtpoff += int64(s.value)
			}
			p.symLoc[i] = l
		}
	}
}

// placementConstraints is step 6: it collects the addresses the region must
// reach (Reach), would rather reach (Prefer), and the limit it must lie
// below (NeedsLow), from the relocations that have a narrow field.
func (b *preparer) placementConstraints() {
	p, a := b.p, b.p.arch
	reach, prefer := map[uint64]bool{}, map[uint64]bool{}
	for k := range p.relocs {
		pr := &p.relocs[k]
		if pr.info.GOT || pr.info.TLS || pr.info.Size >= a.PtrSize() || pr.info.Size == 0 || !p.inImage(pr.sec) {
			continue
		}
		l := p.symLoc[pr.r.sym]
		switch {
		case pr.far >= 0 && pr.info.PCRel:
			prefer[l.v+uint64(pr.r.addend)] = true
		case pr.far >= 0:
		case pr.info.PCRel && !pr.info.Call && l.abs && pr.r.sym != 0:
			reach[l.v+uint64(pr.r.addend)] = true
		case !pr.info.PCRel && !l.abs:
			if lim := lowLimit(a, pr); lim != 0 && (p.low == 0 || lim < p.low) {
				p.low = lim
			}
		}
	}
	for v := range reach {
		p.reach = append(p.reach, v)
	}
	sort.Slice(p.reach, func(i, j int) bool { return p.reach[i] < p.reach[j] })
	for v := range prefer {
		if !reach[v] {
			p.prefer = append(p.prefer, v)
		}
	}
	sort.Slice(p.prefer, func(i, j int) bool { return p.prefer[i] < p.prefer[j] })
}

// imageSymbols lists the symbols of the image under unique keys: globals
// first so that they keep their plain names.
func (b *preparer) imageSymbols() {
	p, o := b.p, b.p.o
	seen := map[string]bool{}
	for pass := 0; pass < 2; pass++ {
		for i := 1; i < len(o.syms); i++ {
			s := &o.syms[i]
			if (s.bind == elf.STB_LOCAL) != (pass == 1) || !s.defined() || s.name == "" ||
				(s.typ != elf.STT_FUNC && s.typ != elf.STT_OBJECT) {
				continue
			}
			if s.shndx < shnLoReserve && !p.placed[s.shndx] {
				continue
			}
			key := s.name
			if seen[key] {
				key = s.name + "@" + o.secName(s.shndx)
			}
			seen[key] = true
			p.syms = append(p.syms, imageSym{key: key, sym: i})
		}
	}
}

// bindTLS binds every thread-local variable the object defines (in .tdata
// or .tbss) to the target's variable of the same name: a variable that
// exists in every thread of the running process, which is the only way a
// patch can have thread-local storage (a new variable would need a slot in
// the static TLS block, or a module's DTV entry, of threads that already
// exist). A variable the target does not have is refused, naming it.
func (p *Prepared) bindTLS(r Resolver, symsIn []int) error {
	o := p.o
	var missing []string
	for i := 1; i < len(o.syms); i++ {
		s := &o.syms[i]
		if s.typ != elf.STT_TLS || !s.defined() {
			continue
		}
		if s.shndx >= shnLoReserve || o.secs[s.shndx].kind != kindTLS {
			return bad("thread-local symbol %s is not in a TLS section (common thread-local symbols are not supported)", s.name)
		}
		sec := &o.secs[s.shndx]
		res, err := r.Resolve(SymbolRef{
			Name: s.name, File: o.file, Local: s.bind == elf.STB_LOCAL, Weak: s.bind == elf.STB_WEAK,
			Type: s.typ, Size: s.size, Defined: true, TLS: true,
		})
		if err != nil {
			return fmt.Errorf("resolve %s: %w", s.name, err)
		}
		if !res.Found {
			missing = append(missing, s.name)
			continue
		}
		if symsIn[s.shndx] > 1 {
			return bad("section %s holds %s and %d other symbols; it cannot be bound to the target's %s alone (build with -fdata-sections)", sec.name, s.name, symsIn[s.shndx]-1, s.name)
		}
		l := tlsLoc(res)
		l.tpoff -= int64(s.value)
		l.dtpoff -= int64(s.value)
		p.secLoc[s.shndx] = l
		p.placed[s.shndx] = true
	}
	if len(missing) > 0 {
		return bad("new thread-local variable %s: the target has no such variable, and thread-local storage cannot be added to a running process (its threads' TLS blocks are already allocated); keep the variable in the target, or make it a global protected by a lock", strings.Join(missing, ", "))
	}
	for si := range o.secs {
		if o.secs[si].kind == kindTLS && !p.placed[si] && o.secs[si].size > 0 {
			return bad("section %s holds thread-local storage but no named variable the target has: it cannot be added to a running process", o.secs[si].name)
		}
	}
	return nil
}

// checkTLS refuses TLS relocations whose value the resolver could not give:
// a thread-pointer offset of a variable in a library whose block only
// __tls_get_addr knows (no initial-exec slot to learn it from), or a module
// id where the target has no DTPMOD slot to read it from.
func (p *Prepared) checkTLS() error {
	for k := range p.relocs {
		pr := &p.relocs[k]
		if !pr.info.TLS || pr.r.sym == 0 {
			continue
		}
		l := p.symLoc[pr.r.sym]
		name := p.o.symName(pr.r.sym)
		switch {
		case pr.info.TLSIndex != 0 && l.mod == 0:
			return fmt.Errorf("%w: %s at %s+%#x: the TLS module id of %s is not known (its module has no DTPMOD slot to read it from): build the patch with -ftls-model=initial-exec",
				ErrUnresolved, pr.info.Name, p.o.secs[pr.sec].name, pr.r.off, name)
		case pr.info.TLSIndex == 0 && !pr.info.DTPRel && l.noTP:
			return fmt.Errorf("%w: %s at %s+%#x: the thread-pointer offset of %s is not known (its library's TLS is reached only through __tls_get_addr): build the patch with the library's own TLS model (-fPIC, general dynamic)",
				ErrUnresolved, pr.info.Name, p.o.secs[pr.sec].name, pr.r.off, name)
		}
	}
	return nil
}

// farCandidate reports whether relocation pr is a 32-bit data reference from
// code, of the kinds an instruction rewrite may rescue when the symbol is out
// of the field's reach (PC-relative, or absolute in non-PIC code).
func farCandidate(o *Object, pr *preparedReloc) bool {
	i := pr.info
	return o.secs[pr.sec].kind == kindText && !i.GOT && !i.TLS && !i.Call && i.Size == 4
}

// funcIndex finds, per text section, the functions and the relocated places.
type funcIndex struct {
	funcs map[int][][2]uint64 // section -> [start, end) of its functions, by start
	offs  map[int][]uint64    // section -> relocation offsets, sorted
	o     *Object
}

func newFuncIndex(o *Object) *funcIndex {
	fi := &funcIndex{funcs: map[int][][2]uint64{}, offs: map[int][]uint64{}, o: o}
	for i := 1; i < len(o.syms); i++ {
		s := &o.syms[i]
		if s.typ == elf.STT_FUNC && s.defined() && s.shndx < shnLoReserve && int(s.shndx) < len(o.secs) && o.secs[s.shndx].kind == kindText {
			fi.funcs[int(s.shndx)] = append(fi.funcs[int(s.shndx)], [2]uint64{s.value, s.value + s.size})
		}
	}
	for si, fs := range fi.funcs {
		sort.Slice(fs, func(i, j int) bool { return fs[i][0] < fs[j][0] })
		fi.funcs[si] = fs
	}
	for si := range o.secs {
		if o.secs[si].kind != kindText {
			continue
		}
		var offs []uint64
		for _, r := range o.secs[si].relas {
			offs = append(offs, r.off)
		}
		sort.Slice(offs, func(i, j int) bool { return offs[i] < offs[j] })
		fi.offs[si] = offs
	}
	return fi
}

// start returns the offset in section si of the function holding off (an
// instruction boundary to decode from), 0 if no symbol says.
func (fi *funcIndex) start(si int, off uint64) int {
	fs := fi.funcs[si]
	i := sort.Search(len(fs), func(i int) bool { return fs[i][0] > off })
	for i--; i >= 0; i-- {
		if off < fs[i][1] {
			return int(fs[i][0])
		}
	}
	return 0
}

// othersIn reports whether another relocation of the section patches a byte
// of the instruction plan rewrites (the rewrite would lose it). Fields are at
// most 8 bytes.
func (fi *funcIndex) othersIn(pr *preparedReloc, plan arch.FarRef) bool {
	lo, hi := uint64(plan.Start), uint64(plan.Start+plan.Len)
	offs := fi.offs[pr.sec]
	for i := sort.Search(len(offs), func(i int) bool { return offs[i]+8 > lo }); i < len(offs) && offs[i] < hi; i++ {
		if offs[i] != pr.r.off && offs[i]+4 > lo {
			return true
		}
	}
	return false
}

// inImage reports whether section si is copied into the region (not bound to
// the target).
func (p *Prepared) inImage(si int) bool { return p.secSeg[si] >= 0 }

// lowLimit finds, by asking the arch, the smallest power of two that an
// absolute relocation cannot hold: the region must lie below it.
func lowLimit(a arch.Arch, pr *preparedReloc) uint64 {
	buf := make([]byte, pr.info.Size)
	for k := 12; k < 64; k++ {
		err := a.ApplyReloc(pr.r.typ, buf, arch.RelocValues{S: 1 << k})
		if errors.Is(err, arch.ErrRelocOverflow) {
			return 1 << k
		}
	}
	return 0
}

// recoverBad turns a panic in the linker (a case the object's validation
// missed) into an error wrapping ErrBadObject: the input is untrusted, and
// the caller may be holding a process stopped.
func recoverBad(err *error, op string) {
	if r := recover(); r != nil {
		*err = bad("%s: malformed object: %v", op, r)
	}
}
