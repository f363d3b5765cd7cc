package elfsym

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func openFile(t *testing.T, path string) *File {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Open(fh)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestSymbolsWithDebugAndBoundaries: a stripped library's table with its
// debug file's .symtab has its statics, with section indexes of the
// stripped file even when the strip removed a section before them; its
// .dynsym-only table with the .eh_frame boundaries added bounds an exported
// function by the static function that follows it.
func TestSymbolsWithDebugAndBoundaries(t *testing.T) {
	dir := t.TempDir()
	gcc(t, dir, "-O2", "-g", "-shared", "-fPIC", "-Wl,--build-id", testdata(t, "lib1.c"), testdata(t, "lib2.c"), testdata(t, "note.c"), "-o", "lib.so")
	lib, dbg := filepath.Join(dir, "lib.so"), filepath.Join(dir, "lib.debug")
	full := openFile(t, lib)
	want, err := full.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"--only-keep-debug", lib, dbg}, {"--strip-all", "--remove-section=.note.hp", lib}} {
		cmd := "objcopy"
		if args[0] == "--strip-all" {
			cmd = "strip"
		}
		if out, err := exec.Command(cmd, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", cmd, args, err, out)
		}
	}
	st := openFile(t, lib)
	if st.HasSymtab() || !openFile(t, dbg).HasSymtab() {
		t.Fatal("HasSymtab wrong")
	}
	withDbg, err := st.SymbolsWithDebug(openFile(t, dbg))
	if err != nil {
		t.Fatal(err)
	}
	helper := want.LookupLocal("helper", "lib1.c")
	got := withDbg.LookupLocal("helper", "lib1.c")
	if len(helper) != 1 || len(got) != 1 || got[0].Value != helper[0].Value {
		t.Fatalf("helper: %v, want %v", got, helper)
	}
	if sec := st.ELF().Sections[got[0].Section]; sec.Name != ".text" {
		t.Errorf("helper's section index %d is %s in the stripped file, want .text", got[0].Section, sec.Name)
	}
	// .dynsym only: lib1_func's next symbol is another exported one, past
	// the static helpers; with the boundaries it is the function after it.
	dyn, err := st.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	var ranges [][2]uint64
	for _, s := range want.Functions() {
		if s.Size > 0 {
			ranges = append(ranges, [2]uint64{s.Value, s.Value + s.Size})
		}
	}
	b := dyn.WithBoundaries(ranges)
	f1, err := want.Unique("lib1_func")
	if err != nil {
		t.Fatal(err)
	}
	wantNext, _ := want.NextAfter(f1.Value)
	if next, _ := b.NextAfter(f1.Value); next != wantNext {
		t.Errorf("NextAfter(lib1_func) = %#x with boundaries, want %#x", next, wantNext)
	}
	if len(b.Lookup("<function at 0x0>")) != 0 || len(b.Functions()) <= len(dyn.Functions()) {
		t.Errorf("boundaries: %d functions (dynsym %d)", len(b.Functions()), len(dyn.Functions()))
	}
}
