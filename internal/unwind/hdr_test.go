package unwind

import (
	"debug/elf"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/go-delve/delve/pkg/dwarf/frame"
)

// parseWhole parses f's .eh_frame whole, as Parse does without .eh_frame_hdr.
func parseWhole(t *testing.T, f *elf.File) frame.FrameDescriptionEntries {
	t.Helper()
	s := f.Section(".eh_frame")
	data, err := s.Data()
	if err != nil {
		t.Fatal(err)
	}
	fdes, err := frame.Parse(data, f.ByteOrder, 0, 8, s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	return fdes
}

// TestHdrMatchesWholeParse: for every FDE of a file, at its first, middle
// and last byte, the FDE found through .eh_frame_hdr is the one the whole
// parse has, and gives the same unwinding rules.
func TestHdrMatchesWholeParse(t *testing.T) {
	files := []string{"/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"}
	if _, err := exec.LookPath("gcc"); err == nil {
		dir := t.TempDir()
		exe := filepath.Join(dir, "chain")
		if out, err := exec.Command("gcc", "-O2", "-g", "-fomit-frame-pointer", "-o", exe, filepath.Join("testdata", "chain.c")).CombinedOutput(); err != nil {
			t.Fatalf("gcc: %v\n%s", err, out)
		}
		files = append(files, exe)
	}
	for _, path := range files {
		if _, err := os.Stat(path); err != nil {
			continue
		}
		t.Run(filepath.Base(path), func(t *testing.T) {
			f, err := elf.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			tab, err := Parse(f)
			if err != nil {
				t.Fatal(err)
			}
			if tab.hdr == nil {
				t.Fatal("no .eh_frame_hdr index")
			}
			whole := parseWhole(t, f)
			if tab.Len() != len(whole) {
				t.Errorf("%d FDEs through the header, %d parsed whole", tab.Len(), len(whole))
			}
			for _, w := range whole {
				if w.End() == w.Begin() {
					continue
				}
				for _, pc := range []uint64{w.Begin(), w.Begin() + (w.End()-w.Begin())/2, w.End() - 1} {
					got, err := tab.fdeForPC(pc)
					if err != nil {
						t.Fatalf("pc %#x (FDE %#x-%#x): %v", pc, w.Begin(), w.End(), err)
					}
					if got.Begin() != w.Begin() || got.End() != w.End() {
						t.Fatalf("pc %#x: FDE %#x-%#x, want %#x-%#x", pc, got.Begin(), got.End(), w.Begin(), w.End())
					}
					gc, gerr := establish(got, pc)
					wc, werr := establish(w, pc)
					if (gerr != nil) != (werr != nil) || (gerr == nil && (!reflect.DeepEqual(gc.CFA, wc.CFA) || !reflect.DeepEqual(gc.Regs, wc.Regs))) {
						t.Fatalf("pc %#x: rules differ: %+v %v / %+v %v", pc, gc, gerr, wc, werr)
					}
				}
			}
			if _, err := tab.fdeForPC(0); err == nil {
				t.Error("an FDE for pc 0")
			}
			t.Logf("%d FDEs checked", len(whole))
		})
	}
}

// FuzzParseHdr feeds hostile .eh_frame_hdr and .eh_frame contents through the
// index and lookups: errors, never panics.
func FuzzParseHdr(f *testing.F) {
	if lib, err := elf.Open("/lib64/ld-linux-x86-64.so.2"); err == nil {
		h, s := lib.Section(".eh_frame_hdr"), lib.Section(".eh_frame")
		hd, _ := h.Data()
		ed, _ := s.Data()
		f.Add(hd, ed, h.Addr, s.Addr, s.Addr+0x100)
		lib.Close()
	}
	f.Fuzz(func(t *testing.T, hdr, eh []byte, hdrAddr, ehAddr, pc uint64) {
		x, err := parseHdr(hdr, hdrAddr, eh, ehAddr, 8, binary.LittleEndian)
		if err != nil || x == nil {
			return
		}
		for _, p := range append([]uint64{pc}, x.locs[:min(len(x.locs), 8)]...) {
			if fde, err := x.lookup(p); err == nil {
				establish(fde, p)
			}
		}
	})
}

const libcPath = "/usr/lib/x86_64-linux-gnu/libc.so.6"

// BenchmarkParseLibc measures what a fresh `hotpatch apply` pays for the C
// library's call frame information before the stop: with .eh_frame_hdr, the
// search table only; "whole", every FDE (as before the index).
func BenchmarkParseLibc(b *testing.B) {
	f, err := elf.Open(libcPath)
	if err != nil {
		b.Skip(err)
	}
	defer f.Close()
	b.Run("hdr", func(b *testing.B) {
		for b.Loop() {
			if _, err := Parse(f); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("whole", func(b *testing.B) {
		s := f.Section(".eh_frame")
		for b.Loop() {
			data, _ := s.Data()
			if _, err := frame.Parse(data, f.ByteOrder, 0, 8, s.Addr); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkFirstLookup measures the cost the index moves into the stop
// window: the first lookup of an FDE (parse its CIE and itself), per lookup.
func BenchmarkFirstLookup(b *testing.B) {
	f, err := elf.Open(libcPath)
	if err != nil {
		b.Skip(err)
	}
	defer f.Close()
	tab, err := Parse(f)
	if err != nil || tab.hdr == nil {
		b.Fatal(err)
	}
	x := tab.hdr
	n := 0
	for b.Loop() {
		i := n % len(x.locs)
		n += 97
		x.mu.Lock()
		clear(x.parsed)
		x.mu.Unlock()
		if _, err := x.lookup(x.locs[i]); err != nil {
			b.Fatal(err)
		}
	}
}
