package amd64

import (
	"debug/elf"
	"strings"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// disasm decodes b (at pc) into Intel-syntax lines.
func disasm(t *testing.T, b []byte, pc uint64) []string {
	t.Helper()
	var out []string
	for len(b) > 0 {
		in, err := x86asm.Decode(b, 64)
		if err != nil {
			t.Fatalf("decode %x: %v", b, err)
		}
		out = append(out, x86asm.IntelSyntax(in, pc, nil))
		b, pc = b[in.Len:], pc+uint64(in.Len)
	}
	return out
}

func TestPlanFarRef(t *testing.T) {
	const insnAt, stubAt, slotAt = 0x1000, 0x1800, 0x2000
	cases := []struct {
		name   string
		code   []byte
		off    int
		typ    elf.R_X86_64
		a      int64
		slotA  int64
		insn   string // the replacement, joined by "; "
		stub   string // "" for an in-place rewrite
		refuse string
	}{
		{name: "load rip", code: []byte{0x48, 0x8b, 0x0d, 0, 0, 0, 0}, off: 3, typ: elf.R_X86_64_PC32, a: -4,
			insn: "jmp 0x1800; int3; int3",
			stub: "lea rsp, ptr [rsp-0x80]; push rsi; mov rsi, qword ptr [rip+0x7f3]; mov rcx, qword ptr [rsi]; pop rsi; lea rsp, ptr [rsp+0x80]; jmp 0x1007"},
		{name: "store imm rip", code: []byte{0xc7, 0x05, 0, 0, 0, 0, 5, 0, 0, 0}, off: 2, typ: elf.R_X86_64_PC32, a: -8,
			insn: "jmp 0x1800; int3; int3; int3; int3; int3",
			stub: "lea rsp, ptr [rsp-0x80]; push rsi; mov rsi, qword ptr [rip+0x7f3]; mov dword ptr [rsi], 0x5; pop rsi; lea rsp, ptr [rsp+0x80]; jmp 0x100a"},
		{name: "reg is rsi", code: []byte{0x48, 0x03, 0x35, 0, 0, 0, 0}, off: 3, typ: elf.R_X86_64_PC32, a: 4,
			insn: "jmp 0x1800; int3; int3",
			stub: "lea rsp, ptr [rsp-0x80]; push rdi; mov rdi, qword ptr [rip+0x7f3]; add rsi, qword ptr [rdi+0x8]; pop rdi; lea rsp, ptr [rsp+0x80]; jmp 0x1007"},
		{name: "lea in place", code: []byte{0x48, 0x8d, 0x35, 0, 0, 0, 0}, off: 3, typ: elf.R_X86_64_PC32, a: -4,
			insn: "mov rsi, qword ptr [rip+0xff9]"},
		{name: "movl imm", code: []byte{0xba, 0, 0, 0, 0}, off: 1, typ: elf.R_X86_64_32, a: 0,
			insn: "jmp 0x1800",
			stub: "mov rdx, qword ptr [rip+0x7f9]; jmp 0x1005"},
		{name: "movq imm in place", code: []byte{0x49, 0xc7, 0xc0, 0, 0, 0, 0}, off: 3, typ: elf.R_X86_64_32S, a: 16, slotA: 16,
			insn: "mov r8, qword ptr [rip+0xff9]"},
		{name: "sib absolute", code: []byte{0x48, 0x8b, 0x3c, 0xc5, 0, 0, 0, 0}, off: 4, typ: elf.R_X86_64_32S, a: 8,
			insn: "jmp 0x1800; int3; int3; int3",
			stub: "lea rsp, ptr [rsp-0x80]; push rsi; mov rsi, qword ptr [rip+0x7f3]; mov rdi, qword ptr [rsi+8*rax+0x8]; pop rsi; lea rsp, ptr [rsp+0x80]; jmp 0x1008"},
		{name: "vex", code: []byte{0xc5, 0xfa, 0x10, 0x05, 0, 0, 0, 0}, off: 4, typ: elf.R_X86_64_PC32, a: -4,
			insn: "jmp 0x1800; int3; int3; int3",
			stub: "lea rsp, ptr [rsp-0x80]; push rsi; mov rsi, qword ptr [rip+0x7f3]; vmovss xmm0, dword ptr [rsi]; pop rsi; lea rsp, ptr [rsp+0x80]; jmp 0x1008"},
		{name: "call through memory", code: []byte{0xff, 0x15, 0, 0, 0, 0}, off: 2, typ: elf.R_X86_64_PC32, a: -4, refuse: "call, jmp or push"},
		{name: "addr32", code: []byte{0x67, 0x8b, 0x05, 0, 0, 0, 0}, off: 3, typ: elf.R_X86_64_PC32, a: -4, refuse: "not a RIP-relative"},
		{name: "not modrm", code: []byte{0xe8, 0, 0, 0, 0}, off: 1, typ: elf.R_X86_64_PC32, a: -4, refuse: "not a RIP-relative"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Two instructions in front, to exercise the walk to the field.
			code := append([]byte{0x55, 0x48, 0x89, 0xe5}, c.code...)
			r, err := Arch{}.PlanFarRef(code, 0, 4+c.off, uint32(c.typ), c.a)
			if c.refuse != "" {
				if err == nil || !strings.Contains(err.Error(), c.refuse) {
					t.Fatalf("got %v, want a refusal mentioning %q", err, c.refuse)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Start != 4 || r.Len != len(c.code) {
				t.Fatalf("instruction at %d+%d, want 4+%d", r.Start, r.Len, len(c.code))
			}
			if c.slotA != 0 && r.SlotAddend != c.slotA {
				t.Errorf("slot addend %d, want %d", r.SlotAddend, c.slotA)
			}
			insn, stub, err := r.Encode(insnAt, stubAt, slotAt)
			if err != nil {
				t.Fatal(err)
			}
			if len(insn) != r.Len || len(stub) != r.StubLen {
				t.Fatalf("encoded %d+%d bytes, planned %d+%d", len(insn), len(stub), r.Len, r.StubLen)
			}
			if got := strings.Join(disasm(t, insn, insnAt), "; "); got != c.insn {
				t.Errorf("instruction:\n got %s\nwant %s", got, c.insn)
			}
			if c.stub != "" {
				if got := strings.Join(disasm(t, stub, stubAt), "; "); got != c.stub {
					t.Errorf("stub:\n got %s\nwant %s", got, c.stub)
				}
			}
		})
	}
}

// FuzzPlanFarRef: whatever the bytes, PlanFarRef and Encode never panic, and
// what they encode has the planned sizes.
func FuzzPlanFarRef(f *testing.F) {
	f.Add([]byte{0x48, 0x8b, 0x0d, 0, 0, 0, 0}, uint8(3), uint8(elf.R_X86_64_PC32))
	f.Add([]byte{0x48, 0x8b, 0x3c, 0xc5, 0, 0, 0, 0}, uint8(4), uint8(elf.R_X86_64_32S))
	f.Add([]byte{0xc4, 0xe2, 0x79, 0x18, 0x05, 0, 0, 0, 0}, uint8(5), uint8(elf.R_X86_64_PC32))
	f.Fuzz(func(t *testing.T, code []byte, off, typ uint8) {
		r, err := Arch{}.PlanFarRef(code, 0, int(off), uint32(typ), -4)
		if err != nil {
			return
		}
		insn, stub, err := r.Encode(0x1000, 0x2000, 0x3000)
		if err == nil && (len(insn) != r.Len || len(stub) != r.StubLen) {
			t.Fatalf("encoded %d+%d bytes, planned %d+%d", len(insn), len(stub), r.Len, r.StubLen)
		}
	})
}
