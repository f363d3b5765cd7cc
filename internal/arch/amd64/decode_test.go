package amd64

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

func hexb(t testing.TB, s string) []byte {
	t.Helper()
	s = strings.ReplaceAll(s, " ", "")
	b := make([]byte, len(s)/2)
	for i := range b {
		v, err := strconv.ParseUint(s[2*i:2*i+2], 16, 8)
		if err != nil {
			t.Fatalf("bad hex %q: %v", s, err)
		}
		b[i] = byte(v)
	}
	return b
}

func TestDecodeOne(t *testing.T) {
	const pc = 0x1000
	tests := []struct {
		name   string
		code   string
		len    int
		kind   Kind
		target uint64
		ripRel bool
	}{
		{"nop", "90", 1, Nop, 0, false},
		{"xchg ax,ax", "6690", 2, Nop, 0, false},
		{"nopl (rax)", "0f1f00", 3, Nop, 0, false},
		{"nopl 0(rax)", "0f1f4000", 4, Nop, 0, false},
		{"nopl 0(rax,rax)", "0f1f440000", 5, Nop, 0, false},
		{"nopw 0(rax,rax)", "660f1f440000", 6, Nop, 0, false},
		{"nopl 0L(rax)", "0f1f8000000000", 7, Nop, 0, false},
		{"nopl 0L(rax,rax)", "0f1f840000000000", 8, Nop, 0, false},
		{"nopw 0L(rax,rax)", "660f1f840000000000", 9, Nop, 0, false},
		{"cs nopw", "662e0f1f840000000000", 10, Nop, 0, false},
		{"data16 cs nopw", "66662e0f1f840000000000", 11, Nop, 0, false},
		{"5x data16 cs nopw", "66666666662e0f1f840000000000", 14, Nop, 0, false},
		{"int3", "cc", 1, Int3, 0, false},
		{"int 0x80", "cd80", 2, Other, 0, false},
		{"ret", "c3", 1, Ret, 0, false},
		{"ret imm16", "c20800", 3, Ret, 0, false},
		{"rep ret", "f3c3", 2, Ret, 0, false},
		{"call rel32", "e810000000", 5, Call, pc + 5 + 0x10, false},
		{"call rel32 back", "e8fbffffff", 5, Call, pc, false},
		{"jmp rel32", "e900010000", 5, Jmp, pc + 5 + 0x100, false},
		{"jmp rel8", "ebfe", 2, Jmp, pc, false},
		{"bnd jmp", "f2e900000000", 6, Jmp, pc + 6, false},
		{"je rel8", "7405", 2, Jcc, pc + 7, false},
		{"jne rel32", "0f85f0ffffff", 6, Jcc, pc + 6 - 16, false},
		{"jrcxz", "e3fe", 2, Jcc, pc, false},
		{"loop", "e2fe", 2, Jcc, pc, false},
		{"xbegin", "c7f810000000", 6, Jcc, pc + 6 + 0x10, false},
		{"call *rax", "ffd0", 2, CallIndirect, 0, false},
		{"call *r11", "41ffd3", 3, CallIndirect, 0, false},
		{"call *rip", "ff1510000000", 6, CallIndirect, 0, true},
		{"jmp *rax", "ffe0", 2, JmpIndirect, 0, false},
		{"notrack jmp *rax", "3effe0", 3, JmpIndirect, 0, false},
		{"jmp *rip", "ff2500000000", 6, JmpIndirect, 0, true},
		{"endbr64", "f30f1efa", 4, Endbr, 0, false},
		{"endbr32", "f30f1efb", 4, Endbr, 0, false},
		{"syscall", "0f05", 2, Syscall, 0, false},
		{"sysenter", "0f34", 2, Syscall, 0, false},
		{"ud2", "0f0b", 2, Ud2, 0, false},
		{"hlt", "f4", 1, Hlt, 0, false},
		{"lea 1(rdi)", "8d4701", 3, Other, 0, false},
		{"mov rip,rax", "488b0500000000", 7, Other, 0, true},
		{"movabs", "48b88877665544332211", 10, Other, 0, false},
		{"pop (rax)", "8f00", 2, Other, 0, false},
		// Fallback decoder: CET shadow stack and friends unknown to x86asm.
		{"rdsspq", "f3480f1ec8", 5, Other, 0, false},
		{"saveprevssp", "f30f01ea", 4, Other, 0, false},
		{"rdpid", "f30fc7f8", 4, Other, 0, false},
		{"movdir64b", "660f38f800", 5, Other, 0, false},
		// VEX.
		{"vzeroupper", "c5f877", 3, Other, 0, false},
		{"vzeroall", "c5fc77", 3, Other, 0, false},
		{"vmovdqa rip,ymm0", "c5fd6f0500000000", 8, Other, 0, true},
		{"vbroadcastss rip", "c4e27d180500000000", 9, Other, 0, true},
		{"vinsertf128 imm8", "c4e37d18c101", 6, Other, 0, false},
		{"vpshufd imm8", "c5f970c11b", 5, Other, 0, false},
		{"vpslld imm8", "c5f172f003", 5, Other, 0, false},
		{"vcmpps imm8", "c5f8c2c100", 5, Other, 0, false},
		{"vpextrd imm8", "c4e37916c001", 6, Other, 0, false},
		{"vaddps sib disp32", "c5fc58848800010000", 9, Other, 0, false},
		{"vpinsrw imm8 rip", "c5f9c4050000000007", 9, Other, 0, true},
		{"fs vmovdqu", "64c5fe6f00", 5, Other, 0, false},
		{"addr32 vmovdqu", "67c5fe6f00", 5, Other, 0, false},
		// EVEX.
		{"vmovups zmm rip", "62f17c48100500000000", 10, Other, 0, true},
		{"vmovups zmm disp8", "62f17c4810442401", 8, Other, 0, false},
		{"vpcmpud imm8", "62f37d481ec901", 7, Other, 0, false},
		{"vpternlogd imm8 rip", "62f37548250d00000000ff", 11, Other, 0, true},
		{"vaddph map5", "62f57c4858c1", 6, Other, 0, false},
		// AMD XOP.
		{"vfrczps", "8fe97881c1", 5, Other, 0, false},
		{"vprotb imm8", "8fe878c0c105", 6, Other, 0, false},
		{"bextr imm32", "8fea7810c001000000", 9, Other, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code := hexb(t, tt.code)
			insns, err := Decode(code, pc)
			if err != nil {
				t.Fatalf("Decode(%s): %v", tt.code, err)
			}
			if len(insns) != 1 {
				t.Fatalf("Decode(%s) = %d instructions %+v, want 1", tt.code, len(insns), insns)
			}
			in := insns[0]
			if in.PC != pc || in.Len != tt.len || in.Kind != tt.kind || in.Target != tt.target {
				t.Errorf("Decode(%s) = %+v (kind %v), want len %d kind %v target %#x", tt.code, in, in.Kind, tt.len, tt.kind, tt.target)
			}
			_, det, err := decodeOne(code, pc)
			if err != nil {
				t.Fatal(err)
			}
			if det.ripRel != tt.ripRel {
				t.Errorf("ripRel = %v, want %v", det.ripRel, tt.ripRel)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct{ name, code string }{
		{"push es (invalid in 64-bit mode)", "06"},
		{"lone prefix", "f3"},
		{"truncated call", "e80000"},
		{"truncated VEX2", "c5"},
		{"truncated VEX3", "c4e2"},
		{"truncated VEX operand", "c5fd6f05000000"},
		{"truncated EVEX", "62f17c"},
		{"VEX map 0", "c4e07d1800"},
		{"EVEX map 4 (APX)", "62f47c4810c0"},
		{"nop then garbage", "9006"},
		{"instruction running past the end", "90e9000000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code := hexb(t, tt.code)
			_, err := Decode(code, 0x400000)
			if err == nil {
				t.Fatalf("Decode(%s) succeeded, want error", tt.code)
			}
			if !errors.Is(err, ErrDecode) {
				t.Errorf("error %v does not wrap ErrDecode", err)
			}
			if !strings.Contains(err.Error(), "offset") {
				t.Errorf("error %q does not name the offset", err)
			}
		})
	}
}

func TestDecodeSequence(t *testing.T) {
	// push rbp; mov rsp,rbp; call +0; pop rbp; ret
	code := hexb(t, "55 4889e5 e800000000 5d c3")
	insns, err := Decode(code, 0x2000)
	if err != nil {
		t.Fatal(err)
	}
	wantPC := []uint64{0x2000, 0x2001, 0x2004, 0x2009, 0x200a}
	if len(insns) != len(wantPC) {
		t.Fatalf("got %d insns, want %d", len(insns), len(wantPC))
	}
	for i, in := range insns {
		if in.PC != wantPC[i] {
			t.Errorf("insn %d at %#x, want %#x", i, in.PC, wantPC[i])
		}
	}
	if insns[2].Kind != Call || insns[2].Target != 0x2009 {
		t.Errorf("call = %+v", insns[2])
	}
}

// ---- real gcc output ----

type cfunc struct {
	name    string
	section *elf.Section
	off     uint64 // offset in section (== address in a relocatable object)
	code    []byte
	tail    []byte
	addr    uint64
}

// compile compiles testdata/src with gcc and the given flags into dir.
func compile(t testing.TB, dir, src, out string, flags ...string) string {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc not installed")
	}
	o := filepath.Join(dir, out)
	args := append(append([]string{}, flags...), "-o", o, filepath.Join("testdata", src))
	cmd := exec.Command("gcc", args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return o
}

// elfFuncs returns the functions of an ELF file with their code and the bytes
// up to the next function or the end of their section.
func elfFuncs(t testing.TB, path string) (*elf.File, []cfunc) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	syms, err := f.Symbols()
	if errors.Is(err, elf.ErrNoSymbols) {
		syms, err = f.DynamicSymbols()
	}
	if err != nil {
		t.Fatal(err)
	}
	bySect := map[elf.SectionIndex][]elf.Symbol{}
	seen := map[uint64]bool{}
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Section > 0 && int(s.Section) < len(f.Sections) && s.Size > 0 && !seen[s.Value] {
			seen[s.Value] = true
			bySect[s.Section] = append(bySect[s.Section], s)
		}
	}
	var out []cfunc
	for si, ss := range bySect {
		sec := f.Sections[si]
		data, err := sec.Data()
		if err != nil {
			t.Fatal(err)
		}
		sort.Slice(ss, func(i, j int) bool { return ss[i].Value < ss[j].Value })
		for i, s := range ss {
			off := s.Value - sec.Addr
			end := off + s.Size
			next := uint64(len(data))
			for _, n := range ss[i+1:] {
				if n.Value-sec.Addr >= end {
					next = n.Value - sec.Addr
					break
				}
			}
			out = append(out, cfunc{name: s.Name, section: sec, off: off, addr: s.Value,
				code: data[off:end], tail: data[end:next]})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].addr < out[j].addr })
	return f, out
}

