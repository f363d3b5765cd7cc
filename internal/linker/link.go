package linker

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/hotpatch/hotpatch/internal/arch"
)

// Segment is one page-aligned part of the patch region.
type Segment struct {
	// Offset is the segment's offset from the region base (page-aligned).
	Offset uint64
	// Data is the segment's full contents, bss zero-filled.
	Data []byte
	// Prot is the protection the segment needs (ProtRead, ProtWrite, ProtExec:
	// Linux PROT_* values).
	Prot int
	// Name is "text", "rodata" or "data".
	Name string
}

// Image is a patch linked for one base address.
type Image struct {
	Base     uint64
	Size     uint64
	Segments []Segment
	// Symbols maps the object's defined functions and data objects to their
	// run-time addresses (for objects bound to the target, the target's copy).
	// Local symbols are keyed by name too; when a name is taken the key is
	// "name@section".
	Symbols map[string]uint64
	// EHFrame is the run-time address of the patch's .eh_frame (terminated,
	// ready for __register_frame), 0 when the object has none. The
	// EHFrameHeader bytes before it hold the marker (EHFrameMagic).
	EHFrame uint64
}

// Link applies every relocation for a region starting at base (a multiple of
// PageSize). It is pure arithmetic and may be called several times with
// different bases. A relocation whose value does not fit yields an error
// wrapping arch.ErrRelocOverflow; see Reach and NeedsLow for where the region
// may be placed.
func (p *Prepared) Link(base uint64) (_ *Image, err error) {
	defer recoverBad(&err, "link")
	if base%PageSize != 0 {
		return nil, fmt.Errorf("link at %#x: base is not page-aligned", base)
	}
	if base+p.size < base {
		return nil, fmt.Errorf("link at %#x: region of %#x bytes wraps around the address space", base, p.size)
	}
	img := p.newImage(base)
	for i, dest := range p.stubs {
		copy(img.bytesAt(p.stubAt[i]), p.arch.FarStub(dest))
	}
	p.fillGOT(img)
	for k := range p.relocs {
		if err := p.relocate(img, &p.relocs[k]); err != nil {
			return nil, err
		}
	}
	for _, s := range p.syms {
		img.Symbols[s.key] = p.symLoc[s.sym].addr(base)
	}
	if e := p.o.ehFrame; e >= 0 && p.inImage(e) {
		img.EHFrame = p.secLoc[e].addr(base) + EHFrameHeader
	}
	return img, nil
}

// newImage returns the image at base with a fresh copy of each segment's
// template.
func (p *Prepared) newImage(base uint64) *Image {
	img := &Image{Base: base, Size: p.size, Symbols: make(map[string]uint64, len(p.syms))}
	for _, sg := range p.segs {
		img.Segments = append(img.Segments, Segment{
			Offset: sg.off,
			Data:   append([]byte(nil), sg.tmpl...),
			Prot:   sg.prot,
			Name:   sg.name,
		})
	}
	return img
}

// bytesAt returns the image bytes at region offset off.
func (img *Image) bytesAt(off uint64) []byte {
	for i := range img.Segments {
		sg := &img.Segments[i]
		if off >= sg.Offset && off-sg.Offset < uint64(len(sg.Data)) {
			return sg.Data[off-sg.Offset:]
		}
	}
	panic(fmt.Sprintf("linker: offset %#x outside every segment", off)) // layout bug
}

// fillGOT writes the value of every slot of the patch's GOT.
func (p *Prepared) fillGOT(img *Image) {
	ptr := uint64(p.arch.PtrSize())
	for i, slot := range p.got {
		l := p.symLoc[slot.sym]
		var v uint64
		switch slot.kind {
		case slotAddr:
			v = l.addr(img.Base) + uint64(slot.addend)
		case slotTPOff:
			v = uint64(l.tpoff)
		case slotModule:
			v = l.mod
		case slotDTPOff:
			v = uint64(l.dtpoff)
		}
		b := img.bytesAt(p.gotOff + uint64(i)*ptr)
		if ptr == 4 {
			binary.LittleEndian.PutUint32(b, uint32(v))
		} else {
			binary.LittleEndian.PutUint64(b, v)
		}
	}
}

// relocate applies relocation pr, through its far stub or far-data rewrite
// when its destination is out of the field's reach.
func (p *Prepared) relocate(img *Image, pr *preparedReloc) error {
	a, base := p.arch, img.Base
	gotAddr := base + p.gotOff
	sec := &p.o.secs[pr.sec]
	off := p.secLoc[pr.sec].v + pr.r.off
	l := p.symLoc[pr.r.sym]
	v := arch.RelocValues{
		P:      base + off,
		S:      l.addr(base),
		A:      pr.r.addend,
		GOT:    gotAddr,
		TPOff:  l.tpoff,
		DTPOff: l.dtpoff,
	}
	if pr.got >= 0 {
		v.GOTEntry = gotAddr + uint64(pr.got)*uint64(a.PtrSize())
	}
	place := img.bytesAt(off)
	err := a.ApplyReloc(pr.r.typ, place, v)
	if pr.stub >= 0 && errors.Is(err, arch.ErrRelocOverflow) {
		// Out of direct reach: call the far stub instead, which jumps to
		// the destination. The stub takes the symbol's place (S); the
		// addend is the usual call bias (-4 on x86-64, 0 on arm64), so
		// the call lands on the stub's first byte.
		v.S = base + p.stubAt[pr.stub]
		err = a.ApplyReloc(pr.r.typ, place, v)
	}
	if pr.far >= 0 && errors.Is(err, arch.ErrRelocOverflow) {
		// The data symbol is out of the field's reach from this base:
		// rewrite the instruction to take its address from the GOT.
		err = p.writeFar(pr, base, img.bytesAt, gotAddr)
	}
	if err != nil {
		return fmt.Errorf("link at %#x: relocation at %s+%#x against %s: %w", base, sec.name, pr.r.off, p.o.symName(pr.r.sym), err)
	}
	return nil
}

// writeFar applies a far-data rewrite (arch.FarRef) of the instruction of
// relocation pr's instruction: the instruction's replacement in place and,
// if the plan has one, its stub.
func (p *Prepared) writeFar(pr *preparedReloc, base uint64, bytesAt func(uint64) []byte, gotAddr uint64) error {
	f := &p.fars[pr.far]
	at := p.secLoc[pr.sec].v + uint64(f.plan.Start)
	slot := gotAddr + uint64(f.got)*uint64(p.arch.PtrSize())
	code, stub, err := f.plan.Encode(base+at, base+f.stubAt, slot)
	if err != nil {
		return err
	}
	if len(code) != f.plan.Len || len(stub) != f.plan.StubLen {
		return fmt.Errorf("internal error: far-data rewrite of %d+%d bytes, planned %d+%d", len(code), len(stub), f.plan.Len, f.plan.StubLen)
	}
	copy(bytesAt(at), code)
	if len(stub) > 0 {
		copy(bytesAt(f.stubAt), stub)
	}
	return nil
}
