package amd64

import (
	"bytes"
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hotpatch/hotpatch/internal/arch"
)

func TestPlanRedirect(t *testing.T) {
	const addr = 0x401000
	near := uint64(0x402000)
	far := uint64(0x7f0000001000)
	// push rbp; mov rsp,rbp; mov edi,eax; add $1,eax; pop rbp; ret (11 bytes)
	normal := "55 4889e5 89f8 83c001 5d c3"
	tests := []struct {
		name     string
		code     string
		tail     string
		dest     uint64
		wantAddr uint64 // offset from addr
		wantKind string
		wantOrig string
		errSub   string // non-empty: refused, error contains this
	}{
		{name: "normal", code: normal, dest: near, wantAddr: 0, wantKind: "jmp rel32", wantOrig: "554889e589"},
		{name: "endbr64 kept", code: "f30f1efa" + normal, dest: near, wantAddr: 4, wantKind: "jmp rel32", wantOrig: "554889e589"},
		{name: "far dest uses abs jump", code: normal + "0f1f440000 0f1f440000", dest: far, wantKind: "jmp abs64", wantOrig: "554889e589f883c0015dc30f1f44"},
		{name: "abs jump into padding", code: normal, tail: "0f1f440000 90", dest: far, wantKind: "jmp abs64", wantOrig: "554889e589f883c0015dc30f1f44"},
		{name: "too short for abs", code: normal, tail: "", dest: far, errSub: "needs 14"},
		{name: "too short for abs, next function", code: normal, tail: "90 55", dest: far, errSub: "not padding"},
		{
			// xor eax,eax; 2: add $1,eax; cmp $16,eax; jne 2; ret
			name: "loop back-edge into window", code: "31c0 83c001 3d10000000 75f6 c3", dest: near,
			errSub: "jcc at offset 0xa targets offset 0x2",
		},
		{
			// 0: add $1,eax; cmp $16,eax; jne 0; ret: the window start is a fine target.
			name: "loop back to entry", code: "83c001 3d10000000 75f6 c3", dest: near, wantKind: "jmp rel32", wantOrig: "83c0013d10",
		},
		{
			// 0: jmp 3 (forward into the window)
			name: "forward jump into window", code: "eb01 90 31c0 c3 90", dest: near, errSub: "targets offset 0x3",
		},
		{
			// 0: je 5: lands right after a rel32 window, fine.
			name: "branch to window end", code: "7403 909090 31c0 c3", dest: near, wantKind: "jmp rel32", wantOrig: "7403909090",
		},
		{
			name: "call returns into window", code: "ffd0 4883c408 c3", dest: near, errSub: "call at offset 0x0 returns to offset 0x2",
		},
		{
			// call ends exactly at the window end: the return address stays a boundary.
			name: "call returns to window end", code: "e800000000 c3", tail: "90909090", dest: near, wantKind: "jmp rel32", wantOrig: "e800000000",
		},
		{
			// A call as the last instruction: it returns to the function end,
			// which the window would cover when extended into the padding.
			name: "noreturn call at end", code: "53 ffd0", tail: "90909090", dest: near, errSub: "returns to offset 0x3",
		},
		{name: "tiny + multi-byte nop padding", code: "8d4701 c3", tail: "662e0f1f840000000000 0f1f00", dest: near, wantKind: "jmp rel32", wantOrig: "8d4701c366"},
		{name: "tiny + 1 nop then code", code: "8d4701 c3", tail: "90 55", dest: near, wantKind: "jmp rel32", wantOrig: "8d4701c390"},
		{name: "tiny + int3 padding", code: "8d4701 c3", tail: "cccccccc", dest: near, wantKind: "jmp rel32", wantOrig: "8d4701c3cc"},
		{name: "tiny + zero padding", code: "8d4701 c3", tail: "0000", dest: near, wantKind: "jmp rel32", wantOrig: "8d4701c300"},
		{name: "tiny + next function", code: "8d4701 c3", tail: "554889e5", dest: near, errSub: "too short to redirect: it has 4 bytes"},
		{name: "tiny at section end", code: "8d4701 c3", dest: near, errSub: "needs 5"},
		{name: "endbr tiny + padding", code: "f30f1efa 8d4701 c3", tail: "0f1f8000000000", dest: near, wantAddr: 4, wantKind: "jmp rel32", wantOrig: "8d4701c30f"},
		{name: "undecodable", code: "55 06 c3", dest: near, errSub: "cannot decode"},
		{name: "empty", code: "", dest: near, errSub: "no code"},
		{name: "padding truncated", code: "8d4701 c3", tail: "0f1f", dest: near, errSub: "do not decode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fn := arch.Func{Name: "f", Addr: addr, Code: hexb(t, tt.code), Tail: hexb(t, tt.tail)}
			r, err := Arch{}.PlanRedirect(fn, tt.dest)
			if tt.errSub != "" {
				if err == nil {
					t.Fatalf("PlanRedirect = %+v, want refusal", r)
				}
				if !errors.Is(err, arch.ErrNotPatchable) {
					t.Errorf("error %v does not wrap ErrNotPatchable", err)
				}
				if !strings.Contains(err.Error(), tt.errSub) || !strings.Contains(err.Error(), "f:") {
					t.Errorf("error %q does not contain %q and the function name", err, tt.errSub)
				}
				return
			}
			if err != nil {
				t.Fatalf("PlanRedirect: %v", err)
			}
			if r.Addr != addr+tt.wantAddr || r.Kind != tt.wantKind {
				t.Errorf("Addr %#x Kind %q, want %#x %q", r.Addr, r.Kind, addr+tt.wantAddr, tt.wantKind)
			}
			if !bytes.Equal(r.Orig, hexb(t, tt.wantOrig)) {
				t.Errorf("Orig = %x, want %s", r.Orig, tt.wantOrig)
			}
			if len(r.Orig) != len(r.Jump) {
				t.Errorf("len(Orig) %d != len(Jump) %d", len(r.Orig), len(r.Jump))
			}
			// The jump decodes to a jump to dest.
			in, _, err := decodeOne(r.Jump, r.Addr)
			switch {
			case err != nil:
				t.Errorf("jump %x does not decode: %v", r.Jump, err)
			case tt.wantKind == "jmp rel32" && (in.Kind != Jmp || in.Target != tt.dest):
				t.Errorf("jump %x = %+v, want jmp to %#x", r.Jump, in, tt.dest)
			case tt.wantKind == "jmp abs64" && !bytes.Equal(r.Jump, EncodeJmpAbs(tt.dest)):
				t.Errorf("jump %x, want %x", r.Jump, EncodeJmpAbs(tt.dest))
			}
			// Orig is a copy.
			if len(r.Orig) > 0 && len(fn.Code) > 0 {
				r.Orig[0] ^= 0xff
				if fn.Code[tt.wantAddr] == r.Orig[0] {
					t.Errorf("Orig aliases fn.Code")
				}
			}
		})
	}
}

