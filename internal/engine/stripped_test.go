package engine

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/build"
	"github.com/hotpatch/hotpatch/internal/debuginfo"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/runpre"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// Stripped targets (distribution binaries): the target's symbols are in a
// separate debug file, or nowhere.

// strippedCase is a target built with -g and then split the way a
// distribution packages it (testutil.SplitDebug).
type strippedCase struct {
	bin    string // the program to run
	file   string // the file patched: bin, or the library
	debug  string // its debug file, next to it
	oldObj string
	newObj string
}

var strippedFlags = []string{"-O2", "-g", "-flive-patching=inline-clone"}

// buildStripped builds testdata/stripped as an executable ("exe") or as a
// library with a program using it ("lib"), and splits the patched file.
func buildStripped(t *testing.T, dir, kind string, extra ...string) strippedCase {
	t.Helper()
	src := func(v, f string) string { return filepath.Join("testdata", "stripped", v, f) }
	flags := append(append([]string{}, strippedFlags...), extra...)
	var c strippedCase
	switch kind {
	case "exe":
		c.bin = ccompile(t, filepath.Join(dir, "prog"), append([]string{src("old", "prog.c")}, flags...)...)
		c.file = c.bin
		c.oldObj = ccompile(t, filepath.Join(dir, "old.o"), append(append([]string{src("old", "prog.c")}, flags...), sectionFlags...)...)
		c.newObj = ccompile(t, filepath.Join(dir, "new.o"), append(append([]string{src("new", "prog.c")}, flags...), sectionFlags...)...)
	case "lib":
		pic := append(flags, "-fPIC")
		c.file = ccompile(t, filepath.Join(dir, "libstat.so"), append([]string{src("old", "lib.c"), "-shared"}, pic...)...)
		c.bin = ccompile(t, filepath.Join(dir, "prog"), filepath.Join("testdata", "stripped", "main.c"), "-O2", "-L"+dir, "-lstat", "-Wl,-rpath,"+dir)
		c.oldObj = ccompile(t, filepath.Join(dir, "old.o"), append(append([]string{src("old", "lib.c")}, pic...), sectionFlags...)...)
		c.newObj = ccompile(t, filepath.Join(dir, "new.o"), append(append([]string{src("new", "lib.c")}, pic...), sectionFlags...)...)
	}
	c.debug = testutil.SplitDebug(t, c.file)
	return c
}

func moveFile(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}

func buildIDOf(t *testing.T, path string) string {
	t.Helper()
	id, err := testutil.OpenELF(t, path).BuildID()
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(id)
}

// scalesBy checks that the target's next lines print step(i) = k*i.
func scalesBy(t *testing.T, tg *testutil.Target, k int64) {
	t.Helper()
	for _, l := range nextLines(t, tg, 4) {
		var i, v int64
		var w string
		if _, err := fmt.Sscanf(l, "%d %d %s", &i, &v, &w); err != nil || v != k*i || w != "-" {
			t.Fatalf("line %q: want step(%d) = %d (and the static counter counting)", l, i, k*i)
		}
	}
}

// applyScale builds the patch for c, applies it live, checks that the
// static function computes the new result, and reverts.
func applyScale(t *testing.T, c strippedCase, opt build.Options) *build.Report {
	t.Helper()
	opt.Target, opt.Old, opt.New = c.file, []string{c.oldObj}, []string{c.newObj}
	p, rep, err := build.Build(opt)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	tg := testutil.Start(t, c.bin)
	tg.WaitLine(t, 5*time.Second, func(string) bool { return true })
	scalesBy(t, tg, 2)
	if _, err := Apply(tg.Pid, p, Options{}); err != nil {
		t.Fatalf("apply: %v", err)
	}
	scalesBy(t, tg, 3)
	if _, err := Revert(tg.Pid, p.ID, Options{}); err != nil {
		t.Fatalf("revert: %v", err)
	}
	scalesBy(t, tg, 2)
	assertRunning(t, tg.Pid)
	return rep
}

