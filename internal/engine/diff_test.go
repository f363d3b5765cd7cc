package engine

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/build"
	"github.com/hotpatch/hotpatch/internal/diff"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// Live tests of diff mode (build.Diff): for each case under testdata/diff,
// the target is built from old.c, started, patched with the patch built from
// old.o/new.o, and must then print exactly what a program built from new.c
// prints for the same input; then the patch is reverted.

var sectionFlags = []string{"-ffunction-sections", "-fdata-sections", "-c"}

// ccompile runs gcc, or g++ for C++ sources.
func ccompile(t *testing.T, out string, args ...string) string {
	t.Helper()
	cc := "gcc"
	if slices.ContainsFunc(args, func(a string) bool { return strings.HasSuffix(a, ".cc") }) {
		cc = "g++"
	}
	if _, err := exec.LookPath(cc); err != nil {
		t.Skipf("%s not installed", cc)
	}
	if b, err := exec.Command(cc, append(args, "-o", out)...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", cc, strings.Join(args, " "), err, b)
	}
	return out
}

type diffBuild struct {
	bin, newBin, oldObj, newObj string
}

// buildDiffCase compiles a case: the target from old (with tflags), the new
// program (for the expected output) and the two objects (with oflags plus
// the section flags).
func buildDiffCase(t *testing.T, dir, name string, cxx bool, tflags, oflags []string) diffBuild {
	t.Helper()
	ext := ".c"
	if cxx {
		ext = ".cc"
	}
	// Both versions are called prog.c: the file name is the translation
	// unit's identity (STT_FILE), as in a real source tree.
	src := func(v string) string { return filepath.Join("testdata", "diff", name, v, "prog"+ext) }
	var b diffBuild
	b.bin = ccompile(t, filepath.Join(dir, "old"), append([]string{src("old")}, tflags...)...)
	b.newBin = ccompile(t, filepath.Join(dir, "new"), append([]string{src("new")}, tflags...)...)
	b.oldObj = ccompile(t, filepath.Join(dir, "old.o"), append(append([]string{src("old")}, oflags...), sectionFlags...)...)
	b.newObj = ccompile(t, filepath.Join(dir, "new.o"), append(append([]string{src("new")}, oflags...), sectionFlags...)...)
	return b
}

func diffPatch(t *testing.T, b diffBuild) (*patchfile.Patch, *build.Report, error) {
	t.Helper()
	p, rep, err := build.Build(build.Options{Target: b.bin, Old: []string{b.oldObj}, New: []string{b.newObj}})
	if err != nil {
		return nil, nil, err
	}
	enc, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	q, err := patchfile.Decode(enc)
	if err != nil {
		t.Fatal(err)
	}
	return q, rep, nil
}

// expected runs bin for n lines from start (see harness.h).
func expected(t *testing.T, bin string, start int64, n int) []string {
	t.Helper()
	out, err := exec.Command(bin, strconv.FormatInt(start, 10), strconv.Itoa(n)).Output()
	if err != nil {
		t.Fatalf("%s: %v", bin, err)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

func lineIndex(t *testing.T, l string) int64 {
	t.Helper()
	f := strings.Fields(l)
	if len(f) != 3 {
		t.Fatalf("bad line %q", l)
	}
	i, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		t.Fatalf("bad line %q", l)
	}
	return i
}

// nextLines skips one line (it may have been computed before the change)
// and returns the following n.
func nextLines(t *testing.T, tg *testutil.Target, n int) []string {
	t.Helper()
	// Lines printed before the change may still be in the pipe or on their
	// way to the channel: drain, give the reader time to catch up, drain.
	tg.Drain()
	time.Sleep(100 * time.Millisecond)
	tg.Drain()
	any := func(string) bool { return true }
	tg.WaitLine(t, 5*time.Second, any)
	var out []string
	for range n {
		out = append(out, tg.WaitLine(t, 5*time.Second, any))
	}
	return out
}

// behavesLike checks that the target's next lines are what bin prints.
func behavesLike(t *testing.T, tg *testutil.Target, bin string) {
	t.Helper()
	got := nextLines(t, tg, 4)
	want := expected(t, bin, lineIndex(t, got[0]), len(got))
	if !slices.Equal(got, want) {
		t.Fatalf("process prints\n%s\nwant (as %s)\n%s", strings.Join(got, "\n"), filepath.Base(bin), strings.Join(want, "\n"))
	}
}

func names(fs []build.Func) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Name)
	}
	return out
}

