package amd64

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/hotpatch/hotpatch/internal/arch"
)

func TestRelocInfo(t *testing.T) {
	tests := []struct {
		typ   elf.R_X86_64
		size  int
		got   bool
		tls   bool
		call  bool
		pcrel bool
	}{
		{elf.R_X86_64_NONE, 0, false, false, false, false},
		{elf.R_X86_64_64, 8, false, false, false, false},
		{elf.R_X86_64_PC32, 4, false, false, false, true},
		{elf.R_X86_64_PLT32, 4, false, false, true, true},
		{elf.R_X86_64_32, 4, false, false, false, false},
		{elf.R_X86_64_32S, 4, false, false, false, false},
		{elf.R_X86_64_GOTPCREL, 4, true, false, false, true},
		{elf.R_X86_64_GOTPCRELX, 4, true, false, false, true},
		{elf.R_X86_64_REX_GOTPCRELX, 4, true, false, false, true},
		{elf.R_X86_64_GOTPCREL64, 8, true, false, false, true},
		{elf.R_X86_64_GOTTPOFF, 4, true, true, false, true},
		{elf.R_X86_64_TPOFF32, 4, false, true, false, false},
		{elf.R_X86_64_TPOFF64, 8, false, true, false, false},
		{elf.R_X86_64_PC64, 8, false, false, false, true},
		{elf.R_X86_64_GOTOFF64, 8, false, false, false, false},
		{elf.R_X86_64_GOTPC32, 4, false, false, false, true},
		{elf.R_X86_64_GOTPC64, 8, false, false, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.typ.String(), func(t *testing.T) {
			info, err := Arch{}.RelocInfo(uint32(tt.typ))
			if err != nil {
				t.Fatal(err)
			}
			want := arch.RelocInfo{Name: tt.typ.String(), Size: tt.size, GOT: tt.got, TLS: tt.tls, Call: tt.call, PCRel: tt.pcrel}
			info.RelaxBefore, info.RelaxAfter = 0, 0 // TestRelaxBytes
			if info != want {
				t.Errorf("got %+v, want %+v", info, want)
			}
		})
	}
}

func TestRelocUnsupported(t *testing.T) {
	for _, typ := range []elf.R_X86_64{elf.R_X86_64_PLTOFF64, elf.R_X86_64_COPY, elf.R_X86_64_GOT32, elf.R_X86_64(999)} {
		t.Run(typ.String(), func(t *testing.T) {
			_, err := Arch{}.RelocInfo(uint32(typ))
			if !errors.Is(err, arch.ErrUnsupportedReloc) {
				t.Fatalf("RelocInfo: got %v, want ErrUnsupportedReloc", err)
			}
			if !bytes.Contains([]byte(err.Error()), []byte(typ.String())) {
				t.Errorf("error %q does not name %s", err, typ)
			}
			err = Arch{}.ApplyReloc(uint32(typ), make([]byte, 8), arch.RelocValues{})
			if !errors.Is(err, arch.ErrUnsupportedReloc) {
				t.Fatalf("ApplyReloc: got %v, want ErrUnsupportedReloc", err)
			}
		})
	}
}