// TestStrippedDebugFile: for an executable and a library, stripped with
// their debug file placed in each location the search knows (under a
// temporary root), a fix to a static function builds with the symbols of
// the debug file (the report says which file) and applies live (the engine
// finds the same debug file for the running file).
func TestStrippedDebugFile(t *testing.T) {
	setup(t)
	type place func(c strippedCase, root, cache string) (where string, dbg debuginfo.Options)
	cases := []struct {
		name  string
		place place
		want  debuginfo.Source
	}{
		{"build-id", func(c strippedCase, root, _ string) (string, debuginfo.Options) {
			h := buildIDOf(t, c.file)
			return filepath.Join(root, "usr/lib/debug/.build-id", h[:2], h[2:]+".debug"), debuginfo.Options{}
		}, debuginfo.SourceBuildID},
		{"debuglink same directory", func(c strippedCase, _, _ string) (string, debuginfo.Options) {
			return c.debug, debuginfo.Options{}
		}, debuginfo.SourceDebuglink},
		{"debuglink .debug", func(c strippedCase, _, _ string) (string, debuginfo.Options) {
			return filepath.Join(filepath.Dir(c.file), ".debug", filepath.Base(c.debug)), debuginfo.Options{}
		}, debuginfo.SourceDebuglink},
		{"debuglink global", func(c strippedCase, root, _ string) (string, debuginfo.Options) {
			return filepath.Join(root, "usr/lib/debug", filepath.Dir(c.file), filepath.Base(c.debug)), debuginfo.Options{}
		}, debuginfo.SourceDebuglink},
		{"debuginfod cache", func(c strippedCase, _, cache string) (string, debuginfo.Options) {
			return filepath.Join(cache, buildIDOf(t, c.file), "debuginfo"), debuginfo.Options{}
		}, debuginfo.SourceDebuginfod},
		// Given to build only: apply, which cannot find it, uses the
		// addresses the patch recorded from it (match "debug-file").
		{"build --debug-file", func(c strippedCase, root, _ string) (string, debuginfo.Options) {
			p := filepath.Join(root, "elsewhere", "x.debug")
			return p, debuginfo.Options{File: p}
		}, debuginfo.SourceExplicit},
	}
	defer func() { debugSearch = debuginfo.Options{} }()
	for _, kind := range []string{"exe", "lib"} {
		for _, pc := range cases {
			t.Run(kind+"/"+pc.name, func(t *testing.T) {
				root, cache := t.TempDir(), t.TempDir()
				c := buildStripped(t, t.TempDir(), kind)
				where, dbg := pc.place(c, root, cache)
				if where != c.debug {
					moveFile(t, c.debug, where)
				}
				dbg.Root, dbg.DebuginfodCache = root, cache
				debugSearch = debuginfo.Options{Root: root, DebuginfodCache: cache}
				rep := applyScale(t, c, build.Options{Debug: dbg})
				if rep.Symbols != where || rep.SymbolsSource != string(pc.want) {
					t.Errorf("report: symbols from %s (%s), want %s (%s)", rep.Symbols, rep.SymbolsSource, where, pc.want)
				}
				// The patch works on a host without the debug file: what
				// it needs of the target is recorded.
				if len(rep.Replaced) != 1 || rep.Replaced[0].Match != "debug-file" || !slices.Contains(names(rep.Located), "calls") {
					t.Errorf("report: replaced %+v located %+v, want scale and calls recorded from the debug file", rep.Replaced, rep.Located)
				}
			})
		}
	}
}