// TestRedirectRealProgram compiles testdata/prog.c, redirects functions of the
// executable file as planned by PlanRedirect (writing Jump over Orig in a copy
// of the file), and runs it: the redirected calls must reach the fixed
// functions.
func TestRedirectRealProgram(t *testing.T) {
	dir := t.TempDir()
	type redirect struct {
		from, to string
		abs      bool   // force the 14-byte absolute jump
		errSub   string // planning must be refused
	}
	tests := []struct {
		name  string
		flags []string
		redir []redirect
		want  string
	}{
		{"none", []string{"-O2"}, nil, "6 9\n"},
		{"rel32 pie", []string{"-O2", "-pie", "-fPIE"}, []redirect{{from: "tiny", to: "tiny_fixed"}, {from: "work", to: "work_fixed"}}, "1005 -5\n"},
		{"rel32 endbr", []string{"-O2", "-fcf-protection=full"}, []redirect{{from: "tiny", to: "tiny_fixed"}, {from: "work", to: "work_fixed"}}, "1005 -5\n"},
		{"abs no-pie", []string{"-O2", "-no-pie"}, []redirect{{from: "tiny", to: "tiny_fixed", abs: true}, {from: "work", to: "work_fixed", abs: true}}, "1005 -5\n"},
		{"abs endbr tiny too short", []string{"-O2", "-no-pie", "-fcf-protection=full"}, []redirect{{from: "tiny", to: "tiny_fixed", abs: true, errSub: "needs 14"}, {from: "work", to: "work_fixed", abs: true}}, "6 -5\n"},
		{"Os", []string{"-Os"}, []redirect{{from: "work", to: "work_fixed"}}, "6 -5\n"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exe := compile(t, dir, "prog.c", "prog"+string(rune('a'+i)), tt.flags...)
			f, funcs := elfFuncs(t, exe)
			byName := map[string]cfunc{}
			for _, fn := range funcs {
				byName[fn.name] = fn
			}
			img, err := os.ReadFile(exe)
			if err != nil {
				t.Fatal(err)
			}
			for _, rd := range tt.redir {
				from, ok1 := byName[rd.from]
				to, ok2 := byName[rd.to]
				if !ok1 || !ok2 {
					t.Fatalf("symbols %s/%s not found", rd.from, rd.to)
				}
				fn := arch.Func{Name: rd.from, Addr: from.addr, Code: from.code, Tail: from.tail}
				r, err := planRedirect(fn, to.addr, rd.abs)
				if rd.errSub != "" {
					if !errors.Is(err, arch.ErrNotPatchable) || !strings.Contains(err.Error(), rd.errSub) {
						t.Fatalf("redirect %s: %v, want refusal containing %q", rd.from, err, rd.errSub)
					}
					t.Logf("refused as expected: %v", err)
					continue
				}
				if err != nil {
					t.Fatalf("redirect %s: %v", rd.from, err)
				}
				t.Logf("%s: %s at %#x, %x -> %x", rd.from, r.Kind, r.Addr, r.Orig, r.Jump)
				off := fileOffset(t, f, r.Addr)
				if !bytes.Equal(img[off:off+uint64(len(r.Orig))], r.Orig) {
					t.Fatalf("Orig %x does not match the file %x", r.Orig, img[off:off+uint64(len(r.Orig))])
				}
				copy(img[off:], r.Jump)
			}
			patched := filepath.Join(dir, filepath.Base(exe)+".patched")
			if err := os.WriteFile(patched, img, 0o755); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(patched, "5").CombinedOutput()
			if err != nil {
				t.Fatalf("run patched program: %v\n%s", err, out)
			}
			if string(out) != tt.want {
				t.Errorf("patched program printed %q, want %q", out, tt.want)
			}
		})
	}
}