func TestApplyReloc(t *testing.T) {
	const (
		p   = 0x7f0000001000
		got = 0x7f0000100000
		ent = got + 0x18
	)
	le32 := func(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
	le64 := func(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
	tests := []struct {
		name     string
		typ      elf.R_X86_64
		v        arch.RelocValues
		want     []byte // nil: expect overflow
		overflow bool
	}{
		{"64", elf.R_X86_64_64, arch.RelocValues{S: 0x1122334455667788, A: 8}, le64(0x1122334455667790), false},
		{"64 negative addend", elf.R_X86_64_64, arch.RelocValues{S: 0x1000, A: -0x2000}, le64(^uint64(0xfff)), false},
		{"PC32 forward", elf.R_X86_64_PC32, arch.RelocValues{P: p, S: p + 0x100, A: -4}, le32(0xfc), false},
		{"PC32 backward", elf.R_X86_64_PC32, arch.RelocValues{P: p, S: p - 0x100, A: -4}, le32(uint32(0x100000000 - 0x104)), false},
		{"PC32 max", elf.R_X86_64_PC32, arch.RelocValues{P: p, S: p + 0x7fffffff + 4, A: -4}, le32(0x7fffffff), false},
		{"PC32 over", elf.R_X86_64_PC32, arch.RelocValues{P: p, S: p + 0x80000000 + 4, A: -4}, nil, true},
		{"PC32 min", elf.R_X86_64_PC32, arch.RelocValues{P: p, S: p - 0x80000000 + 4, A: -4}, le32(0x80000000), false},
		{"PC32 under", elf.R_X86_64_PC32, arch.RelocValues{P: p, S: p - 0x80000001 + 4, A: -4}, nil, true},
		{"PLT32 3GiB", elf.R_X86_64_PLT32, arch.RelocValues{P: p, S: p + 3<<30, A: -4}, nil, true},
		{"PLT32", elf.R_X86_64_PLT32, arch.RelocValues{P: p, S: p + 0x20, A: -4}, le32(0x1c), false},
		{"32", elf.R_X86_64_32, arch.RelocValues{S: 0xfffffff0, A: 0xf}, le32(0xffffffff), false},
		{"32 over", elf.R_X86_64_32, arch.RelocValues{S: 0xfffffff0, A: 0x10}, nil, true},
		{"32 negative", elf.R_X86_64_32, arch.RelocValues{S: 0, A: -1}, nil, true},
		{"32S", elf.R_X86_64_32S, arch.RelocValues{S: 0x7ffffff0, A: 0xf}, le32(0x7fffffff), false},
		{"32S over", elf.R_X86_64_32S, arch.RelocValues{S: 0x7ffffff0, A: 0x10}, nil, true},
		{"32S negative", elf.R_X86_64_32S, arch.RelocValues{S: 0, A: -1}, le32(0xffffffff), false},
		{"32S kernel-style high", elf.R_X86_64_32S, arch.RelocValues{S: 0xffffffff80000000}, le32(0x80000000), false},
		{"GOTPCREL", elf.R_X86_64_GOTPCREL, arch.RelocValues{P: p, S: 0xdead, GOTEntry: ent, A: -4}, le32(uint32(ent - 4 - p)), false},
		{"GOTPCRELX", elf.R_X86_64_GOTPCRELX, arch.RelocValues{P: p, GOTEntry: ent, A: -4}, le32(uint32(ent - 4 - p)), false},
		{"REX_GOTPCRELX", elf.R_X86_64_REX_GOTPCRELX, arch.RelocValues{P: p, GOTEntry: ent, A: -4}, le32(uint32(ent - 4 - p)), false},
		{"REX_GOTPCRELX far", elf.R_X86_64_REX_GOTPCRELX, arch.RelocValues{P: p, GOTEntry: p + 1<<32, A: -4}, nil, true},
		{"GOTPCREL64", elf.R_X86_64_GOTPCREL64, arch.RelocValues{P: p, GOTEntry: p + 1<<40}, le64(1 << 40), false},
		{"GOTTPOFF", elf.R_X86_64_GOTTPOFF, arch.RelocValues{P: p, GOTEntry: ent, A: -4, TPOff: -64}, le32(uint32(ent - 4 - p)), false},
		{"TPOFF32", elf.R_X86_64_TPOFF32, arch.RelocValues{TPOff: -64, A: 4}, le32(uint32(0x100000000 - 60)), false},
		{"TPOFF32 over", elf.R_X86_64_TPOFF32, arch.RelocValues{TPOff: -1 << 40}, nil, true},
		{"TPOFF64", elf.R_X86_64_TPOFF64, arch.RelocValues{TPOff: -1 << 40}, le64(uint64(0xffffff0000000000)), false},
		{"PC64", elf.R_X86_64_PC64, arch.RelocValues{P: p, S: p - 1<<40}, le64(uint64(0xffffff0000000000)), false},
		{"GOTOFF64", elf.R_X86_64_GOTOFF64, arch.RelocValues{S: got + 0x40, A: 2, GOT: got}, le64(0x42), false},
		{"GOTPC32", elf.R_X86_64_GOTPC32, arch.RelocValues{P: p, GOT: p + 0x1000, A: 3}, le32(0x1003), false},
		{"GOTPC64", elf.R_X86_64_GOTPC64, arch.RelocValues{P: p, GOT: p - 0x1000}, le64(uint64(0xfffffffffffff000)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Surround the field with canaries to catch writes of the wrong size.
			buf := bytes.Repeat([]byte{0xaa}, 16)
			err := Arch{}.ApplyReloc(uint32(tt.typ), buf[4:], tt.v)
			if tt.overflow {
				if !errors.Is(err, arch.ErrRelocOverflow) {
					t.Fatalf("got %v, want ErrRelocOverflow", err)
				}
				if !bytes.Equal(buf, bytes.Repeat([]byte{0xaa}, 16)) {
					t.Errorf("buffer modified on overflow: % x", buf)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := buf[4 : 4+len(tt.want)]; !bytes.Equal(got, tt.want) {
				t.Errorf("field = % x, want % x", got, tt.want)
			}
			for i, b := range buf {
				if (i < 4 || i >= 4+len(tt.want)) && b != 0xaa {
					t.Errorf("byte %d outside the field modified: % x", i, buf)
					break
				}
			}
		})
	}
}

func TestApplyRelocShortPlace(t *testing.T) {
	if err := (Arch{}).ApplyReloc(uint32(elf.R_X86_64_64), make([]byte, 4), arch.RelocValues{}); err == nil {
		t.Fatal("want an error for a 4-byte place of R_X86_64_64")
	}
	if err := (Arch{}).ApplyReloc(uint32(elf.R_X86_64_NONE), nil, arch.RelocValues{}); err != nil {
		t.Fatalf("R_X86_64_NONE: %v", err)
	}
}

func TestFarStub(t *testing.T) {
	const dest = 0x123456789abcdef0
	got := Arch{}.FarStub(dest)
	want := []byte{0xff, 0x25, 0, 0, 0, 0, 0xf0, 0xde, 0xbc, 0x9a, 0x78, 0x56, 0x34, 0x12}
	if !bytes.Equal(got, want) {
		t.Fatalf("FarStub = % x, want % x", got, want)
	}
}

// TestRelaxBytes: the bytes around the field GNU ld may rewrite (a GOTTPOFF
// load, 48 8b 15, becomes "mov $tpoff, %rdx", 48 c7 c2, in a PIE: three bytes
// before the field; engine's TestDiffThreadLocal runs such a program).
func TestRelaxBytes(t *testing.T) {
	for _, tt := range []struct {
		typ           elf.R_X86_64
		before, after int
	}{
		{elf.R_X86_64_GOTPCRELX, 2, 0},
		{elf.R_X86_64_REX_GOTPCRELX, 3, 0},
		{elf.R_X86_64_GOTTPOFF, 3, 0},
		{elf.R_X86_64_TLSGD, 4, 8},
		{elf.R_X86_64_TLSLD, 3, 6},
		{elf.R_X86_64_PC32, 0, 0},
		{elf.R_X86_64_GOTPCREL, 0, 0},
	} {
		info, err := Arch{}.RelocInfo(uint32(tt.typ))
		if err != nil {
			t.Fatal(err)
		}
		if info.RelaxBefore != tt.before || info.RelaxAfter != tt.after {
			t.Errorf("%v: relax %d before, %d after; want %d, %d", tt.typ, info.RelaxBefore, info.RelaxAfter, tt.before, tt.after)
		}
	}
}
