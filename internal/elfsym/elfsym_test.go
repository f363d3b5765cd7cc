package elfsym

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

const libcPath = "/lib/x86_64-linux-gnu/libc.so.6"

// gcc compiles in dir; it skips the test when gcc is missing.
func gcc(t testing.TB, dir string, args ...string) {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc not installed")
	}
	cmd := exec.Command("gcc", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func testdata(t testing.TB, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// built holds the test binaries, compiled once per test binary run.
type built struct {
	dir                  string
	lib, pie, nopie, nob string
}

var (
	buildOnce sync.Once
	buildRes  built
	buildErr  error
)

func build(t *testing.T) built {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc not installed")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "elfsym-test")
		if err != nil {
			buildErr = err
			return
		}
		b := built{dir: dir,
			lib:   filepath.Join(dir, "libt.so"),
			pie:   filepath.Join(dir, "main-pie"),
			nopie: filepath.Join(dir, "main-nopie"),
			nob:   filepath.Join(dir, "main-nobuildid"),
		}
		steps := [][]string{
			{"-O2", "-g", "-grecord-gcc-switches", "-shared", "-fPIC", "-o", b.lib, testdata(t, "lib1.c"), testdata(t, "lib2.c")},
			{"-O2", "-fPIE", "-pie", "-o", b.pie, testdata(t, "main.c"), b.lib, "-Wl,-rpath," + dir},
			{"-O2", "-fno-PIE", "-no-pie", "-o", b.nopie, testdata(t, "main.c"), b.lib, "-Wl,-rpath," + dir},
			{"-O2", "-Wl,--build-id=none", "-o", b.nob, testdata(t, "main.c"), b.lib},
		}
		for _, args := range steps {
			out, err := exec.Command("gcc", args...).CombinedOutput()
			if err != nil {
				buildErr = errors.New("gcc " + strings.Join(args, " ") + ": " + err.Error() + "\n" + string(out))
				return
			}
		}
		buildRes = b
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildRes
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildRes.dir != "" {
		os.RemoveAll(buildRes.dir)
	}
	os.Exit(code)
}

func open(t *testing.T, path string) *File {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Open(fh)
	if err != nil {
		fh.Close()
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func symbols(t *testing.T, f *File) *Table {
	t.Helper()
	tab, err := f.Symbols()
	if err != nil {
		t.Fatalf("Symbols: %v", err)
	}
	return tab
}

func one(t *testing.T, what string, s []Symbol) Symbol {
	t.Helper()
	if len(s) != 1 {
		t.Fatalf("%s: got %d symbols %+v, want 1", what, len(s), s)
	}
	return s[0]
}

func TestSharedLibrary(t *testing.T) {
	b := build(t)
	f := open(t, b.lib)
	if f.Type() != elf.ET_DYN || f.Machine() != elf.EM_X86_64 {
		t.Errorf("Type, Machine = %v, %v", f.Type(), f.Machine())
	}
	tab := symbols(t, f)

	// Two static helpers, told apart by STT_FILE.
	if got := tab.Lookup("helper"); len(got) != 2 {
		t.Fatalf("Lookup(helper) = %+v, want 2 symbols", got)
	}
	if _, err := tab.Unique("helper"); !errors.Is(err, ErrAmbiguous) {
		t.Errorf("Unique(helper) err = %v, want ErrAmbiguous", err)
	}
	h1 := one(t, "LookupLocal(helper, lib1.c)", tab.LookupLocal("helper", "lib1.c"))
	h2 := one(t, "LookupLocal(helper, /elsewhere/lib2.c)", tab.LookupLocal("helper", "/elsewhere/lib2.c"))
	if h1.Value == h2.Value || filepath.Base(h1.File) != "lib1.c" || filepath.Base(h2.File) != "lib2.c" {
		t.Errorf("helpers: %+v %+v", h1, h2)
	}
	if h1.Bind != elf.STB_LOCAL || h1.Type != elf.STT_FUNC || h1.Dynamic || h1.Size == 0 {
		t.Errorf("helper in lib1.c: %+v", h1)
	}
	if u, err := tab.UniqueLocal("helper", "lib2.c"); err != nil || u != h2 {
		t.Errorf("UniqueLocal(helper, lib2.c) = %+v, %v", u, err)
	}
	if got := tab.LookupLocal("helper", "lib3.c"); len(got) != 0 {
		t.Errorf("LookupLocal(helper, lib3.c) = %+v", got)
	}
	if _, err := tab.Unique("no_such_symbol"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Unique(no_such_symbol) err = %v, want ErrNotFound", err)
	}

	// A global in both .symtab and .dynsym appears once.
	l1 := one(t, "Lookup(lib1_func)", tab.Lookup("lib1_func"))
	if !l1.Dynamic || l1.Bind != elf.STB_GLOBAL || l1.File != "" || l1.Size == 0 {
		t.Errorf("lib1_func = %+v", l1)
	}
	n := 0
	for _, s := range tab.All() {
		if s.Name == "lib1_func" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("lib1_func appears %d times in All()", n)
	}

	// Functions, Containing, NextAfter, ReadVirt, SectionEnd.
	fns := tab.Functions()
	for i := 1; i < len(fns); i++ {
		if fns[i].Value < fns[i-1].Value {
			t.Fatalf("Functions not sorted at %d", i)
		}
	}
	for _, s := range []Symbol{l1, h1, h2} {
		for _, addr := range []uint64{s.Value, s.Value + s.Size/2, s.Value + s.Size - 1} {
			if c, ok := tab.Containing(addr); !ok || c.Name != s.Name || c.Value != s.Value {
				t.Errorf("Containing(%#x) = %+v, %v, want %s", addr, c, ok, s.Name)
			}
		}
		next, ok := tab.NextAfter(s.Value)
		if !ok || next < s.Value+s.Size {
			t.Errorf("NextAfter(%s@%#x) = %#x, %v", s.Name, s.Value, next, ok)
		}
		end, ok := f.SectionEnd(s.Value)
		text := f.ELF().Section(".text")
		if !ok || end != text.Addr+text.Size {
			t.Errorf("SectionEnd(%#x) = %#x, %v", s.Value, end, ok)
		}
		code, err := f.ReadVirt(s.Value, int(s.Size))
		if err != nil {
			t.Fatalf("ReadVirt(%s): %v", s.Name, err)
		}
		data, _ := text.Data()
		if want := data[s.Value-text.Addr : s.Value-text.Addr+s.Size]; !bytes.Equal(code, want) {
			t.Errorf("ReadVirt(%s) = %x, want %x", s.Name, code, want)
		}
	}
	if _, ok := tab.Containing(0); ok {
		t.Error("Containing(0) found a function")
	}
	// PrevFunc: for every function of .text, the function below it ends at
	// or before it and no function lies between (a sized one is what
	// Functions lists in order).
	for i := 1; i < len(fns); i++ {
		s := fns[i]
		if s.Section != fns[i-1].Section || s.Value == fns[i-1].Value || s.Size == 0 {
			continue
		}
		prev, ok := tab.PrevFunc(s.Value)
		if !ok {
			continue // an enclosing or size-0 label in between: allowed to give up
		}
		if prev.Value+prev.Size > s.Value || prev.Value >= s.Value {
			t.Errorf("PrevFunc(%s@%#x) = %s@%#x+%d overlaps it", s.Name, s.Value, prev.Name, prev.Value, prev.Size)
		}
		for _, o := range fns {
			if o.Section == s.Section && o.Value > prev.Value && o.Value < s.Value {
				t.Errorf("PrevFunc(%s) = %s, but %s lies between", s.Name, prev.Name, o.Name)
			}
		}
	}
	if p, ok := tab.PrevFunc(h2.Value); !ok || p.Value >= h2.Value {
		t.Errorf("PrevFunc(%s) = %+v, %v", h2.Name, p, ok)
	}
	bss := one(t, "LookupLocal(lib_bss)", tab.LookupLocal("lib_bss", "lib1.c"))
	if _, err := f.ReadVirt(bss.Value, 16); !errors.Is(err, ErrNoData) {
		t.Errorf("ReadVirt(.bss) err = %v, want ErrNoData", err)
	}
	if _, err := f.ReadVirt(1<<40, 1); !errors.Is(err, ErrNoData) {
		t.Errorf("ReadVirt(unmapped) err = %v, want ErrNoData", err)
	}

	// PT_TLS.
	if memsz, align, ok := f.TLS(); !ok || memsz < 4 || align < 4 {
		t.Errorf("TLS() = %d, %d, %v", memsz, align, ok)
	}

	// Build-id matches what readelf/file would print: 20 bytes of SHA-1.
	id, err := f.BuildID()
	if err != nil || len(id) != 20 {
		t.Errorf("BuildID() = %x, %v", id, err)
	}
	note := f.ELF().Section(".note.gnu.build-id")
	if nd, _ := note.Data(); note != nil && !bytes.HasSuffix(nd, id) {
		t.Errorf("build-id %x not the tail of .note.gnu.build-id %x", id, nd)
	}

	// DWARF compile units with producer and ranges.
	cus, err := f.CompileUnits()
	if err != nil {
		t.Fatalf("CompileUnits: %v", err)
	}
	names := map[string]CompileUnit{}
	for _, cu := range cus {
		names[filepath.Base(cu.Name)] = cu
	}
	for file, fn := range map[string]Symbol{"lib1.c": l1, "lib2.c": h2} {
		cu, ok := names[file]
		if !ok {
			t.Errorf("no compile unit %s in %+v", file, cus)
			continue
		}
		if !strings.Contains(cu.Producer, "GNU C") || !strings.Contains(cu.Producer, "-O2") {
			t.Errorf("%s producer = %q", file, cu.Producer)
		}
		in := false
		for _, r := range cu.Ranges {
			in = in || (fn.Value >= r[0] && fn.Value < r[1])
		}
		if !in {
			t.Errorf("%s ranges %x do not contain %s at %#x", file, cu.Ranges, fn.Name, fn.Value)
		}
	}
}

func TestExecutables(t *testing.T) {
	b := build(t)
	tests := []struct {
		name    string
		path    string
		typ     elf.Type
		buildID bool
	}{
		{"pie", b.pie, elf.ET_DYN, true},
		{"no-pie", b.nopie, elf.ET_EXEC, true},
		{"no-build-id", b.nob, elf.ET_DYN, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := open(t, tc.path)
			if f.Type() != tc.typ {
				t.Errorf("Type() = %v, want %v", f.Type(), tc.typ)
			}
			id, err := f.BuildID()
			if tc.buildID && (err != nil || len(id) == 0) {
				t.Errorf("BuildID() = %x, %v", id, err)
			}
			if !tc.buildID && !errors.Is(err, ErrNoBuildID) {
				t.Errorf("BuildID() = %x, %v, want ErrNoBuildID", id, err)
			}
			tab := symbols(t, f)
			main := one(t, "Lookup(main)", tab.Lookup("main"))
			if main.Type != elf.STT_FUNC || main.Section == elf.SHN_UNDEF {
				t.Errorf("main = %+v", main)
			}
			if tc.typ == elf.ET_EXEC && main.Value < 0x400000 {
				t.Errorf("no-pie main at %#x", main.Value)
			}
			lw := one(t, "Lookup(local_work)", tab.Lookup("local_work"))
			if c, ok := tab.Containing(lw.Value + 1); !ok || c.Name != "local_work" {
				t.Errorf("Containing(local_work+1) = %+v, %v", c, ok)
			}
			// strlen is only referenced: Lookup returns defined symbols only.
			if got := tab.Lookup("strlen"); len(got) != 0 {
				t.Errorf("Lookup(strlen) = %+v, want none (undefined here)", got)
			}
			undef := false
			for _, s := range tab.All() {
				undef = undef || (s.Name == "strlen" && !s.Defined() && s.Version == "GLIBC_2.2.5")
			}
			if !undef {
				t.Error("undefined strlen@GLIBC_2.2.5 not in All()")
			}

			rels, err := f.DynRelocs()
			if err != nil {
				t.Fatalf("DynRelocs: %v", err)
			}
			want := map[string]elf.R_X86_64{
				"strlen":  elf.R_X86_64_JMP_SLOT,
				"tls_var": elf.R_X86_64_TPOFF64,
			}
			if tc.typ == elf.ET_DYN {
				want["__cxa_finalize"] = elf.R_X86_64_GLOB_DAT
			}
			for sym, typ := range want {
				found := false
				for _, r := range rels {
					if r.Sym == sym && elf.R_X86_64(r.Type) == typ {
						found = true
						// The GOT slot is inside the file's data.
						if _, err := f.ReadVirt(r.Offset, 8); err != nil {
							t.Errorf("GOT slot of %s at %#x: %v", sym, r.Offset, err)
						}
					}
				}
				if !found {
					t.Errorf("no %v relocation for %s in %+v", typ, sym, rels)
				}
			}

			// The same relocations are found through PT_DYNAMIC when the
			// section headers are gone.
			raw, err := os.ReadFile(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			stripped := stripSectionHeaders(raw)
			sf, err := Open(bytes.NewReader(stripped))
			if err != nil {
				t.Fatalf("Open(stripped): %v", err)
			}
			if len(sf.ELF().Sections) != 0 {
				t.Fatalf("stripped copy still has %d sections", len(sf.ELF().Sections))
			}
			srels, err := sf.DynRelocs()
			if err != nil {
				t.Fatalf("DynRelocs(stripped): %v", err)
			}
			if !reflect.DeepEqual(srels, rels) {
				t.Errorf("DynRelocs(stripped) =\n%+v\nwant\n%+v", srels, rels)
			}
			// ReadVirt falls back to PT_LOAD.
			code, err := sf.ReadVirt(main.Value, int(main.Size))
			want2, _ := f.ReadVirt(main.Value, int(main.Size))
			if err != nil || !bytes.Equal(code, want2) {
				t.Errorf("ReadVirt(stripped, main) = %x, %v", code, err)
			}
			if tc.buildID {
				if sid, err := sf.BuildID(); err != nil || !bytes.Equal(sid, id) {
					t.Errorf("BuildID(stripped) = %x, %v, want %x", sid, err, id)
				}
			}
			if cus, err := f.CompileUnits(); err != nil || cus != nil {
				t.Errorf("CompileUnits without -g = %+v, %v", cus, err)
			}
		})
	}
}

// stripSectionHeaders returns a copy of an ELF64 file whose e_shoff, e_shnum
// and e_shstrndx are zero, as some stripping tools leave them.
func stripSectionHeaders(b []byte) []byte {
	c := bytes.Clone(b)
	binary.LittleEndian.PutUint64(c[0x28:], 0) // e_shoff
	binary.LittleEndian.PutUint16(c[0x3c:], 0) // e_shnum
	binary.LittleEndian.PutUint16(c[0x3e:], 0) // e_shstrndx
	return c
}

func TestLibcVersions(t *testing.T) {
	if _, err := os.Stat(libcPath); err != nil {
		t.Skipf("no %s", libcPath)
	}
	f := open(t, libcPath)
	tab := symbols(t, f)
	newer := one(t, "memcpy@GLIBC_2.14", tab.Lookup("memcpy@GLIBC_2.14"))
	older := one(t, "memcpy@GLIBC_2.2.5", tab.Lookup("memcpy@GLIBC_2.2.5"))
	if newer.Value == older.Value {
		t.Errorf("memcpy versions share address %#x", newer.Value)
	}
	if !newer.DefaultVersion || older.DefaultVersion {
		t.Errorf("DefaultVersion: 2.14 %v, 2.2.5 %v", newer.DefaultVersion, older.DefaultVersion)
	}
	if newer.String() != "memcpy@@GLIBC_2.14" || older.String() != "memcpy@GLIBC_2.2.5" {
		t.Errorf("String() = %q, %q", newer.String(), older.String())
	}
	tests := []struct {
		query string
		want  []Symbol
	}{
		{"memcpy", []Symbol{newer}},
		{"memcpy@@GLIBC_2.14", []Symbol{newer}},
		{"memcpy@GLIBC_2.14", []Symbol{newer}},
		{"memcpy@GLIBC_2.2.5", []Symbol{older}},
		{"memcpy@@GLIBC_2.2.5", nil},
		{"memcpy@GLIBC_9.99", nil},
		{"no_such_function", nil},
	}
	for _, tc := range tests {
		if got := tab.Lookup(tc.query); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Lookup(%q) = %+v, want %+v", tc.query, got, tc.want)
		}
	}
	strlen := one(t, "strlen", tab.Lookup("strlen"))
	if strlen.Type != elf.STT_GNU_IFUNC || !strlen.Dynamic || strlen.Version != "GLIBC_2.2.5" {
		t.Errorf("strlen = %+v", strlen)
	}
	if fns := tab.Functions(); len(fns) < 1000 {
		t.Errorf("only %d functions in libc", len(fns))
	}
	if c, ok := tab.Containing(strlen.Value); !ok || c.Value != strlen.Value {
		t.Errorf("Containing(strlen) = %+v, %v", c, ok)
	}
	if _, err := f.BuildID(); err != nil {
		t.Errorf("BuildID(libc): %v", err)
	}
	if _, _, ok := f.TLS(); !ok {
		t.Error("libc has no PT_TLS")
	}
	rels, err := f.DynRelocs()
	if err != nil || len(rels) == 0 {
		t.Errorf("DynRelocs(libc): %d, %v", len(rels), err)
	}
}

func TestOpenRejects(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"not ELF", []byte("#!/bin/sh\necho hi\n")},
		{"truncated header", []byte("\x7fELF\x02\x01\x01\x00\x00\x00")},
	}
	for _, tc := range tests {
		if _, err := Open(bytes.NewReader(tc.data)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", tc.name, err)
		}
	}
}

// FuzzOpen feeds hostile files to Open and every accessor: none may panic.
func FuzzOpen(f *testing.F) {
	dir := f.TempDir()
	if _, err := exec.LookPath("gcc"); err == nil {
		so := filepath.Join(dir, "tiny.so")
		gcc(f, dir, "-Os", "-g", "-shared", "-fPIC", "-nostdlib", "-o", so, testdata(f, "tiny.c"))
		if b, err := os.ReadFile(so); err == nil {
			f.Add(b)
			f.Add(stripSectionHeaders(b))
			f.Add(b[:len(b)/2])
		}
	}
	f.Add([]byte("\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00"))
	f.Add([]byte("not an elf file"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ef, err := Open(bytes.NewReader(data))
		if err != nil {
			return
		}
		ef.BuildID()
		ef.TLS()
		ef.DynRelocs()
		ef.CompileUnits()
		ef.SectionEnd(0x1000)
		ef.ReadVirt(0x1000, 16)
		tab, err := ef.Symbols()
		if err != nil {
			return
		}
		for _, s := range tab.All() {
			tab.Lookup(s.String())
			tab.LookupLocal(s.Name, s.File)
			tab.Containing(s.Value)
			tab.NextAfter(s.Value)
			tab.PrevFunc(s.Value)
			ef.ReadVirt(s.Value, int(min(s.Size, 64)))
		}
	})
}
