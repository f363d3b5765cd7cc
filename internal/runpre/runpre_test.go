package runpre

import (
	"bytes"
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hotpatch/hotpatch/internal/arch"
	_ "github.com/hotpatch/hotpatch/internal/arch/amd64"
	"github.com/hotpatch/hotpatch/internal/diff"
	"github.com/hotpatch/hotpatch/internal/elfsym"
	"github.com/hotpatch/hotpatch/internal/testutil"
	"github.com/hotpatch/hotpatch/internal/unwind"
)

var flags = []string{"-O2", "-flive-patching=inline-clone", "-fPIC"}

// locate builds testdata/twins.c as a stripped library (with tflags) and as
// an object (with flags), and matches the object's functions.
func locate(t *testing.T, tflags []string, defs ...string) (*Match, map[string]uint64) {
	t.Helper()
	dir := t.TempDir()
	lib := testutil.Compile(t, filepath.Join(dir, "lib.so"), append(append([]string{"testdata/twins.c", "-shared"}, tflags...), defs...)...)
	obj := testutil.Compile(t, filepath.Join(dir, "old.o"), append(append([]string{"testdata/twins.c", "-c", "-ffunction-sections", "-fdata-sections"}, flags...), defs...)...)
	// The truth, before stripping.
	want := map[string]uint64{}
	ef := testutil.OpenELF(t, lib)
	syms, err := ef.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range syms.All() {
		if s.Defined() && s.Value != 0 {
			want[s.Name] = s.Value
		}
	}
	if b, err := exec.Command("strip", "--strip-all", lib).CombinedOutput(); err != nil {
		t.Fatalf("strip: %v\n%s", err, b)
	}
	ef = testutil.OpenELF(t, lib)
	dyn, err := ef.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	ranges, err := unwind.FunctionRanges(ef.ELF())
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(obj)
	if err != nil {
		t.Fatal(err)
	}
	funcs, _, err := diff.Functions(data)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := arch.ForMachine(ef.Machine())
	m, err := Locate(Target{File: ef, Syms: dyn, Ranges: ranges, Arch: a}, funcs)
	if err != nil {
		t.Fatal(err)
	}
	return m, want
}

// TestLocate: identical static functions are told apart by the calls of
// their (distinct) callers, and the static variable is located through
// the matched code's references; with a table of pointers as the only
// other user, nothing tells them apart and both are ambiguous; a target
// built with other flags matches nothing.
func TestLocate(t *testing.T) {
	cases := []struct {
		name   string
		tflags []string
		defs   []string
		unique []string // located, at their true address
		fail   map[string]error
	}{
		{name: "callers tell twins apart", tflags: flags, unique: []string{"twice_a", "twice_b", "call_a", "call_b"}},
		{name: "other flags", tflags: []string{"-O1", "-fPIC"}, fail: map[string]error{"call_a": ErrNoMatch, "call_b": ErrNoMatch}},
		{name: "table of pointers", tflags: flags, defs: []string{"-DTABLE"}, unique: []string{"call_a", "call_any"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, want := locate(t, c.tflags, c.defs...)
			for _, name := range c.unique {
				a, err := m.Func(name)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if a != want[name] {
					t.Errorf("%s located at %#x, is at %#x", name, a, want[name])
				}
			}
			if len(c.unique) > 0 && m.Data["counter"] != want["counter"] {
				t.Errorf("counter located at %#x, is at %#x", m.Data["counter"], want["counter"])
			}
			for name, e := range c.fail {
				if _, err := m.Func(name); !errors.Is(err, e) {
					t.Errorf("%s: got %v, want %v", name, err, e)
				}
			}
		})
	}
}

// FuzzLocate: a malformed target file (its .eh_frame, code, symbols) makes
// matching fail or match nothing, never panic or hang; the seed is the
// stripped library TestLocate matches.
func FuzzLocate(f *testing.F) {
	dir := f.TempDir()
	lib := testutil.Compile(f, filepath.Join(dir, "lib.so"), append([]string{"testdata/twins.c", "-shared"}, flags...)...)
	obj := testutil.Compile(f, filepath.Join(dir, "old.o"), append([]string{"testdata/twins.c", "-c", "-ffunction-sections", "-fdata-sections"}, flags...)...)
	if b, err := exec.Command("strip", "--strip-all", lib).CombinedOutput(); err != nil {
		f.Fatalf("strip: %v\n%s", err, b)
	}
	data, err := os.ReadFile(obj)
	if err != nil {
		f.Fatal(err)
	}
	funcs, _, err := diff.Functions(data)
	if err != nil {
		f.Fatal(err)
	}
	seed, err := os.ReadFile(lib)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	a, _ := arch.ForMachine(elf.EM_X86_64)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<20 {
			return
		}
		ef, err := elfsym.Open(bytes.NewReader(b))
		if err != nil {
			return
		}
		syms, _ := ef.Symbols()
		ranges, _ := unwind.FunctionRanges(ef.ELF())
		Locate(Target{File: ef, Syms: syms, Ranges: ranges, Arch: a}, slices.Clone(funcs))
	})
}