// TestStrippedMismatchedDebugFile: a debug file of another build, where the
// target's would be, is refused naming both build-ids, by build and apply.
func TestStrippedMismatchedDebugFile(t *testing.T) {
	setup(t)
	defer func() { debugSearch = debuginfo.Options{} }()
	c := buildStripped(t, t.TempDir(), "exe")
	other := buildStripped(t, t.TempDir(), "exe", "-g3") // macro info: another build-id
	good := filepath.Join(t.TempDir(), "good.debug")
	moveFile(t, c.debug, good)
	moveFile(t, other.debug, c.debug) // same name, other build
	// With the right debug file given, the build works; the running
	// file's .gnu_debuglink then finds the wrong one, and apply refuses.
	p, _, err := build.Build(build.Options{Target: c.file, Old: []string{c.oldObj}, New: []string{c.newObj}, Debug: debuginfo.Options{File: good}})
	if err != nil {
		t.Fatalf("build with --debug-file: %v", err)
	}
	tg := testutil.Start(t, c.bin)
	tg.WaitLine(t, 5*time.Second, func(string) bool { return true })
	if _, err := Apply(tg.Pid, p, Options{}); !errors.Is(err, debuginfo.ErrMismatch) {
		t.Fatalf("apply: got %v, want ErrMismatch", err)
	} else {
		t.Logf("apply refused: %v", err)
	}
	scalesBy(t, tg, 2)
	assertRunning(t, tg.Pid)
	debugSearch = debuginfo.Options{Root: t.TempDir(), DebuginfodCache: t.TempDir()}
	_, _, err = build.Build(build.Options{Target: c.file, Old: []string{c.oldObj}, New: []string{c.newObj}, Debug: debugSearch})
	if !errors.Is(err, debuginfo.ErrMismatch) {
		t.Fatalf("build: got %v, want ErrMismatch", err)
	}
	t.Logf("refused: %v", err)
	for _, id := range []string{buildIDOf(t, c.file), buildIDOf(t, other.file)} {
		if !strings.Contains(err.Error(), id) {
			t.Errorf("error does not name build-id %s", id)
		}
	}
}

// TestStrippedRunPre: the same targets with the debug file deleted: the
// build locates the changed static function, the functions it calls and
// the static variable it uses by run-pre matching (the report and the
// manifest say so), and the fix applies live.
func TestStrippedRunPre(t *testing.T) {
	setup(t)
	defer func() { debugSearch = debuginfo.Options{} }()
	for _, kind := range []string{"exe", "lib"} {
		t.Run(kind, func(t *testing.T) {
			c := buildStripped(t, t.TempDir(), kind)
			if err := os.Remove(c.debug); err != nil {
				t.Fatal(err)
			}
			debugSearch = debuginfo.Options{Root: t.TempDir(), DebuginfodCache: t.TempDir()}
			rep := applyScale(t, c, build.Options{Debug: debugSearch})
			if rep.SymbolsSource != string(debuginfo.SourceNone) {
				t.Errorf("symbols from %s (%s), want none", rep.Symbols, rep.SymbolsSource)
			}
			if len(rep.Replaced) != 1 || rep.Replaced[0].Name != "scale" || rep.Replaced[0].Match != "run-pre" {
				t.Errorf("replaced %+v, want scale located by run-pre", rep.Replaced)
			}
			located := names(rep.Located)
			if !slices.Contains(located, "calls") {
				t.Errorf("located %v, want the static variable calls", located)
			}
		})
	}
}

// TestStrippedRunPreAmbiguous: two identical static functions, nothing
// telling them apart: the build refuses, naming the function.
func TestStrippedRunPreAmbiguous(t *testing.T) {
	setup(t)
	dir := t.TempDir()
	b := buildDiffCase(t, dir, "../stripped/twin", false, strippedFlags, strippedFlags)
	testutil.SplitDebug(t, b.bin)
	os.Remove(b.bin + ".debug")
	_, _, err := build.Build(build.Options{Target: b.bin, Old: []string{b.oldObj}, New: []string{b.newObj},
		Debug: debuginfo.Options{Root: t.TempDir(), DebuginfodCache: t.TempDir()}})
	if !errors.Is(err, runpre.ErrAmbiguous) || !errors.Is(err, build.ErrNotFound) || !strings.Contains(err.Error(), "twice_a") {
		t.Fatalf("build: got %v, want an ambiguous match of twice_a", err)
	}
	t.Logf("refused: %v", err)
}

