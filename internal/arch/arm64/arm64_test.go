package arm64

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/hotpatch/hotpatch/internal/arch"
)

func word(w uint32) []byte { return binary.LittleEndian.AppendUint32(nil, w) }

func TestArch(t *testing.T) {
	a := Arch{}
	if a.Name() != "arm64" || a.Machine() != elf.EM_AARCH64 || a.PtrSize() != 8 {
		t.Errorf("Arch = %q %v %d", a.Name(), a.Machine(), a.PtrSize())
	}
}

func TestEncodeB(t *testing.T) {
	// Expected words derived from the ARM ARM (C6.2.26 B: 000101 imm26) and
	// TestAgainstAssembler checks them against llvm-mc.
	tests := []struct {
		from, to uint64
		want     uint32
		err      error
	}{
		{0x1000, 0x1000, 0x14000000, nil},                 // b .
		{0x1000, 0x1008, 0x14000002, nil},                 // b .+8
		{0x1000, 0x0ffc, 0x17ffffff, nil},                 // b .-4
		{0x400000, 0x400000 + 0x7fffffc, 0x15ffffff, nil}, // b .+128MiB-4 (max)
		{0x8000000, 0, 0x16000000, nil},                   // b .-128MiB (min)
		{0x400000, 0x400000 + 0x8000000, 0, arch.ErrOutOfRange},
		{0x8000004, 0, 0, arch.ErrOutOfRange},
		{0x7f0000000000, 0x400000, 0, arch.ErrOutOfRange},
		{0x1000, 0x1002, 0, ErrMisaligned},
		{0x1001, 0x1004, 0, ErrMisaligned},
	}
	for _, tt := range tests {
		got, err := EncodeB(tt.from, tt.to)
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("EncodeB(%#x, %#x) = %x, %v; want %v", tt.from, tt.to, got, err, tt.err)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, word(tt.want)) {
			t.Errorf("EncodeB(%#x, %#x) = %x, %v; want %08x", tt.from, tt.to, got, err, tt.want)
			continue
		}
		// Decode it back: sign-extend imm26 and scale by 4.
		w := binary.LittleEndian.Uint32(got)
		off := int64(int32(w<<6)>>6) * 4
		if tt.from+uint64(off) != tt.to || w>>26 != 0b000101 {
			t.Errorf("EncodeB(%#x, %#x) = %08x decodes to %#x", tt.from, tt.to, w, tt.from+uint64(off))
		}
	}
}

func TestEncodeAbsJump(t *testing.T) {
	got := EncodeAbsJump(0x0000ffff12345678)
	want := append(append(word(0x58000050), word(0xd61f0200)...), 0x78, 0x56, 0x34, 0x12, 0xff, 0xff, 0, 0)
	if !bytes.Equal(got, want) || len(got) != AbsJumpLen {
		t.Errorf("EncodeAbsJump = %x, want %x", got, want)
	}
	// LDR (literal), 64-bit: opc=01 011 V=0 00 imm19 Rt.
	ldr := binary.LittleEndian.Uint32(got)
	if ldr>>24 != 0x58 || ldr&0x1f != 16 || (ldr>>5)&(1<<19-1) != 2 {
		t.Errorf("ldr word %08x: want Rt=16, imm19=2 (pc+8)", ldr)
	}
	// BR: 1101011 0 0 00 11111 0000 0 0 Rn 00000.
	br := binary.LittleEndian.Uint32(got[4:])
	if br&^(0x1f<<5) != 0xd61f0000 || (br>>5)&0x1f != 16 {
		t.Errorf("br word %08x: want BR x16", br)
	}
}

func TestIsBTI(t *testing.T) {
	tests := []struct {
		insn uint32
		want bool
	}{
		{0xd503241f, true},  // bti
		{0xd503245f, true},  // bti c
		{0xd503249f, true},  // bti j
		{0xd50324df, true},  // bti jc
		{0xd503201f, false}, // nop
		{0xd503233f, false}, // paciasp
		{0xd503237f, false}, // pacibsp
		{0xd65f03c0, false}, // ret
		{0x14000002, false}, // b .+8
		{0xd503243f, false}, // hint #33 (not BTI)
	}
	for _, tt := range tests {
		if got := IsBTI(tt.insn); got != tt.want {
			t.Errorf("IsBTI(%08x) = %v, want %v", tt.insn, got, tt.want)
		}
	}
	if IsBTI(Nop) {
		t.Error("Nop is not BTI")
	}
}

// TestAgainstAssembler assembles the same instructions with llvm-mc, when
// installed, and compares the bytes.
func TestAgainstAssembler(t *testing.T) {
	mc, err := exec.LookPath("llvm-mc")
	if err != nil {
		t.Skip("llvm-mc not installed")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "a.s")
	asm := "b .\nb .+8\nb .-4\nb .+134217724\nb .-134217728\nldr x16, .+8\nbr x16\n.quad 0x123456789abcdef0\nbti\nbti c\nbti j\nbti jc\n"
	if err := os.WriteFile(src, []byte(asm), 0o644); err != nil {
		t.Fatal(err)
	}
	obj := filepath.Join(dir, "a.o")
	if out, err := exec.Command(mc, "-triple=aarch64", "-mattr=+bti", "-filetype=obj", "-o", obj, src).CombinedOutput(); err != nil {
		t.Skipf("llvm-mc cannot assemble for aarch64: %v\n%s", err, out)
	}
	f, err := elf.Open(obj)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := f.Section(".text").Data()
	if err != nil {
		t.Fatal(err)
	}
	var want []byte
	for i, d := range []int64{0, 8, -4, 134217724, -134217728} {
		from := uint64(0x10000000 + 4*i)
		b, err := EncodeB(from, from+uint64(d))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, b...)
	}
	want = append(want, EncodeAbsJump(0x123456789abcdef0)...)
	for _, w := range []uint32{0xd503241f, 0xd503245f, 0xd503249f, 0xd50324df} {
		if !IsBTI(w) {
			t.Errorf("IsBTI(%08x) = false", w)
		}
		want = append(want, word(w)...)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("llvm-mc: %x\nencoders: %x", got, want)
	}
}
