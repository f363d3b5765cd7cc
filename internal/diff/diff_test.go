package diff

import (
	"bytes"
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func gccObj(t testing.TB, src string, flags ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc not installed")
	}
	out := filepath.Join(t.TempDir(), "x.o")
	args := append([]string{"-c", src, "-o", out}, flags...)
	if b, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
		t.Fatalf("gcc %v: %v\n%s", args, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var objFlags = []string{"-O2", "-ffunction-sections", "-fdata-sections"}

func TestCompare(t *testing.T) {
	old := gccObj(t, "testdata/old/unit.c", objFlags...)
	nw := gccObj(t, "testdata/new/unit.c", objFlags...)
	res, err := Compare(old, nw)
	if err != nil {
		t.Fatal(err)
	}
	funcs := map[string]Func{}
	for _, f := range res.Funcs {
		funcs[f.Name] = f
	}
	for _, c := range []struct {
		name string
		want Status
	}{
		{"a", Changed},        // a second static local
		{"b", Changed},        // calls the new helper
		{"c", Changed},        // uses a changed constant table
		{"msg", Changed},      // new string literal
		{"fresh", New},        // new static function
		{"z", New},            // new global function
		{"helper", Unchanged}, // static, same code
		{"unchanged", Unchanged},
	} {
		if got := funcs[c.name].Status; got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
	if f := funcs["a"]; len(f.Orig) == 0 || len(f.OrigMask) != len(f.Orig) || bytes.Count(f.OrigMask, []byte{0}) == 0 {
		t.Errorf("run-pre of a: %d bytes, mask %x", len(f.Orig), f.OrigMask)
	}
	// GCC numbers static locals in reverse order of appearance: NEW's
	// extra static locals renumber a()'s "first".
	oldFirst, newFirst := staticName(t, old, "first."), staticName(t, nw, "first.")
	if oldFirst == newFirst {
		t.Fatalf("test needs renumbering: %s in both", oldFirst)
	}
	data := map[string]Data{}
	for _, d := range res.Data {
		data[d.Name] = d
	}
	for _, c := range []struct {
		name string
		want Status
	}{
		{"added_global", New},
		{"shared", Unchanged},
		{"table", Unchanged},
		{"limits", Changed},
		{oldFirst, Unchanged}, // renumbered in NEW, correlated by owner
		{`"hello, world"`, New},
	} {
		if got := data[c.name].Status; got != c.want {
			t.Errorf("data %s: %q, want %q (all: %+v)", c.name, got, c.want, res.Data)
		}
	}
	// The rewritten object: unchanged functions undefined, renamed symbols.
	f, err := elf.NewFile(bytes.NewReader(res.Object))
	if err != nil {
		t.Fatal(err)
	}
	syms, _ := f.Symbols()
	got := map[string]elf.SectionIndex{}
	for _, s := range syms {
		got[s.Name] = s.Section
	}
	if got["helper"] != elf.SHN_UNDEF || got["unchanged"] != elf.SHN_UNDEF || got["b"] == elf.SHN_UNDEF {
		t.Errorf("rewritten symbols: helper %v unchanged %v b %v", got["helper"], got["unchanged"], got["b"])
	}
	if _, ok := got[oldFirst]; !ok {
		t.Errorf("%s not renamed to the target's %s: %v", newFirst, oldFirst, got)
	}
	for _, s := range f.Sections {
		if s.Name == ".text.helper" && s.Flags&elf.SHF_ALLOC != 0 {
			t.Errorf(".text.helper still loaded")
		}
	}
}

func staticName(t *testing.T, obj []byte, prefix string) string {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(obj))
	if err != nil {
		t.Fatal(err)
	}
	syms, _ := f.Symbols()
	for _, s := range syms {
		if strings.HasPrefix(s.Name, prefix) {
			return s.Name
		}
	}
	t.Fatalf("no symbol %s*", prefix)
	return ""
}

func TestCompareErrors(t *testing.T) {
	old := gccObj(t, "testdata/old/unit.c", objFlags...)
	cases := []struct {
		name    string
		old, nw []byte
		want    error
		text    string
	}{
		{"variable size", gccObj(t, "testdata/old/size.c", objFlags...), gccObj(t, "testdata/new/size.c", objFlags...), ErrLiveData, "shared"},
		{"other file", old, gccObj(t, "testdata/new/size.c", objFlags...), ErrMismatch, "size.c"},
		{"no function sections", gccObj(t, "testdata/old/unit.c", "-O2"), gccObj(t, "testdata/new/unit.c", "-O2"), ErrNeedSections, ".text"},
		{"garbage", []byte("not an object"), old, ErrBadObject, ""},
		{"truncated", old[:len(old)/2], old, ErrBadObject, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Compare(c.old, c.nw)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text) {
				t.Fatalf("got %v, want %v mentioning %q", err, c.want, c.text)
			}
		})
	}
}

func FuzzCompare(f *testing.F) {
	old := gccObj(f, "testdata/old/unit.c", objFlags...)
	nw := gccObj(f, "testdata/new/unit.c", objFlags...)
	f.Add(old, nw)
	f.Add(nw, nw)
	f.Fuzz(func(t *testing.T, a, b []byte) {
		res, err := Compare(a, b)
		if err == nil && res.Object == nil {
			t.Fatal("no object and no error")
		}
	})
}

// TestCompactObject: the patch object carries only what the linker loads:
// the unchanged functions' code and the debugging information are gone
// (headers kept at size 0, indices unchanged), the rest is intact.
func TestCompactObject(t *testing.T) {
	flags := append([]string{"-g"}, objFlags...)
	old := gccObj(t, "testdata/old/unit.c", flags...)
	nw := gccObj(t, "testdata/new/unit.c", flags...)
	res, err := Compare(old, nw)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Object) >= len(nw) {
		t.Errorf("patch object %d bytes, NEW.o %d: want it smaller", len(res.Object), len(nw))
	}
	nf, _ := elf.NewFile(bytes.NewReader(nw))
	pf, err := elf.NewFile(bytes.NewReader(res.Object))
	if err != nil {
		t.Fatalf("compacted object does not parse: %v", err)
	}
	if len(pf.Sections) != len(nf.Sections) {
		t.Fatalf("%d sections, want %d (indices must not change)", len(pf.Sections), len(nf.Sections))
	}
	for i, s := range pf.Sections {
		n := nf.Sections[i]
		switch {
		case strings.HasPrefix(s.Name, ".debug") && s.Size != 0:
			t.Errorf("%s kept (%d bytes)", s.Name, s.Size)
		case s.Name == ".text.unchanged" && s.Size != 0:
			t.Errorf("unchanged function's code kept")
		case s.Flags&elf.SHF_ALLOC != 0 && s.Type != elf.SHT_NOBITS:
			a, _ := s.Data()
			b, _ := n.Data()
			if !bytes.Equal(a, b) {
				t.Errorf("%s differs from NEW.o's", s.Name)
			}
		}
	}
	if _, _, err := Functions(res.Object); err != nil {
		t.Errorf("compacted object: %v", err)
	}
}