// TestStrippedIPARA: by-name mode on a stripped library without debug
// info: the -fipa-ra check sees the static caller through the .eh_frame
// function boundaries and refuses; without .eh_frame it says it could not
// check and refuses unless --force gives a reason.
func TestStrippedIPARA(t *testing.T) {
	setup(t)
	dir := t.TempDir()
	obj := ccompile(t, filepath.Join(dir, "leaf.o"), "testdata/ipara_new.c", "-O2", "-fPIC", "-ffunction-sections", "-fdata-sections", "-c")
	noDebug := debuginfo.Options{Root: t.TempDir(), DebuginfodCache: t.TempDir()}
	cases := []struct {
		name  string
		flags []string
		force string
		want  string // in the error; "" builds
	}{
		{name: "static caller seen", want: "called directly by the function at 0x"},
		{name: "no eh_frame", flags: []string{"-fno-asynchronous-unwind-tables", "-fno-unwind-tables"}, want: "could not check"},
		{name: "no eh_frame forced", flags: []string{"-fno-asynchronous-unwind-tables", "-fno-unwind-tables"}, force: "built with -fno-ipa-ra, see build log"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lib := ccompile(t, filepath.Join(dir, fmt.Sprintf("lib%d.so", i)), append([]string{"testdata/stripped/ipara_lib.c", "-O2", "-g", "-shared", "-fPIC", "-fno-semantic-interposition"}, c.flags...)...)
			testutil.SplitDebug(t, lib)
			os.Remove(lib + ".debug")
			_, rep, err := build.ByName(build.Options{Target: lib, New: []string{obj}, Debug: noDebug, Force: c.force})
			if c.want == "" {
				if err != nil {
					t.Fatalf("build: %v", err)
				}
				if rep.Forced != c.force {
					t.Errorf("report forced %q, want %q", rep.Forced, c.force)
				}
				return
			}
			if !errors.Is(err, build.ErrUnsafeTarget) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("build: got %v, want ErrUnsafeTarget with %q", err, c.want)
			}
			t.Logf("refused: %v", err)
		})
	}
}

// TestStrippedForgedLocations: the addresses a patch records for a target
// without symbols are checked against the file before anything is touched:
// a replaced function that does not start at an .eh_frame boundary, or a
// variable outside the file's sections, is refused and the process keeps
// running unchanged.
func TestStrippedForgedLocations(t *testing.T) {
	setup(t)
	defer func() { debugSearch = debuginfo.Options{} }()
	c := buildStripped(t, t.TempDir(), "exe")
	os.Remove(c.debug)
	debugSearch = debuginfo.Options{Root: t.TempDir(), DebuginfodCache: t.TempDir()}
	p, _, err := build.Build(build.Options{Target: c.file, Old: []string{c.oldObj}, New: []string{c.newObj}, Debug: debugSearch})
	if err != nil {
		t.Fatal(err)
	}
	forge := func(edit func(m *patchfile.Manifest)) *patchfile.Patch {
		m := p.Manifest
		m.Functions = slices.Clone(m.Functions)
		m.Symbols = slices.Clone(m.Symbols)
		edit(&m)
		var members []patchfile.NamedData
		for _, name := range p.Objects() {
			members = append(members, patchfile.NamedData{Name: name, Kind: patchfile.KindObject, Data: p.Member(name)})
		}
		q, err := patchfile.New(m, members)
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	tg := testutil.Start(t, c.bin)
	tg.WaitLine(t, 5*time.Second, func(string) bool { return true })
	for name, q := range map[string]*patchfile.Patch{
		"function off its boundary": forge(func(m *patchfile.Manifest) { m.Functions[0].Addr += 4 }),
		// An .eh_frame boundary is not a symbol: a function located
		// there must say so and carry the bytes apply checks.
		"function at a boundary without its match": forge(func(m *patchfile.Manifest) {
			m.Functions[0].Match, m.Functions[0].Orig, m.Functions[0].OrigMask = "", nil, nil
		}),
		"variable outside the file": forge(func(m *patchfile.Manifest) {
			for i := range m.Symbols {
				if m.Symbols[i].Kind == patchfile.SymbolVariable {
					m.Symbols[i].Addr = 0x7000_0000
				}
			}
		}),
	} {
		if _, err := Apply(tg.Pid, q, Options{}); !errors.Is(err, ErrBadAddress) || strings.Contains(err.Error(), "bytes, not") {
			t.Errorf("%s: apply: got %v, want ErrBadAddress", name, err)
		} else {
			t.Logf("%s: refused: %v", name, err)
		}
	}
	scalesBy(t, tg, 2)
	assertRunning(t, tg.Pid)
}
