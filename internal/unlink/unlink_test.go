package unlink

import (
	"bytes"
	"debug/elf"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hotpatch/hotpatch/internal/diff"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// linked builds testdata/prog.c as a PIE with kept relocations, without
// -ffunction-sections (so calls within .text carry no relocation).
func linked(t testing.TB, dir string, extra ...string) []byte {
	out := filepath.Join(dir, "prog")
	if len(extra) > 0 {
		out += "-fixed"
	}
	args := append([]string{"-O2", "-fPIE", "-pie", "-Wl,--emit-relocs", "testdata/prog.c"}, extra...)
	testutil.Compile(t, out, args...)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCompareLinked: the two linked programs, unlinked, compare like two
// objects: only name changed (its string did), the jump table, the calls
// the assembler resolved and the static variable compare equal.
func TestCompareLinked(t *testing.T) {
	d := t.TempDir()
	oldR, err := Object(linked(t, d), Options{Name: "prog"})
	if err != nil {
		t.Fatal(err)
	}
	newR, err := Object(linked(t, d, "-DFIXED"), Options{Name: "prog"})
	if err != nil {
		t.Fatal(err)
	}
	// The one reference a patch cannot express: a tail call the assembler
	// made a 2-byte jmp (classify to helper). A patch carrying classify
	// would be refused; name, the changed function, has none.
	for fn, why := range oldR.Unresolved {
		if fn != "classify" || !strings.Contains(why, "1-byte branch") {
			t.Errorf("unexpected unresolved reference in %s: %s", fn, why)
		}
	}
	res, err := diff.Compare(oldR.Object, newR.Object)
	if err != nil {
		t.Fatal(err)
	}
	status := map[string]diff.Status{}
	for _, f := range res.Funcs {
		status[f.Name] = f.Status
	}
	for fn, want := range map[string]diff.Status{"name": diff.Changed, "classify": diff.Unchanged, "main": diff.Unchanged} {
		if status[fn] != want {
			t.Errorf("%s is %q, want %q", fn, status[fn], want)
		}
	}
	for fn, st := range status {
		if st != diff.Unchanged && fn != "name" {
			t.Errorf("%s is %s: only name changed", fn, st)
		}
	}

	// Restricted to name: the object defines name only; classify, main and
	// helper are references; the new string is carried.
	r, err := Object(linked(t, d, "-DFIXED"), Options{Name: "prog", Funcs: map[string]bool{"name": true}})
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytes.NewReader(r.Object))
	if err != nil {
		t.Fatal(err)
	}
	syms, _ := f.Symbols()
	defined := map[string]bool{}
	for _, s := range syms {
		if s.Section != elf.SHN_UNDEF && elf.ST_TYPE(s.Info) == elf.STT_FUNC {
			defined[s.Name] = true
		}
	}
	if !defined["name"] || defined["classify"] || defined["main"] {
		t.Errorf("restricted object defines %v, want name only", defined)
	}
	if eh := f.Section(".eh_frame"); eh == nil || eh.Size < 24 {
		t.Error("the restricted object has no unwind table (CIE and FDE) for name")
	}
	if !bytes.Contains(r.Object, []byte("tiny\x00")) {
		t.Error("the restricted object lacks the string its function uses")
	}
	if bytes.Contains(r.Object, []byte{1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4}) {
		t.Error("the restricted object carries weights, which only helper uses")
	}
}

// TestNoRelocs: a program linked without --emit-relocs is refused.
func TestNoRelocs(t *testing.T) {
	out := testutil.Compile(t, filepath.Join(t.TempDir(), "prog"), "-O2", "testdata/prog.c")
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Object(b, Options{}); err == nil {
		t.Fatal("a program without kept relocations was accepted")
	}
}

// FuzzObject: malformed linked files are errors, never panics or hangs.
func FuzzObject(f *testing.F) {
	f.Add(linked(f, f.TempDir()))
	f.Add([]byte("\x7fELF"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<20 {
			return
		}
		Object(b, Options{})
	})
}