func fileOffset(t *testing.T, f *elf.File, a uint64) uint64 {
	t.Helper()
	for _, s := range f.Sections {
		if s.Type == elf.SHT_PROGBITS && a >= s.Addr && a < s.Addr+s.Size {
			return a - s.Addr + s.Offset
		}
	}
	t.Fatalf("address %#x not in any section", a)
	return 0
}

func FuzzPlanRedirect(f *testing.F) {
	f.Add(hexb(f, "554889e589f883c0015dc3"), []byte{}, uint64(0x402000))
	f.Add(hexb(f, "f30f1efa8d4701c3"), hexb(f, "0f1f8000000000"), uint64(0x402000))
	f.Add(hexb(f, "31c083c0013d1000000075f6c3"), []byte{}, uint64(0x7f0000000000))
	f.Add(hexb(f, "8d4701c3"), hexb(f, "554889e5"), uint64(0))
	f.Fuzz(func(t *testing.T, code, tail []byte, dest uint64) {
		const addr = 0x401000
		fn := arch.Func{Name: "f", Addr: addr, Code: code, Tail: tail}
		r, err := Arch{}.PlanRedirect(fn, dest)
		if err != nil {
			if !errors.Is(err, arch.ErrNotPatchable) {
				t.Fatalf("error %v does not wrap ErrNotPatchable", err)
			}
			return
		}
		if len(r.Orig) != len(r.Jump) || r.Addr < addr || r.Addr+uint64(len(r.Jump)) > addr+uint64(len(code)+len(tail)) {
			t.Fatalf("bad plan %+v for code %x tail %x", r, code, tail)
		}
		all := append(append([]byte{}, code...), tail...)
		if !bytes.Equal(all[r.Addr-addr:r.Addr-addr+uint64(len(r.Orig))], r.Orig) {
			t.Fatalf("Orig %x does not match the code", r.Orig)
		}
	})
}

func TestPaddingLen(t *testing.T) {
	tests := []struct {
		b    string
		want int
	}{
		{"", 0},
		{"90", 1},
		{"cccc", 2},
		{"000000", 3},
		{"66662e0f1f840000000000 0f1f00", 14},
		{"6690 0f1f4000 90 55", 7},
		{"55", 0},
		{"0f1f", 0}, // truncated nop
		{"662e0f1f840000000000 c3", 10},
	}
	for _, tt := range tests {
		if got := PaddingLen(hexb(t, tt.b)); got != tt.want {
			t.Errorf("PaddingLen(%s) = %d, want %d", tt.b, got, tt.want)
		}
	}
}
