package unwind

import (
	"encoding/binary"
	"fmt"
	"sort"
	"sync"

	"github.com/go-delve/delve/pkg/dwarf/frame"
)

// Frame description entries found through .eh_frame_hdr.
//
// Parsing the whole .eh_frame of the C library (thousands of FDEs) took most
// of a fresh `hotpatch apply`'s CPU once the symbols were looked up by hash
// (BenchmarkPrepare), while a stack walk needs the FDEs of a few dozen
// functions. The linker's .eh_frame_hdr (LSB, "Exception Frames",
// PT_GNU_EH_FRAME) holds a table of (initial location, FDE address) pairs
// sorted by location, for exactly this binary search. Parse keeps that table
// (a copy of its words, nothing decoded) and an FDE is parsed the first time
// a walk needs it, then kept. The walk runs with the process stopped, so a
// first lookup costs the window one CIE and one FDE parse, microseconds;
// later walks of the same sites cost nothing more (Unwinder.rules).

// Pointer encodings (DW_EH_PE_*, LSB "DWARF Extensions").
const (
	pePcrel   = 0x10
	peDatarel = 0x30
	peSdata4  = 0x0b
	peUdata4  = 0x03
	peOmit    = 0xff
)

// hdrIndex is the lazily parsed .eh_frame of one file.
type hdrIndex struct {
	eh     []byte // .eh_frame
	ehAddr uint64 // its link-time address
	ptr    int
	order  binary.ByteOrder
	locs   []uint64 // initial locations, sorted
	fdes   []uint64 // offsets in eh of the FDEs, parallel to locs

	mu     sync.Mutex
	parsed map[uint64]*frame.FrameDescriptionEntry // by offset in eh
}

// parseHdr reads the search table of .eh_frame_hdr (contents hdr at hdrAddr)
// for the .eh_frame at ehAddr. It returns nil, nil when the table is absent
// or uses an encoding other than the one GNU ld and lld write (datarel sdata4
// pairs), which leaves the caller to parse .eh_frame whole.
func parseHdr(hdr []byte, hdrAddr uint64, eh []byte, ehAddr uint64, ptr int, order binary.ByteOrder) (*hdrIndex, error) {
	if len(hdr) < 4 || hdr[0] != 1 {
		return nil, nil
	}
	ptrEnc, cntEnc, tabEnc := hdr[1], hdr[2], hdr[3]
	if tabEnc != peDatarel|peSdata4 || cntEnc == peOmit || (cntEnc&0x0f != peUdata4 && cntEnc&0x0f != peSdata4) {
		return nil, nil
	}
	off := uint64(4)
	// eh_frame_ptr, then fde_count; only 4-byte encodings are accepted.
	if ptrEnc&0x0f != peSdata4 || len(hdr) < 12 {
		return nil, nil
	}
	ehPtr := uint64(int64(int32(order.Uint32(hdr[off:]))))
	switch ptrEnc & 0x70 {
	case pePcrel:
		ehPtr += hdrAddr + off
	case peDatarel:
		ehPtr += hdrAddr
	case 0:
	default:
		return nil, nil
	}
	if ehPtr != ehAddr {
		return nil, nil // the table describes some other .eh_frame
	}
	count := uint64(order.Uint32(hdr[off+4:]))
	off += 8
	if count > uint64(len(hdr)) || off+count*8 > uint64(len(hdr)) {
		return nil, fmt.Errorf(".eh_frame_hdr: %d entries in %d bytes", count, len(hdr))
	}
	x := &hdrIndex{eh: eh, ehAddr: ehAddr, ptr: ptr, order: order,
		locs: make([]uint64, count), fdes: make([]uint64, count), parsed: map[uint64]*frame.FrameDescriptionEntry{}}
	for i := range count {
		e := hdr[off+i*8:]
		x.locs[i] = hdrAddr + uint64(int64(int32(order.Uint32(e))))
		fa := hdrAddr + uint64(int64(int32(order.Uint32(e[4:]))))
		if fa < ehAddr || fa-ehAddr >= uint64(len(eh)) || (i > 0 && x.locs[i] < x.locs[i-1]) {
			return nil, fmt.Errorf(".eh_frame_hdr: entry %d (FDE at %#x) out of .eh_frame or out of order", i, fa)
		}
		x.fdes[i] = fa - ehAddr
	}
	return x, nil
}

// lookup returns the FDE covering pc, parsing it on first use.
func (x *hdrIndex) lookup(pc uint64) (fde *frame.FrameDescriptionEntry, err error) {
	defer func() {
		if r := recover(); r != nil {
			fde, err = nil, fmt.Errorf("parse FDE for %#x: %v", pc, r)
		}
	}()
	i := sort.Search(len(x.locs), func(i int) bool { return x.locs[i] > pc }) - 1
	if i < 0 {
		return nil, &frame.ErrNoFDEForPC{PC: pc}
	}
	off := x.fdes[i]
	x.mu.Lock()
	defer x.mu.Unlock()
	fde, ok := x.parsed[off]
	if !ok {
		if fde, err = x.parseFDE(off); err != nil {
			return nil, err
		}
		x.parsed[off] = fde
	}
	if !fde.Cover(pc) {
		return nil, &frame.ErrNoFDEForPC{PC: pc}
	}
	return fde, nil
}

// parseFDE parses the FDE at offset off of .eh_frame with its CIE, by
// handing frame.Parse a buffer holding just the two: the CIE, then the FDE
// with its CIE pointer rewritten to point back to the start of the buffer.
// frame.Parse computes a pc-relative address from the position in its input
// plus the address it is told the input lies at; that address is chosen so
// that the FDE's fields land at their real addresses (the CIE's own
// pc-relative fields, the personality routine, come out wrong, and the walk
// never uses them).
func (x *hdrIndex) parseFDE(off uint64) (*frame.FrameDescriptionEntry, error) {
	ent := func(at uint64) ([]byte, error) {
		if at+8 > uint64(len(x.eh)) {
			return nil, fmt.Errorf("entry at %#x of .eh_frame out of bounds", at)
		}
		n := uint64(x.order.Uint32(x.eh[at:]))
		if n == 0xffffffff || n < 4 || at+4+n > uint64(len(x.eh)) {
			return nil, fmt.Errorf("entry at %#x of .eh_frame: bad length %#x", at, n)
		}
		return x.eh[at : at+4+n], nil
	}
	fdeb, err := ent(off)
	if err != nil {
		return nil, err
	}
	ciePtr := uint64(x.order.Uint32(fdeb[4:]))
	if ciePtr == 0 || ciePtr > off+4 {
		return nil, fmt.Errorf("FDE at %#x of .eh_frame: bad CIE pointer %#x", off, ciePtr)
	}
	cieb, err := ent(off + 4 - ciePtr)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 0, len(cieb)+len(fdeb))
	buf = append(buf, cieb...)
	buf = append(buf, fdeb...)
	x.order.PutUint32(buf[len(cieb)+4:], uint32(len(cieb)+4))
	base := x.ehAddr + off - uint64(len(cieb))
	if base == 0 || base > x.ehAddr+off {
		return nil, fmt.Errorf("FDE at %#x of .eh_frame: no address to parse it at", off)
	}
	fdes, err := frame.Parse(buf, x.order, 0, x.ptr, base)
	if err != nil {
		return nil, fmt.Errorf("parse FDE at %#x of .eh_frame: %w", off, err)
	}
	if len(fdes) != 1 {
		return nil, fmt.Errorf("FDE at %#x of .eh_frame: %d entries parsed", off, len(fdes))
	}
	return fdes[0], nil
}