var objdumpLine = regexp.MustCompile(`^\s*([0-9a-f]+):\t([0-9a-f ]+)\t`)

// objdumpStarts returns, per section name, the offsets objdump decodes
// instructions at, or nil when objdump is not installed.
func objdumpStarts(t testing.TB, path string) map[string]map[uint64]bool {
	t.Helper()
	if _, err := exec.LookPath("objdump"); err != nil {
		return nil
	}
	out, err := exec.Command("objdump", "-d", "-z", "-w", "--insn-width=16", path).Output()
	if err != nil {
		t.Fatalf("objdump: %v", err)
	}
	res := map[string]map[uint64]bool{}
	var cur map[uint64]bool
	for _, line := range strings.Split(string(out), "\n") {
		if s, ok := strings.CutPrefix(line, "Disassembly of section "); ok {
			cur = map[uint64]bool{}
			res[strings.TrimSuffix(s, ":")] = cur
			continue
		}
		if m := objdumpLine.FindStringSubmatch(line); m != nil && cur != nil {
			a, _ := strconv.ParseUint(m[1], 16, 64)
			cur[a] = true
		}
	}
	return res
}

// relocsOf returns the offsets of R_X86_64_PC32/PLT32 relocations against sec.
func relocsOf(t testing.TB, f *elf.File, sec *elf.Section) map[uint64]bool {
	res := map[uint64]bool{}
	for _, rs := range f.Sections {
		if rs.Type != elf.SHT_RELA || f.Sections[rs.Info] != sec {
			continue
		}
		data, err := rs.Data()
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+24 <= len(data); i += 24 {
			off := binary.LittleEndian.Uint64(data[i:])
			typ := elf.R_X86_64(binary.LittleEndian.Uint64(data[i+8:]) & 0xffffffff)
			if typ == elf.R_X86_64_PC32 || typ == elf.R_X86_64_PLT32 {
				res[off] = true
			}
		}
	}
	return res
}

