package amd64

import (
	"bytes"
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/hotpatch/hotpatch/internal/arch"
)

func TestEncodeJmpRel32(t *testing.T) {
	tests := []struct {
		from, to uint64
		want     string // hex, "" for ErrOutOfRange
	}{
		{0x1000, 0x1005, "e900000000"},
		{0x1000, 0x1000, "e9fbffffff"},
		{0x1000, 0x2000, "e9fb0f0000"},
		{0x401000, 0x400000, "e9fbefffff"},
		{0x1000, 0x1005 + 0x7fffffff, "e9ffffff7f"},
		{0x1000, 0x1005 + 0x80000000, ""},
		{0x80001000, 0x80001005 - 0x80000000, "e900000080"},
		{0x80001000, 0x80001004 - 0x80000000, ""},
		{0x7f0000000000, 0x400000, ""},
		{0xfffffffffffffff0, 0x10, "e91b000000"}, // wraps around the address space
	}
	for _, tt := range tests {
		got, err := EncodeJmpRel32(tt.from, tt.to)
		if tt.want == "" {
			if !errors.Is(err, arch.ErrOutOfRange) {
				t.Errorf("EncodeJmpRel32(%#x, %#x) = %x, %v; want ErrOutOfRange", tt.from, tt.to, got, err)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, hexb(t, tt.want)) {
			t.Errorf("EncodeJmpRel32(%#x, %#x) = %x, %v; want %s", tt.from, tt.to, got, err, tt.want)
			continue
		}
		// The decoder must agree on where it goes.
		insns, err := Decode(got, tt.from)
		if err != nil || len(insns) != 1 || insns[0].Kind != Jmp || insns[0].Target != tt.to {
			t.Errorf("decode of %x = %+v, %v; want jmp to %#x", got, insns, err, tt.to)
		}
	}
}

func TestEncodeJmpRel8(t *testing.T) {
	tests := []struct {
		from, to uint64
		want     string
	}{
		{0x1000, 0x1002, "eb00"},
		{0x1000, 0x1000, "ebfe"},
		{0x1000, 0x1002 + 127, "eb7f"},
		{0x1000, 0x1002 + 128, ""},
		{0x1000, 0x1002 - 128, "eb80"},
		{0x1000, 0x1002 - 129, ""},
	}
	for _, tt := range tests {
		got, err := EncodeJmpRel8(tt.from, tt.to)
		if tt.want == "" {
			if !errors.Is(err, arch.ErrOutOfRange) {
				t.Errorf("EncodeJmpRel8(%#x, %#x) = %x, %v; want ErrOutOfRange", tt.from, tt.to, got, err)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, hexb(t, tt.want)) {
			t.Errorf("EncodeJmpRel8(%#x, %#x) = %x, %v; want %s", tt.from, tt.to, got, err, tt.want)
			continue
		}
		insns, err := Decode(got, tt.from)
		if err != nil || len(insns) != 1 || insns[0].Kind != Jmp || insns[0].Target != tt.to {
			t.Errorf("decode of %x = %+v, %v; want jmp to %#x", got, insns, err, tt.to)
		}
	}
}

func TestEncodeJmpAbs(t *testing.T) {
	tests := []struct {
		to   uint64
		want string
	}{
		{0, "ff2500000000 0000000000000000"},
		{0x7f1234567890, "ff2500000000 9078563412 7f0000"},
		{0xffffffffffffffff, "ff2500000000 ffffffffffffffff"},
	}
	for _, tt := range tests {
		got := EncodeJmpAbs(tt.to)
		if !bytes.Equal(got, hexb(t, tt.want)) || len(got) != JmpAbsLen {
			t.Errorf("EncodeJmpAbs(%#x) = %x, want %s", tt.to, got, tt.want)
		}
		if in, det, err := decodeOne(got, 0x1000); err != nil || in.Kind != JmpIndirect || in.Len != 6 || !det.ripRel {
			t.Errorf("decode of %x = %+v %+v, %v; want 6-byte RIP-relative jmp*", got, in, det, err)
		}
	}
}

func TestIsEndbr64(t *testing.T) {
	tests := []struct {
		b    string
		want bool
	}{
		{"f30f1efa", true},
		{"f30f1efa554889e5", true},
		{"f30f1efb", false}, // endbr32
		{"f30f1e", false},
		{"", false},
		{"90f30f1efa", false},
	}
	for _, tt := range tests {
		if got := IsEndbr64(hexb(t, tt.b)); got != tt.want {
			t.Errorf("IsEndbr64(%s) = %v", tt.b, got)
		}
	}
	if !bytes.Equal(Nop2, []byte{0x66, 0x90}) {
		t.Errorf("Nop2 = %x", Nop2)
	}
}

// TestJumpEncodingsAssemble checks the encodings against GNU as, when installed.
func TestJumpEncodingsAssemble(t *testing.T) {
	if _, err := exec.LookPath("as"); err != nil {
		t.Skip("as not installed")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "j.s")
	// At offset 0: jmp .+0x100 (rel32), at 5: jmp .+2-2 (rel8), at 7: jmp *0(%rip); .quad
	asm := ".text\n.byte 0xe9\n.long 0x100-5\n1: jmp 1b\njmp *0(%rip)\n.quad 0x7f1234567890\nendbr64\nxchg %ax,%ax\n"
	if err := os.WriteFile(src, []byte(asm), 0o644); err != nil {
		t.Fatal(err)
	}
	obj := filepath.Join(dir, "j.o")
	if out, err := exec.Command("as", "-o", obj, src).CombinedOutput(); err != nil {
		t.Fatalf("as: %v\n%s", err, out)
	}
	f, err := elf.Open(obj)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data, err := f.Section(".text").Data()
	if err != nil {
		t.Fatal(err)
	}
	var want []byte
	j32, _ := EncodeJmpRel32(0, 0x100)
	j8, _ := EncodeJmpRel8(5, 5)
	want = append(want, j32...)
	want = append(want, j8...)
	want = append(want, EncodeJmpAbs(0x7f1234567890)...)
	want = append(want, endbr64...)
	want = append(want, Nop2...)
	if !bytes.Equal(data, want) {
		t.Errorf("as produced %x, encoders %x", data, want)
	}
}

func TestAuditArch(t *testing.T) {
	if got := (Arch{}).AuditArch(); got != 0xc000003e {
		t.Errorf("AuditArch = %#x, want AUDIT_ARCH_X86_64", got)
	}
}
