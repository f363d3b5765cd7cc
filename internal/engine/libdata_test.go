package engine

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/linker"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// TestLibraryDataNeverUsed patches greet() (testdata/diff/libdata) with code
// that reads stderr, stdout, environ and timezone and writes optind and
// another library's exported global, library data the target never used (so
// the executable has no copy of it), while still using the target's own
// static: in a PIE, a non-PIE executable and a shared library,
// in by-name and diff mode. The process must print through both streams,
// optind must hold what the new code stored, the static must carry over,
// and the redirect must stay a 5-byte jump (the region near the code).
func TestLibraryDataNeverUsed(t *testing.T) {
	setup(t)
	O2 := []string{"-O2", "-g", "-flive-patching=inline-clone"}
	src := func(v string) string { return filepath.Join("testdata", "diff", "libdata", v, "prog.c") }
	mainSrc := filepath.Join("testdata", "libdata_main.c")
	dataLib := ccompile(t, filepath.Join(t.TempDir(), "libdata.so"), filepath.Join("testdata", "libdata_lib.c"), "-shared", "-fPIC", "-O2")
	// The program is linked with the library but never refers to its data.
	linkLib := []string{"-Wl,--no-as-needed", dataLib, "-Wl,-rpath," + filepath.Dir(dataLib)}
	for _, c := range []struct {
		name          string
		cflags, ldflg []string
		lib           bool
	}{
		{"pie", []string{"-fPIE"}, []string{"-pie"}, false},
		{"nopie", []string{"-fno-pie"}, []string{"-no-pie"}, false},
		{"library", []string{"-fPIC"}, nil, true},
	} {
		d := t.TempDir()
		cf := append(append([]string(nil), O2...), c.cflags...)
		var bin, target string
		if c.lib {
			target = ccompile(t, filepath.Join(d, "libgreet.so"), append([]string{src("old"), "-shared"}, cf...)...)
			bin = ccompile(t, filepath.Join(d, "main"), append(append([]string{mainSrc, target, "-Wl,-rpath," + d}, linkLib...), O2...)...)
		} else {
			bin = ccompile(t, filepath.Join(t.TempDir(), "prog"), append(append(append([]string{src("old"), mainSrc}, cf...), c.ldflg...), linkLib...)...)
			target = bin
		}
		assertNoCopies(t, bin)
		oldObj := ccompile(t, filepath.Join(t.TempDir(), "old.o"), append(append([]string{src("old")}, cf...), sectionFlags...)...)
		newObj := ccompile(t, filepath.Join(t.TempDir(), "new.o"), append(append([]string{src("new")}, cf...), sectionFlags...)...)
		for _, mode := range []string{"by-name", "diff"} {
			t.Run(c.name+"/"+mode, func(t *testing.T) {
				var p *patchfile.Patch
				if mode == "by-name" {
					p = buildPatch(t, target, newObj)
				} else {
					var err error
					if p, _, err = diffPatch(t, diffBuild{bin: target, oldObj: oldObj, newObj: newObj}); err != nil {
						t.Fatalf("build: %v", err)
					}
				}
				checkLibData(t, bin, p)
			})
		}
	}
}

// assertNoCopies checks the premise: the executable has no symbol for the
// library data the patch uses (it would have one, a copy, if it used it).
func assertNoCopies(t *testing.T, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, _ := f.DynamicSymbols()
	for _, s := range syms {
		switch s.Name {
		case "stderr", "stdout", "optind", "environ", "timezone", "libdata_hits":
			t.Fatalf("%s has a dynamic symbol %s: the test needs a target that never used it", bin, s.Name)
		}
	}
}

// sumLine reports whether l is "i v" with v = 1+2+...+i (greet's static
// carried over every call).
func sumLine(l string) (int64, bool) {
	var i, v int64
	if n, _ := fmt.Sscanf(l, "%d %d", &i, &v); n != 2 {
		return 0, false
	}
	return i, v == i*(i+1)/2
}

func checkLibData(t *testing.T, bin string, p *patchfile.Patch) {
	t.Helper()
	tg := testutil.Start(t, bin)
	first := tg.WaitLine(t, 5*time.Second, func(string) bool { return true })
	if _, ok := sumLine(first); !ok {
		t.Fatalf("target prints %q", first)
	}
	rep, err := Apply(tg.Pid, p, Options{})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	for _, f := range rep.Functions {
		if f.Kind != "jmp rel32" {
			t.Errorf("%s redirected with %s, want jmp rel32 (region near the code)", f.Name, f.Kind)
		}
	}
	if l := tg.WaitLine(t, 5*time.Second, func(l string) bool { return strings.HasPrefix(l, "stdout ") }); !strings.Contains(l, " env=1 tz=") {
		t.Errorf("patched code printed %q, want env=1 (environ read)", l)
	}
	var after int64
	tg.WaitLine(t, 5*time.Second, func(l string) bool {
		i, sum := sumLine(l)
		if !strings.HasPrefix(l, "stdout ") && !sum {
			t.Fatalf("after apply the target prints %q: the static did not carry over", l)
		}
		after = i
		return sum
	})
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(tg.Stderr(), "greet: patched") {
		if time.Now().After(deadline) {
			t.Fatalf("nothing on stderr: %q", tg.Stderr())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// optind, read from the C library's copy: 2*i for a recent call.
	if v := readLibcInt(t, tg.Pid, "optind"); v%2 != 0 || int64(v/2) < after-1 {
		t.Errorf("optind = %d, want 2*i for i >= %d", v, after-1)
	}
	if v := readLibcInt(t, tg.Pid, "libdata_hits"); v <= 0 {
		t.Errorf("libdata_hits = %d, want the number of patched calls", v)
	}
	if _, err := Revert(tg.Pid, p.ID, Options{}); err != nil {
		t.Fatalf("revert: %v", err)
	}
	tg.Drain()
	tg.WaitLine(t, 5*time.Second, func(l string) bool { _, ok := sumLine(l); return ok })
	assertRunning(t, tg.Pid)
}

// readLibcInt reads a 4-byte library global of the process, found as the engine's
// resolver finds it.
func readLibcInt(t *testing.T, pid int, name string) int32 {
	t.Helper()
	tgt, err := readTarget(pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := tgt.loadSyms(tgt.mods[0]); err != nil {
		t.Fatal(err)
	}
	res, err := (&resolver{t: tgt, patched: tgt.mods[0]}).Resolve(linker.SymbolRef{Name: name})
	if err != nil || !res.Found {
		t.Fatalf("resolve %s: %v %v", name, res, err)
	}
	var b [4]byte
	if err := tgt.mem(res.Addr, b[:]); err != nil {
		t.Fatal(err)
	}
	return int32(binary.LittleEndian.Uint32(b[:]))
}