func TestDecodeGCC(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		src     string
		flags   []string
		endbr   bool // every function starts with endbr64
		wantVEX bool
		wantEVX bool
	}{
		{"funcs.c", []string{"-O2"}, false, false, false},
		{"funcs.c", []string{"-Os"}, false, false, false},
		{"funcs.c", []string{"-O0"}, false, false, false},
		{"funcs.c", []string{"-O2", "-fcf-protection=full"}, true, false, false},
		{"funcs.c", []string{"-O3", "-mavx2", "-fcf-protection=full", "-fPIC"}, true, false, false},
		{"avx.c", []string{"-O3", "-mavx2", "-mfma"}, false, true, false},
		{"avx.c", []string{"-O3", "-mavx512f", "-mavx512bw", "-mavx512vl"}, false, true, true},
		{"avx.c", []string{"-O3", "-march=icelake-server", "-fcf-protection=full"}, true, true, true},
		{"prog.c", []string{"-O2", "-fcf-protection=full"}, true, false, false},
	}
	for i, tt := range tests {
		name := tt.src + " " + strings.Join(tt.flags, " ")
		t.Run(name, func(t *testing.T) {
			obj := compile(t, dir, tt.src, strconv.Itoa(i)+".o", append([]string{"-c"}, tt.flags...)...)
			f, funcs := elfFuncs(t, obj)
			if len(funcs) == 0 {
				t.Fatal("no functions")
			}
			starts := objdumpStarts(t, obj)
			var nvex, nevex, nrip int
			for _, fn := range funcs {
				insns, err := Decode(fn.code, fn.off)
				if err != nil {
					t.Errorf("%s: %v", fn.name, err)
					continue
				}
				last := insns[len(insns)-1]
				if last.End() != fn.off+uint64(len(fn.code)) {
					t.Errorf("%s: decoding ends at %#x, function at %#x", fn.name, last.End(), fn.off+uint64(len(fn.code)))
				}
				if tt.endbr && insns[0].Kind != Endbr {
					t.Errorf("%s: first instruction %v, want endbr", fn.name, insns[0].Kind)
				}
				if starts != nil {
					want := starts[fn.section.Name]
					got := map[uint64]bool{}
					for _, in := range insns {
						got[in.PC] = true
						if !want[in.PC] {
							t.Errorf("%s: instruction at %#x (% x) is not an objdump boundary", fn.name, in.PC, fn.code[in.PC-fn.off:in.End()-fn.off])
						}
					}
					for a := range want {
						if a >= fn.off && a < fn.off+uint64(len(fn.code)) && !got[a] {
							t.Errorf("%s: objdump has an instruction at %#x that Decode skipped", fn.name, a)
						}
					}
				}
				// VEX/EVEX operands referencing globals carry a PC32
				// relocation at the disp32 the length decoder found.
				rel := relocsOf(t, f, fn.section)
				for _, in := range insns {
					b := fn.code[in.PC-fn.off : in.End()-fn.off]
					_, det, err := decodeOne(b, in.PC)
					if err != nil {
						t.Fatal(err)
					}
					if !det.vex {
						continue
					}
					p := 0
					for isSegOrAddrPrefix(b[p]) {
						p++
					}
					if b[p] == 0x62 {
						nevex++
					} else {
						nvex++
					}
					for o := in.PC; o < in.End(); o++ {
						if rel[o] {
							nrip++
							if !det.ripRel || in.PC+uint64(det.dispOff) != o {
								t.Errorf("%s: VEX insn at %#x (% x) has a PC32 reloc at %#x, decoder says ripRel=%v dispOff=%d", fn.name, in.PC, b, o, det.ripRel, det.dispOff)
							}
						}
					}
				}
			}
			if tt.wantVEX && (nvex+nevex == 0 || nrip == 0) {
				t.Errorf("expected VEX/EVEX instructions with RIP-relative operands, got %d VEX, %d EVEX, %d rip", nvex, nevex, nrip)
			}
			if tt.wantEVX && nevex == 0 {
				t.Errorf("expected EVEX instructions")
			}
			t.Logf("%d functions, %d VEX, %d EVEX, %d RIP-relative VEX/EVEX operands", len(funcs), nvex, nevex, nrip)
		})
	}
}

