package unlink

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
)

// The unwind tables of the kept functions: the linked file's .eh_frame
// (System V psABI, "DWARF-based unwinding"; the LSB's .eh_frame format) is
// walked record by record, and every FDE whose pc_begin (a kept relocation,
// pc-relative) refers to a kept function is copied with its CIE into the
// object's .eh_frame, pc_begin relocated against the function. Only the
// plain records GCC emits for C are copied: 32-bit lengths, a CIE with
// augmentation "zR" (or none) and pc-relative signed 4-byte pointers
// (DW_EH_PE_pcrel|DW_EH_PE_sdata4, 0x1b). A CIE with a personality routine
// or FDEs with an LSDA (C++ exception tables) are left out: the function
// then has no unwind table in the patch, as before.

// ehEntry is one FDE to copy.
type ehEntry struct {
	cie, fde []byte // the records, length fields included
	fn       *region
	addend   int64  // pc_begin's S+A relative to fn's start
	typ      uint32 // pc_begin's relocation type, as the linker kept it
}

// ehFrames returns the FDEs of kept functions with their CIEs.
func (lf *file) ehFrames() []ehEntry {
	var sec *elf.Section
	idx := -1
	for i, s := range lf.f.Sections {
		if s.Name == ".eh_frame" && s.Type != elf.SHT_NOBITS && s.Flags&elf.SHF_ALLOC != 0 {
			sec, idx = s, i
		}
	}
	if sec == nil {
		return nil
	}
	data := lf.secData(idx)
	relAt := map[uint64]lrel{}
	for _, r := range lf.allRels[idx] {
		relAt[r.p] = r
	}
	le := binary.LittleEndian
	plainCIE := map[int][]byte{} // offset -> record, for the CIEs that qualify
	var out []ehEntry
	for off := 0; off+8 <= len(data); {
		n := int(le.Uint32(data[off:]))
		if n == 0 || n == 0xffffffff || off+4+n > len(data) || n < 8 {
			break // terminator, 64-bit record or garbage: stop
		}
		rec := data[off : off+4+n]
		id := int(le.Uint32(rec[4:]))
		if id == 0 {
			if cieIsPlain(rec) {
				plainCIE[off] = rec
			}
		} else if cie, ok := plainCIE[off+4-id]; ok && len(rec) >= 16 {
			p := sec.Addr + uint64(off) + 8
			if r, ok := relAt[p]; ok && lf.bySection(r) {
				t := uint64(lf.value(r))
				if fn := lf.itemAt(t); fn != nil && fn.fn && fn.keep && t == fn.start {
					out = append(out, ehEntry{cie: cie, fde: rec, fn: fn, addend: lf.value(r) - int64(fn.start), typ: r.typ})
				}
			}
		}
		off += 4 + n
	}
	return out
}

// cieIsPlain reports whether a CIE is one ehFrames copies: version 1,
// augmentation "" or "zR" with the FDE pointer encoding 0x1b.
func cieIsPlain(rec []byte) bool {
	if len(rec) < 10 || rec[8] != 1 {
		return false
	}
	aug := rec[9:]
	end := bytes.IndexByte(aug, 0)
	if end < 0 {
		return false
	}
	switch string(aug[:end]) {
	case "":
		return true
	case "zR":
	default:
		return false
	}
	// After the augmentation string: code and data alignment (ULEB128,
	// SLEB128), the return address register (ULEB128 in version 1 is a
	// byte), the augmentation data length and the R encoding.
	p := aug[end+1:]
	skipLEB := func() bool {
		for i, c := range p {
			if c&0x80 == 0 {
				p = p[i+1:]
				return true
			}
		}
		return false
	}
	if !skipLEB() || !skipLEB() || len(p) < 1 {
		return false
	}
	p = p[1:] // return address register
	if !skipLEB() || len(p) < 1 {
		return false
	}
	return p[0] == 0x1b
}

// ehSection lays out the copied records: each FDE after its CIE (a CIE is
// copied once), the CIE pointers recomputed, pc_begin zeroed and relocated
// against the function with the type the linker kept for it.
func ehSection(entries []ehEntry) ([]byte, []lrel) {
	var out []byte
	var rels []lrel
	le := binary.LittleEndian
	cieAt := map[*byte]int{}
	for _, e := range entries {
		key := &e.cie[0]
		at, ok := cieAt[key]
		if !ok {
			at = len(out)
			cieAt[key] = at
			out = append(out, e.cie...)
		}
		fde := append([]byte(nil), e.fde...)
		pos := len(out)
		le.PutUint32(fde[4:], uint32(pos+4-at)) // CIE pointer: from this field back to the CIE
		le.PutUint32(fde[8:], 0)                // pc_begin: relocated
		out = append(out, fde...)
		rels = append(rels, lrel{p: uint64(pos + 8), typ: e.typ, to: ref{r: e.fn, addend: e.addend}})
	}
	return out, rels
}
