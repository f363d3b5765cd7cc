package elfsym

import (
	"bytes"
	"debug/elf"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// dynamicLookup is what LookupDynamic must return: Table.Lookup restricted
// to the symbols of .dynsym.
func dynamicLookup(tab *Table, name string) []Symbol {
	base, ver, def := splitVersion(name)
	var cands []Symbol
	for _, i := range tab.byName[base] {
		if s := tab.syms[i]; s.Dynamic && s.Defined() {
			cands = append(cands, s)
		}
	}
	return matchVersion(cands, ver, def)
}

// checkLookupDynamic compares LookupDynamic with the whole table for every
// name of .dynsym, with and without its version, and for names absent.
func checkLookupDynamic(t *testing.T, path string, wantHash elf.SectionType, wantSome bool) {
	t.Helper()
	f := open(t, path)
	if f.ELF().SectionByType(wantHash) == nil {
		t.Fatalf("%s has no %v", path, wantHash)
	}
	tab := symbols(t, f)
	queries := []string{"no_such_symbol", "", "@", "x@@", "memcpy@GLIBC_0"}
	for _, s := range tab.All() {
		if s.Dynamic {
			queries = append(queries, s.Name, s.String(), s.Name+"@"+s.Version, s.Name+"@@"+s.Version, s.Name+"x")
		}
	}
	n := 0
	for _, q := range queries {
		got, ok, err := f.LookupDynamic(q)
		if err != nil || !ok {
			t.Fatalf("%s: LookupDynamic(%q): ok %v, %v", path, q, ok, err)
		}
		want := dynamicLookup(tab, q)
		sortSyms(got)
		sortSyms(want)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: LookupDynamic(%q) = %+v, want %+v", path, q, got, want)
		}
		n += len(got)
	}
	if n == 0 && wantSome {
		t.Fatalf("%s: nothing found", path)
	}
	t.Logf("%s: %d queries, %d symbols found", filepath.Base(path), len(queries), n)
}

func TestLookupDynamic(t *testing.T) {
	dir := t.TempDir()
	gnu := filepath.Join(dir, "libgnu.so")
	sysv := filepath.Join(dir, "libsysv.so")
	common := []string{"-O2", "-shared", "-fPIC", "-Wl,--version-script=" + testdata(t, "versioned.map"), testdata(t, "versioned.c")}
	gcc(t, dir, append([]string{"-Wl,--hash-style=gnu", "-o", gnu}, common...)...)
	gcc(t, dir, append([]string{"-Wl,--hash-style=sysv", "-o", sysv}, common...)...)
	t.Run("gnu-hash", func(t *testing.T) { checkLookupDynamic(t, gnu, elf.SHT_GNU_HASH, true) })
	t.Run("sysv-hash", func(t *testing.T) { checkLookupDynamic(t, sysv, elf.SHT_HASH, true) })
	for _, lib := range []string{gnu, sysv} {
		f := open(t, lib)
		if s, _, _ := f.LookupDynamic("vfunc"); len(s) != 1 || s[0].Version != "VER_2" || !s[0].DefaultVersion {
			t.Errorf("%s: vfunc = %+v, want the default VER_2", lib, s)
		}
		if s, _, _ := f.LookupDynamic("vfunc@VER_1"); len(s) != 1 || s[0].DefaultVersion {
			t.Errorf("%s: vfunc@VER_1 = %+v", lib, s)
		}
		if s, _, _ := f.LookupDynamic("exported_data"); len(s) != 1 || s[0].Type != elf.STT_OBJECT {
			t.Errorf("%s: exported_data = %+v", lib, s)
		}
		if s, _, _ := f.LookupDynamic("old_impl"); len(s) != 0 {
			t.Errorf("%s: the local old_impl found: %+v", lib, s)
		}
	}
	b := build(t)
	t.Run("libt", func(t *testing.T) { checkLookupDynamic(t, b.lib, elf.SHT_GNU_HASH, true) })
	// An executable exports next to nothing: every lookup finds nothing.
	t.Run("pie", func(t *testing.T) { checkLookupDynamic(t, b.pie, elf.SHT_GNU_HASH, false) })
	for _, sys := range []string{libcPath, "/usr/lib/x86_64-linux-gnu/libm.so.6", "/lib64/ld-linux-x86-64.so.2"} {
		if _, err := os.Stat(sys); err != nil {
			continue
		}
		t.Run(filepath.Base(sys), func(t *testing.T) { checkLookupDynamic(t, sys, elf.SHT_GNU_HASH, true) })
	}
}

// TestLookupDynamicNoHash: a file without a hash table says so (ok false).
func TestLookupDynamicNoHash(t *testing.T) {
	dir := t.TempDir()
	obj := filepath.Join(dir, "v.o")
	gcc(t, dir, "-O2", "-c", "-o", obj, testdata(t, "versioned.c"))
	f := open(t, obj)
	if s, ok, err := f.LookupDynamic("plain_func"); ok || err != nil || s != nil {
		t.Errorf("object file: %+v, %v, %v", s, ok, err)
	}
}

// FuzzLookupDynamic feeds hostile files to LookupDynamic: it may fail but
// never panic, and never find what the whole table does not have.
func FuzzLookupDynamic(f *testing.F) {
	dir := f.TempDir()
	for _, style := range []string{"gnu", "sysv"} {
		so := filepath.Join(dir, "v-"+style+".so")
		gcc(f, dir, "-Os", "-shared", "-fPIC", "-Wl,--hash-style="+style, "-Wl,--version-script="+testdata(f, "versioned.map"), "-o", so, testdata(f, "versioned.c"))
		if b, err := os.ReadFile(so); err == nil {
			f.Add(b, "vfunc")
			f.Add(b, "exported_data")
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, name string) {
		ef, err := Open(bytes.NewReader(data))
		if err != nil {
			return
		}
		got, ok, err := ef.LookupDynamic(name)
		if err != nil || !ok {
			return
		}
		tab, err := ef.Symbols()
		if err != nil {
			return
		}
		for _, s := range got {
			if !slices.ContainsFunc(tab.All(), func(o Symbol) bool { return o.Dynamic && o.Name == s.Name && o.Value == s.Value }) &&
				!strings.Contains(name, "\x00") {
				t.Fatalf("LookupDynamic(%q) found %+v, not in .dynsym", name, s)
			}
		}
	})
}