func TestKindString(t *testing.T) {
	for k := Other; k <= Hlt; k++ {
		if s := k.String(); s == "" || strings.HasPrefix(s, "Kind(") {
			t.Errorf("Kind %d has no name", k)
		}
	}
	if s := Kind(200).String(); s != "Kind(200)" {
		t.Errorf("Kind(200).String() = %q", s)
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		"90", "f30f1efa554889e5e800000000c3", "c5fd6f0500000000c5f877c3",
		"62f17c48100500000000", "8fea7810c001000000", "66662e0f1f840000000000",
		"f3480f1ec8", "c4e37d18c101", "e3fe", "06", "f3",
	} {
		f.Add(hexb(f, s), uint64(0x401000))
	}
	if b, err := os.ReadFile("/bin/true"); err == nil && len(b) > 8192 {
		f.Add(b[4096:4096+512], uint64(0))
	}
	f.Fuzz(func(t *testing.T, code []byte, pc uint64) {
		insns, err := Decode(code, pc)
		if err != nil {
			if !errors.Is(err, ErrDecode) {
				t.Fatalf("error %v does not wrap ErrDecode", err)
			}
			return
		}
		next := pc
		for _, in := range insns {
			if in.PC != next || in.Len < 1 || in.Len > maxInsnLen {
				t.Fatalf("bad instruction %+v (expected pc %#x)", in, next)
			}
			next = in.End()
		}
		if next-pc != uint64(len(code)) {
			t.Fatalf("decoded %d bytes of %d", next-pc, len(code))
		}
	})
}

