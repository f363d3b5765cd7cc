package amd64

import (
	"encoding/binary"
	"testing"
)

func TestBuildSigFrameLayout(t *testing.T) {
	le := binary.LittleEndian
	for _, tc := range []struct{ n, def int }{{832, 832}, {2696, 2696}, {11008, 2816}} {
		area := make([]byte, tc.n)
		le.PutUint64(area[fxswOffset:], 0x602e7) // XCR0 as ptrace puts it
		le.PutUint64(area[xstateBVOff:], 0x2e7)  // no tile data in use
		sp := uint64(0x7ffd12345678)
		sc := SigContext{Rax: 1, Rip: 0x401000, Rsp: sp, Cs: 0x33, Ss: 0x2b, R15: 15}
		f, err := BuildSigFrame(sp, sc, 0x4000, 0x7f0000001234, Xstate{Area: area, DefaultSize: tc.def, Dynamic: 1 << 18})
		if err != nil {
			t.Fatal(err)
		}
		if f.Addr%16 != 8 {
			t.Errorf("frame %#x not 8 mod 16", f.Addr)
		}
		end := f.Addr + uint64(len(f.Image))
		if end > sp-RedZone {
			t.Errorf("frame ends at %#x, inside the red zone below %#x", end, sp)
		}
		img := f.Image
		fp := le.Uint64(img[offMcontext+184:])
		if fp%64 != 0 || fp < f.Addr+sigframeSize || fp+uint64(tc.n)+4 != end {
			t.Errorf("fpstate %#x misplaced (frame %#x..%#x)", fp, f.Addr, end)
		}
		x := img[fp-f.Addr:]
		if le.Uint32(x[fxswOffset:]) != fpMagic1 || le.Uint32(x[fxswOffset+4:]) != uint32(tc.n+4) ||
			le.Uint64(x[fxswOffset+8:]) != 0x602e7 || le.Uint32(x[fxswOffset+16:]) != uint32(tc.def) {
			t.Errorf("sw bytes % x", x[fxswOffset:fxswOffset+24])
		}
		if le.Uint32(x[tc.n:]) != fpMagic2 || le.Uint32(x[tc.def:]) != fpMagic2 {
			t.Errorf("magic2 missing at %d or %d", tc.n, tc.def)
		}
		if le.Uint64(img[0:]) != 0x7f0000001234 || le.Uint64(img[offSigmask:]) != 0x4000 ||
			le.Uint64(img[offUcontext:]) != 7 || le.Uint32(img[offUcStack+8:]) != ssFlagsBogus {
			t.Errorf("header wrong")
		}
		mc := img[offMcontext:]
		if le.Uint64(mc[7*8:]) != 15 || le.Uint64(mc[13*8:]) != 1 || le.Uint64(mc[16*8:]) != 0x401000 ||
			le.Uint16(mc[144:]) != 0x33 || le.Uint16(mc[150:]) != 0x2b {
			t.Errorf("sigcontext wrong")
		}
	}
	// The tile data in use: the task has user_size = the full area.
	area := make([]byte, 11008)
	le.PutUint64(area[xstateBVOff:], 1<<18|3)
	f, err := BuildSigFrame(0x7ffd00010000, SigContext{}, 0, 1, Xstate{Area: area, DefaultSize: 2816, Dynamic: 1 << 18})
	if err != nil {
		t.Fatal(err)
	}
	fp := le.Uint64(f.Image[offMcontext+184:])
	x := f.Image[fp-f.Addr:]
	if le.Uint32(x[fxswOffset+16:]) != 11008 || le.Uint32(x[2816:]) == fpMagic2 {
		t.Errorf("tile data in use: magic2 must not overwrite it")
	}
	if _, err := BuildSigFrame(0x7ffd00010000, SigContext{}, 0, 1, Xstate{Area: make([]byte, 100), DefaultSize: 100}); err == nil {
		t.Error("short area accepted")
	}
}