func hasData(rep *build.Report, prefix, kind string, st diff.Status) bool {
	for _, d := range rep.Data {
		if strings.HasPrefix(d.Name, prefix) && d.Kind == kind && d.Status == st {
			return true
		}
	}
	return false
}

func TestDiffMode(t *testing.T) {
	setup(t)
	O2 := []string{"-O2", "-g", "-flive-patching=inline-clone"}
	cases := []struct {
		name   string
		dir    string
		cxx    bool
		tflags []string // target flags; objects get the same unless oflags
		oflags []string
		// report checks the build report.
		report func(t *testing.T, r *build.Report)
		// check replaces the generic "behaves like new" check.
		check    func(t *testing.T, tg *testutil.Target)
		buildErr error
		errText  []string // in the build error
		applyErr error
	}{
		{name: "changed constant", dir: "constant", report: func(t *testing.T, r *build.Report) {
			if !slices.Equal(names(r.Replaced), []string{"compute"}) || len(r.Added) != 0 || !slices.Contains(names(r.Unchanged), "step") || !slices.Contains(names(r.Unchanged), "main") {
				t.Errorf("report: %+v", r)
			}
		}},
		{name: "changed constant -O0", dir: "constant", tflags: []string{"-O0", "-g"}},
		{name: "new static helper", dir: "newhelper", report: func(t *testing.T, r *build.Report) {
			if !slices.Equal(names(r.Replaced), []string{"compute"}) || !slices.Equal(names(r.Added), []string{"clamp"}) {
				t.Errorf("report: replaced %v added %v", names(r.Replaced), names(r.Added))
			}
		}},
		{name: "inlined static changed", dir: "inlined", report: func(t *testing.T, r *build.Report) {
			if !slices.Equal(names(r.Replaced), []string{"left", "right"}) {
				t.Errorf("replaced %v, want left and right (both inline scale)", names(r.Replaced))
			}
		}},
		{name: "new string literal", dir: "string", report: func(t *testing.T, r *build.Report) {
			if !hasData(r, `"fizz"`, "string", diff.New) || !hasData(r, `"odd"`, "string", diff.Unchanged) {
				t.Errorf("data: %+v", r.Data)
			}
		}},
		{name: "new static local", dir: "newstatic", report: func(t *testing.T, r *build.Report) {
			if !hasData(r, "table.", "variable", diff.New) {
				t.Errorf("data: %+v", r.Data)
			}
		}},
		{name: "existing static local survives", dir: "keepstatic", report: func(t *testing.T, r *build.Report) {
			if !hasData(r, "n.", "variable", diff.Unchanged) || !hasData(r, "seen.", "variable", diff.New) {
				t.Errorf("data: %+v", r.Data)
			}
		}, check: func(t *testing.T, tg *testutil.Target) {
			// next() counts calls in a static local: one per line, so the
			// patched next() must return i*1000, not restart from 1.
			for _, l := range nextLines(t, tg, 4) {
				var i, v int64
				fmt.Sscanf(l, "%d %d", &i, &v)
				if v != i*1000 {
					t.Fatalf("line %q: want %d: the static local did not carry over", l, i*1000)
				}
			}
		}},
		{name: "new global", dir: "newglobal", report: func(t *testing.T, r *build.Report) {
			if !hasData(r, "patched_calls", "variable", diff.New) {
				t.Errorf("data: %+v", r.Data)
			}
		}},
		{name: "changed initial value refused", dir: "initchange", buildErr: diff.ErrLiveData},
		{name: "function pointer table", dir: "fptable", report: func(t *testing.T, r *build.Report) {
			if !slices.Equal(names(r.Replaced), []string{"thrice"}) {
				t.Errorf("replaced %v", names(r.Replaced))
			}
		}},
		{name: "recursive", dir: "recursive"},
		{name: "C++ member and template", dir: "cpp", cxx: true, report: func(t *testing.T, r *build.Report) {
			if !slices.Equal(names(r.Replaced), []string{"_Z6scaledIlET_S0_", "_ZN3Acc3addEl"}) {
				t.Errorf("replaced %v", names(r.Replaced))
			}
		}},
		{name: "C++ exception through patched code", dir: "exception", cxx: true, report: func(t *testing.T, r *build.Report) {
			if !slices.Equal(names(r.Replaced), []string{"_Z5checkl"}) {
				t.Errorf("replaced %v", names(r.Replaced))
			}
		}},
		{name: "ipa-ra caller patched too", dir: "ipara", tflags: []string{"-O2", "-g"}, report: func(t *testing.T, r *build.Report) {
			if !slices.Equal(names(r.Replaced), []string{"caller", "leaf"}) {
				t.Errorf("replaced %v, want caller and leaf", names(r.Replaced))
			}
		}},
		// The run-pre check is done at build time against the target's file
		// (build --old/--new used to build the patch and leave the refusal to
		// apply's ErrMismatch): the error names what differs and the way out.
		{name: "target built with other flags", dir: "recursive", tflags: []string{"-O1", "-g"}, oflags: O2, buildErr: build.ErrNotReproduced,
			errText: []string{"functions that differ: fib (", "-O1", "build --src"}},
		// redis's case: OLD.o built with -O2 calls a clone (fill.constprop.0)
		// that the -O1 target does not have.
		{name: "object calls a clone the target lacks", dir: "clone", tflags: []string{"-O1", "-g"}, oflags: []string{"-O2", "-g"}, buildErr: build.ErrNotReproduced,
			errText: []string{"functions missing in the target: fill.constprop.0 (the patch calls it)", "build --src"}},
		{name: "LTO target refused", dir: "recursive", tflags: []string{"-O2", "-g", "-flto"}, oflags: O2, buildErr: build.ErrLTOTarget,
			errText: []string{"-flto", "GNU GIMPLE", "build --src"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel() // mostly compiling: overlap the cases
			tflags := c.tflags
			if tflags == nil {
				tflags = O2
			}
			oflags := c.oflags
			if oflags == nil {
				oflags = tflags
			}
			b := buildDiffCase(t, t.TempDir(), c.dir, c.cxx, tflags, oflags)
			p, rep, err := diffPatch(t, b)
			if c.buildErr != nil {
				if !errors.Is(err, c.buildErr) {
					t.Fatalf("build: got %v, want %v", err, c.buildErr)
				}
				for _, w := range c.errText {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("build error lacks %q: %v", w, err)
					}
				}
				t.Logf("refused: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("build: %v", err)
			}
			if c.report != nil {
				c.report(t, rep)
			}
			tg := testutil.Start(t, b.bin)
			tg.WaitLine(t, 5*time.Second, func(string) bool { return true })
			if c.applyErr != nil {
				maps0, text0 := snapshot(t, tg.Pid)
				_, err := Apply(tg.Pid, p, Options{})
				if !errors.Is(err, c.applyErr) {
					t.Fatalf("apply: got %v, want %v", err, c.applyErr)
				}
				t.Logf("refused: %v", err)
				maps1, text1 := snapshot(t, tg.Pid)
				if maps0 != maps1 || !bytes.Equal(text0, text1) {
					t.Errorf("target changed")
				}
				behavesLike(t, tg, b.bin)
				assertRunning(t, tg.Pid)
				return
			}
			if _, err := Apply(tg.Pid, p, Options{}); err != nil {
				t.Fatalf("apply: %v", err)
			}
			if c.check != nil {
				c.check(t, tg)
			} else {
				behavesLike(t, tg, b.newBin)
			}
			if _, err := Revert(tg.Pid, p.ID, Options{}); err != nil {
				t.Fatalf("revert: %v", err)
			}
			if c.check == nil {
				behavesLike(t, tg, b.bin)
			}
			if exited, err := tg.Exited(); exited {
				t.Fatalf("target died: %v; stderr: %s", err, tg.Stderr())
			}
			assertRunning(t, tg.Pid)
		})
	}
}