// TestDecodeSystemLibrary decodes every exported function of the system C
// library (hand-written assembly included: string functions in AVX2/EVEX,
// CET shadow-stack code in setjmp) and compares boundaries with objdump.
func TestDecodeSystemLibrary(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: decodes all of libc")
	}
	const libc = "/lib/x86_64-linux-gnu/libc.so.6"
	if _, err := os.Stat(libc); err != nil {
		t.Skipf("no %s", libc)
	}
	_, funcs := elfFuncs(t, libc)
	starts := objdumpStarts(t, libc)
	for _, fn := range funcs {
		insns, err := Decode(fn.code, fn.addr)
		if err != nil {
			t.Errorf("%s: %v", fn.name, err)
			continue
		}
		if starts == nil {
			continue
		}
		want := starts[fn.section.Name]
		for _, in := range insns {
			// objdump folds fwait (9b) into the x87 instruction after it
			// ("fstcw" = fwait; fnstcw); x86asm, like the CPU, treats it
			// as an instruction of its own.
			if !want[in.PC] && !(in.PC > fn.addr && fn.code[in.PC-fn.addr-1] == 0x9b) {
				t.Errorf("%s: instruction at %#x (% x) is not an objdump boundary", fn.name, in.PC, fn.code[in.PC-fn.addr:in.End()-fn.addr])
				break
			}
		}
	}
}
