package amd64

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"
)

func TestAnalyzeHandWritten(t *testing.T) {
	const addr = 0x1000
	tests := []struct {
		name      string
		code      string
		calls     []uint64
		sites     []uint64
		tail      []uint64
		indirect  int
		wantError bool
	}{
		{
			// call +0x10; call *rax; je out; jmp back-to-start; jmp out2; ret
			name: "mixed",
			code: "e810000000 ffd0 7405 ebf5 e900100000 c3",
			// e8 at 0: target 0x1015; ffd0 at 5; 74 05 at 7 -> 0x100e (inside);
			// eb f5 at 9 -> 0x1000 (inside); e9 at 0xb -> 0x1010+0x1000 (outside).
			calls: []uint64{0x1015}, sites: []uint64{0x1000}, tail: []uint64{0x2010}, indirect: 1,
		},
		{
			// conditional tail call: jne far; ret
			name: "conditional tail call",
			code: "0f8500000100 c3",
			tail: []uint64{0x11006},
		},
		{name: "call ff15", code: "ff1500000000 c3", indirect: 1},
		{name: "undecodable", code: "e8000000", wantError: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fi, err := Arch{}.Analyze(hexb(t, tt.code), addr)
			if tt.wantError {
				if !errors.Is(err, ErrDecode) {
					t.Fatalf("Analyze = %+v, %v; want ErrDecode", fi, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(fi.Calls, tt.calls) || !slices.Equal(fi.CallSites, tt.sites) ||
				!slices.Equal(fi.TailJumps, tt.tail) || fi.IndirectCalls != tt.indirect {
				t.Errorf("Analyze = %+v, want calls %x sites %x tail %x indirect %d", fi, tt.calls, tt.sites, tt.tail, tt.indirect)
			}
		})
	}
}

func TestFindCallsToHandWritten(t *testing.T) {
	// movabs $0x909090_00000000e8,%rax hides "e8 00000000" (a call to
	// 0x1007 for a byte scanner); the real call at 0x100a also goes to 0x1007.
	code := hexb(t, "48b8e800000000909090 e8f8ffffff c3")
	got, err := FindCallsTo(code, 0x1000, 0x1007)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []uint64{0x100a}) {
		t.Errorf("FindCallsTo = %x, want [100a]", got)
	}
	if got, err := FindCallsTo(hexb(t, "90c3"), 0, 0); err != nil || got != nil {
		t.Errorf("FindCallsTo without e8 = %v, %v", got, err)
	}
	if _, err := FindCallsTo(hexb(t, "e8000000"), 0, 0); !errors.Is(err, ErrDecode) {
		t.Errorf("FindCallsTo on truncated code: %v, want ErrDecode", err)
	}
}

// TestAnalyzeGCC links testdata/funcs.c into an executable, where direct calls
// are resolved, and checks what Analyze and FindCallsTo find in it.
func TestAnalyzeGCC(t *testing.T) {
	dir := t.TempDir()
	for _, flags := range [][]string{{"-O2"}, {"-O2", "-fcf-protection=full", "-no-pie"}, {"-Os"}} {
		t.Run(flags[len(flags)-1], func(t *testing.T) {
			exe := compile(t, dir, "funcs.c", "funcs"+filepath.Base(flags[len(flags)-1]), append(flags, filepath.Join("testdata", "funcs_main.c"))...)
			_, funcs := elfFuncs(t, exe)
			by := map[string]cfunc{}
			for _, fn := range funcs {
				by[fn.name] = fn
			}
			helper := by["helper"].addr
			if helper == 0 {
				t.Fatal("no helper")
			}
			analyze := func(name string) cfunc {
				fn, ok := by[name]
				if !ok {
					t.Fatalf("no function %s", name)
				}
				return fn
			}

			fn := analyze("calls_helper")
			fi, err := Arch{}.Analyze(fn.code, fn.addr)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(fi.Calls, []uint64{helper, helper}) {
				t.Errorf("calls_helper: Calls = %x, want helper (%#x) twice", fi.Calls, helper)
			}
			for _, s := range fi.CallSites {
				if s < fn.addr || s >= fn.addr+uint64(len(fn.code)) || fn.code[s-fn.addr] != 0xe8 {
					t.Errorf("call site %#x is not an e8 call in calls_helper", s)
				}
			}
			sites, err := FindCallsTo(fn.code, fn.addr, helper)
			if err != nil || !slices.Equal(sites, fi.CallSites) {
				t.Errorf("FindCallsTo(calls_helper, helper) = %x, %v; want %x", sites, err, fi.CallSites)
			}

			fn = analyze("tail_calls_helper")
			fi, err = Arch{}.Analyze(fn.code, fn.addr)
			if err != nil {
				t.Fatal(err)
			}
			if len(fi.Calls) != 0 || !slices.Equal(fi.TailJumps, []uint64{helper}) {
				t.Errorf("tail_calls_helper: %+v, want a tail jump to helper %#x", fi, helper)
			}

			fn = analyze("indirect")
			fi, err = Arch{}.Analyze(fn.code, fn.addr)
			if err != nil {
				t.Fatal(err)
			}
			if fi.IndirectCalls != 2 {
				t.Errorf("indirect: IndirectCalls = %d, want 2", fi.IndirectCalls)
			}

			fn = analyze("fact")
			fi, err = Arch{}.Analyze(fn.code, fn.addr)
			if err != nil {
				t.Fatal(err)
			}
			for _, tj := range fi.TailJumps {
				if tj >= fn.addr && tj < fn.addr+uint64(len(fn.code)) {
					t.Errorf("fact: internal jump %#x reported as a tail jump", tj)
				}
			}
		})
	}
}
