package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/testutil"
)

// zlibDir is ../shared/realworld/zlib from the repository root (read-only on
// CI: everything is copied out before use).
var zlibDir = filepath.Join("..", "..", "..", "shared", "realworld", "zlib")

// zlibFixes are the two upstream commits of CVE-2022-37434.
func zlibFixes() []string {
	return []string{filepath.Join(zlibDir, "CVE-2022-37434-1.patch"), filepath.Join(zlibDir, "CVE-2022-37434-2.patch")}
}

// sharedZlib is zlib 1.2.12 unpacked once per test binary: the pristine
// tree, a target built from it (its defaults, plus -g so that the target
// records its flags, as distributions' debug info does), and the
// CVE-2022-37434 reproducer linked against the target.
var sharedZlib struct {
	once                  sync.Once
	err                   error
	root, src, lib, repro string
	// The target built with link-time optimisation, once, on first use.
	ltoOnce sync.Once
	ltoErr  error
	ltoLib  string
}

// zlibLTOFlags are the flags of the LTO target and of its build command.
const zlibLTOFlags = "-O2 -flto"

// needZlibLTO builds (once) zlib with CFLAGS="-O2 -flto -g" as the running
// library of the LTO test; the reproducer runs against it through
// LD_LIBRARY_PATH (same soname).
func needZlibLTO(t *testing.T) {
	t.Helper()
	needZlib(t)
	z := &sharedZlib
	z.ltoOnce.Do(func() {
		tgt := filepath.Join(z.root, "target-lto")
		if z.ltoErr = run(z.root, nil, "cp", "-a", z.src, tgt); z.ltoErr != nil {
			return
		}
		z.ltoErr = run(tgt, []string{"CFLAGS=" + zlibLTOFlags + " -g"}, "sh", "-c", "./configure && make -j2 libz.so.1.2.12")
		z.ltoLib = filepath.Join(tgt, "libz.so.1.2.12")
	})
	if z.ltoErr != nil {
		t.Fatal(z.ltoErr)
	}
}

// zlibBuild is the build command of the tests: zlib's defaults, the shared
// library only (the examples and the static library are not the target).
var zlibBuild = []string{"sh", "-c", "./configure && make -j2 libz.so.1.2.12"}

func needZlib(t *testing.T) {
	t.Helper()
	testutil.NeedGCC(t)
	if _, err := os.Stat(filepath.Join(zlibDir, "zlib-1.2.12.tar.gz")); err != nil {
		t.Skipf("zlib 1.2.12 not found at %s (../shared/realworld/zlib from the repository root): %v", zlibDir, err)
	}
	for _, tool := range []string{"make", "patch", "tar"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	z := &sharedZlib
	z.once.Do(func() { z.err = setupZlib() })
	if z.err != nil {
		t.Fatal(z.err)
	}
}

func run(dir string, env []string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s in %s: %v\n%s", name, strings.Join(args, " "), dir, err, out)
	}
	return nil
}

func setupZlib() error {
	z := &sharedZlib
	root, err := os.MkdirTemp("", "hotpatch-zlib-")
	if err != nil {
		return err
	}
	z.root = root
	tgz, err := filepath.Abs(filepath.Join(zlibDir, "zlib-1.2.12.tar.gz"))
	if err != nil {
		return err
	}
	if err := run(root, nil, "tar", "xzf", tgz); err != nil {
		return err
	}
	z.src = filepath.Join(root, "zlib-1.2.12")
	tgt := filepath.Join(root, "target")
	if err := run(root, nil, "cp", "-a", z.src, tgt); err != nil {
		return err
	}
	if err := run(tgt, []string{"CFLAGS=-O3 -g"}, "sh", "-c", "./configure && make -j2 libz.so.1.2.12"); err != nil {
		return err
	}
	z.lib = filepath.Join(tgt, "libz.so.1.2.12")
	z.repro = filepath.Join(root, "zlib_extra")
	repro, _ := filepath.Abs("testdata/zlib_extra.c")
	return run(root, nil, "gcc", "-O2", "-I", tgt, repro, "-o", z.repro, filepath.Join(tgt, "libz.so.1.2.12"))
}

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedZlib.root != "" {
		os.RemoveAll(sharedZlib.root)
	}
	os.Exit(code)
}

// waitOverflowState reads a reproducer's lines until it has printed want
// ("ok" or "overflow") n times in a row, allowing the rounds in flight when
// the state changed.
func waitOverflowState(t *testing.T, tg *testutil.Target, want string, n int) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	run := 0
	for run < n {
		select {
		case l, ok := <-tg.Lines:
			if !ok {
				t.Fatalf("reproducer %d exited: %s", tg.Pid, tg.Stderr())
			}
			if strings.HasPrefix(l, want+" ") {
				run++
			} else {
				run = 0
			}
		case <-deadline:
			t.Fatalf("reproducer %d: no %d %q lines in a row within 30s", tg.Pid, n, want)
		}
	}
}

// zlibBuildArgs is `hotpatch build --src` of the pristine zlib tree with the
// two CVE fixes against target, followed by more (its other flags).
func zlibBuildArgs(target string, more ...string) []string {
	args := []string{"build", "--src", sharedZlib.src, "--target", target}
	for _, f := range zlibFixes() {
		args = append(args, "--fix", f)
	}
	return append(args, more...)
}

// overflowCycle checks hp on running reproducers: they overflow, apply
// stops the overflow in every one, revert brings it back.
func overflowCycle(t *testing.T, hp string, procs ...*testutil.Target) {
	t.Helper()
	pidArgs := []string{}
	for _, p := range procs {
		waitOverflowState(t, p, "overflow", 2)
		pidArgs = append(pidArgs, "--pid", fmt.Sprint(p.Pid))
	}
	mustCLI(t, append([]string{"apply", hp, "--allow-unsigned"}, pidArgs...)...)
	for _, p := range procs {
		waitOverflowState(t, p, "ok", 5)
	}
	mustCLI(t, append([]string{"revert", hp}, pidArgs...)...)
	for _, p := range procs {
		waitOverflowState(t, p, "overflow", 2)
	}
}

// TestBuildSrcZlibCVE: one `hotpatch build --src` of zlib 1.2.12 (its
// defaults, -O3) with the two upstream CVE-2022-37434 commits; the patch
// stops the overflow in running processes, and revert brings it back.
func TestBuildSrcZlibCVE(t *testing.T) {
	needZlib(t)
	testutil.NeedPtrace(t)
	z := &sharedZlib
	d := t.TempDir()
	hp := filepath.Join(d, "zlib-cve.hp")
	args := zlibBuildArgs(z.lib, "-o", hp, "--id", fmt.Sprintf("zlib-cve-%d", os.Getpid()), "--json")
	out, errs, code := runCLI(t, append(args, append([]string{"--"}, zlibBuild...)...)...)
	if code != 0 {
		t.Fatalf("build --src: exit %d\n%s%s", code, out, errs)
	}
	var rep struct {
		Replaced []struct{ Name string }
		Added    []struct{ Name string }
		Source   struct {
			Verified int                     `json:"verified_functions"`
			Units    []struct{ Name string } `json:"changed_units"`
			Stages   []struct{ Name string }
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("build --json: %v\n%s", err, out)
	}
	if len(rep.Replaced) != 1 || rep.Replaced[0].Name != "inflate" || len(rep.Added) != 0 {
		t.Fatalf("want inflate replaced, nothing added: %s", out)
	}
	if rep.Source.Verified < 100 || len(rep.Source.Units) != 1 || !strings.Contains(rep.Source.Units[0].Name, "inflate") {
		t.Fatalf("want >= 100 verified functions and inflate's object the one changed unit: %s", out)
	}
	for _, stage := range []string{"copy", "build orig", "link-check", "build fixed", "compare"} {
		if !strings.Contains(errs, "] "+stage) {
			t.Errorf("no progress line for stage %q:\n%s", stage, errs)
		}
	}

	t.Setenv("LD_LIBRARY_PATH", filepath.Dir(z.lib))
	overflowCycle(t, hp, testutil.Start(t, z.repro), testutil.Start(t, z.repro))
}

// TestBuildSrcZlibLTO: zlib 1.2.12 built with CFLAGS="-O2 -flto": its
// objects hold no machine code, so build --src compares the two builds'
// linked libraries; one command, and the patch stops the overflow in running
// processes, and revert brings it back.
func TestBuildSrcZlibLTO(t *testing.T) {
	needZlibLTO(t)
	testutil.NeedPtrace(t)
	z := &sharedZlib
	hp := filepath.Join(t.TempDir(), "zlib-lto.hp")
	args := zlibBuildArgs(z.ltoLib, "-o", hp, "--id", fmt.Sprintf("zlib-lto-%d", os.Getpid()), "--json")
	out, errs, code := runCLI(t, append(args, "--", "sh", "-c", "CFLAGS='"+zlibLTOFlags+"' ./configure && make -j2 libz.so.1.2.12")...)
	if code != 0 {
		t.Fatalf("build --src: exit %d\n%s%s", code, out, errs)
	}
	var rep struct {
		Replaced []struct{ Name string }
		Source   struct {
			Verified int                     `json:"verified_functions"`
			Units    []struct{ Name string } `json:"changed_units"`
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("build --json: %v\n%s", err, out)
	}
	if len(rep.Replaced) != 1 || rep.Replaced[0].Name != "inflate" {
		t.Fatalf("want inflate replaced: %s", out)
	}
	if rep.Source.Verified < 100 || len(rep.Source.Units) != 1 || !strings.Contains(rep.Source.Units[0].Name, "(linked)") {
		t.Fatalf("want >= 100 verified functions and the linked library the changed unit: %s", out)
	}
	t.Setenv("LD_LIBRARY_PATH", filepath.Dir(z.ltoLib))
	overflowCycle(t, hp, testutil.Start(t, z.repro), testutil.Start(t, z.repro))
}

// TestBuildSrcOtherFlags: the target was built with -O3; a tree built with
// -O2 does not reproduce it, and build refuses at build time, naming the
// functions and the flags that differ.
func TestBuildSrcOtherFlags(t *testing.T) {
	needZlib(t)
	z := &sharedZlib
	d := t.TempDir()
	args := zlibBuildArgs(z.lib, "-o", filepath.Join(d, "x.hp"), "--work", filepath.Join(d, "work"))
	errs := wantExit(t, exitRefused, append(args, "--", "sh", "-c", "CFLAGS=-O2 ./configure && make -j2 libz.so.1.2.12")...)
	for _, want := range []string{"does not reproduce the target", "differ", "the target has -O3", "the original build -O2", "work directory kept"} {
		if !strings.Contains(errs, want) {
			t.Errorf("error lacks %q:\n%s", want, errs)
		}
	}
	if _, err := os.Stat(filepath.Join(d, "work", "fixed")); err != nil {
		t.Errorf("the work directory should be kept on failure: %v", err)
	}
	if _, err := os.Stat(filepath.Join(d, "work", "orig", "libz.so.1.2.12")); err != nil {
		t.Errorf("the original build should be kept on failure: %v", err)
	}
}

// srcProject copies testdata/srcproj and builds it there as the running
// program would be built.
func srcProject(t *testing.T) (src, prog string) {
	t.Helper()
	testutil.NeedGCC(t)
	src, inst := installProject(t, "testdata/srcproj", nil, "make")
	return src, filepath.Join(inst, "prog")
}

// installProject copies the project testdata twice into a temporary
// directory: src, the tree to patch, and inst, built there with build (run
// with env added) as the running program is.
func installProject(t *testing.T, testdata string, env []string, build ...string) (src, inst string) {
	t.Helper()
	d := t.TempDir()
	src, inst = filepath.Join(d, "src"), filepath.Join(d, "installed")
	for _, to := range []string{src, inst} {
		if err := run(".", nil, "cp", "-r", testdata, to); err != nil {
			t.Fatal(err)
		}
	}
	if err := run(inst, env, build[0], build[1:]...); err != nil {
		t.Fatal(err)
	}
	return src, inst
}

// buildSays checks that build's output holds every one of wants.
func buildSays(t *testing.T, out string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(out, want) {
			t.Errorf("build output lacks %q:\n%s", want, out)
		}
	}
}

// appliesLive starts prog, waits for it to print before, applies hp
// (unsigned, with flags) and waits for it to print after.
func appliesLive(t *testing.T, prog, hp, before, after string, flags ...string) *testutil.Target {
	t.Helper()
	tg := testutil.Start(t, prog)
	tg.WaitLine(t, 10*time.Second, func(l string) bool { return l == before })
	mustCLI(t, append([]string{"apply", hp, "--pid", fmt.Sprint(tg.Pid), "--allow-unsigned"}, flags...)...)
	tg.WaitLine(t, 10*time.Second, func(l string) bool { return l == after })
	return tg
}

// TestBuildSrcNewStaticAndVariable: a fix that adds a static function and a
// file-scope variable; the patch adds both and the running program uses them.
func TestBuildSrcNewStaticAndVariable(t *testing.T) {
	testutil.NeedPtrace(t)
	src, prog := srcProject(t)
	hp := filepath.Join(t.TempDir(), "fix.hp")
	out := mustCLI(t, "build", "--src", src, "--fix", "testdata/srcproj-static.patch", "--target", prog, "-o", hp, "--verbose", "--", "make")
	buildSays(t, out, "replace compute", "add     count_call", "new       variable calls")
	appliesLive(t, prog, hp, "21 22", "120 22")
}

// TestBuildSrcHeaderInline: a fix of an inline function in a header changes
// both files that use it; both callers are replaced.
func TestBuildSrcHeaderInline(t *testing.T) {
	testutil.NeedPtrace(t)
	src, prog := srcProject(t)
	hp := filepath.Join(t.TempDir(), "fix.hp")
	out := mustCLI(t, "build", "--src", src, "--fix", "testdata/srcproj-header.patch", "--target", prog, "-o", hp, "--", "make")
	buildSays(t, out, "replace compute", "replace other", "2 translation unit(s) changed")
	if strings.Contains(out, "keep") {
		t.Errorf("the default summary should not list unchanged functions:\n%s", out)
	}
	appliesLive(t, prog, hp, "21 22", "31 32")
}

// TestBuildSrcFixDoesNotApply: a fix whose hunk does not match the tree is a
// clear error naming the file and the hunk, before anything is built; the
// source tree is untouched.
func TestBuildSrcFixDoesNotApply(t *testing.T) {
	src, prog := srcProject(t)
	before := sha(t, filepath.Join(src, "lib.c"))
	errs := wantExit(t, exitFailure, "build", "--src", src, "--fix", "testdata/srcproj-static.patch", "--fix", "testdata/srcproj-bad.patch",
		"--target", prog, "-o", filepath.Join(t.TempDir(), "x.hp"), "--work", filepath.Join(t.TempDir(), "work"), "--", "make")
	for _, want := range []string{"fix does not apply", "srcproj-bad.patch", "lib.c hunk #1 (at line 3)"} {
		if !strings.Contains(errs, want) {
			t.Errorf("error lacks %q:\n%s", want, errs)
		}
	}
	if strings.Contains(errs, "build orig") {
		t.Errorf("nothing should be built when a fix does not apply:\n%s", errs)
	}
	if sha(t, filepath.Join(src, "lib.c")) != before {
		t.Error("the source tree was written")
	}
	if _, err := os.Stat(filepath.Join(src, "main.o")); err == nil {
		t.Error("the source tree was built in")
	}
}

// TestBuildSrcZlibStatic: zlib as a static library linked into an
// executable (the reproducer itself); the build command builds libz.a and
// links the program, and build --src finds zlib's objects in the archive.
func TestBuildSrcZlibStatic(t *testing.T) {
	needZlib(t)
	testutil.NeedPtrace(t)
	z := &sharedZlib
	d := t.TempDir()
	repro, _ := filepath.Abs("testdata/zlib_extra.c")
	command := []string{"sh", "-c", "./configure --static && make -j2 libz.a && cc -O2 -I. " + repro + " libz.a -o zlib_extra"}
	inst := filepath.Join(d, "installed")
	if err := run(".", nil, "cp", "-a", z.src, inst); err != nil {
		t.Fatal(err)
	}
	if err := run(inst, nil, command[0], command[1:]...); err != nil {
		t.Fatal(err)
	}
	prog := filepath.Join(inst, "zlib_extra")
	hp := filepath.Join(d, "fix.hp")
	args := zlibBuildArgs(prog, "-o", hp, "--id", fmt.Sprintf("zlib-static-%d", os.Getpid()))
	out := mustCLI(t, append(args, append([]string{"--"}, command...)...)...)
	if !strings.Contains(out, "replace inflate ") || !strings.Contains(out, "1 translation unit(s) changed") {
		t.Fatalf("want inflate replaced, from one changed object of libz.a:\n%s", out)
	}
	overflowCycle(t, hp, testutil.Start(t, prog))
}

// TestBuildSrcLTOIPARA: a target built with -O2 -flto, patched through the
// linked-output route, where -fipa-ra reaches across files: the fix makes
// mix (callee.c) clobber the argument registers that combine (caller.c)
// kept its values in across the call, so the fixed build's combine saves
// them. The comparison of the linked outputs finds combine changed too and
// the patch replaces both; had it replaced mix alone, the old combine would
// add clobbered registers and print garbage instead of 34.
func TestBuildSrcLTOIPARA(t *testing.T) {
	testutil.NeedPtrace(t)
	testutil.NeedGCC(t)
	src, inst := installProject(t, "testdata/srcproj-lto", nil, "make")
	prog := filepath.Join(inst, "prog")
	hp := filepath.Join(t.TempDir(), "fix.hp")
	out := mustCLI(t, "build", "--src", src, "--fix", "testdata/srcproj-lto.patch", "--target", prog, "-o", hp, "--", "make")
	buildSays(t, out, "replace mix ", "replace combine ", "1 translation unit(s) changed")
	tg := appliesLive(t, prog, hp, "33", "34")
	for i := 0; i < 5; i++ {
		tg.WaitLine(t, 10*time.Second, func(l string) bool {
			if l != "34" {
				t.Fatalf("after the patch the program printed %q, want 34 (a caller not patched with its callee?)", l)
			}
			return true
		})
	}
}

// TestBuildSrcCXX: a C++ fix through --src (the g++ shim), with --cold (the
// fixed build's program as the coldpatch).
func TestBuildSrcCXX(t *testing.T) {
	testutil.NeedPtrace(t)
	if _, err := exec.LookPath("g++"); err != nil {
		t.Skip("no g++")
	}
	src, inst := installProject(t, "testdata/srcproj-cxx", nil, "make")
	prog := filepath.Join(inst, "prog")
	hp := filepath.Join(t.TempDir(), "fix.hp")
	out := mustCLI(t, "build", "--src", src, "--fix", "testdata/srcproj-cxx.patch", "--target", prog, "-o", hp, "--cold", "--", "make")
	buildSays(t, out, "replace _ZNK5Shape4areaEv", "(Shape::area() const)", "coldpatch")
	appliesLive(t, prog, hp, "100", "101", "--no-cold")
}

// TestBuildSrcRust: a Rust fix through --src (cargo, no crates): the
// wrapper keeps rustc's codegen-unit objects, the patch replaces the fixed
// function, shown demangled, in the running program.
func TestBuildSrcRust(t *testing.T) {
	testutil.NeedPtrace(t)
	if _, err := exec.LookPath("cargo"); err != nil {
		t.Skip("no cargo")
	}
	// CARGO_TARGET_DIR, relative, is taken from the built tree (inst).
	src, inst := installProject(t, "testdata/srcproj-rust", []string{"CARGO_TARGET_DIR=target"}, "cargo", "build", "--release", "--offline")
	prog := filepath.Join(inst, "target", "release", "prog")
	hp := filepath.Join(t.TempDir(), "fix.hp")
	out := mustCLI(t, "build", "--src", src, "--fix", "testdata/srcproj-rust.patch", "--target", prog, "-o", hp, "--", "cargo", "build", "--release", "--offline")
	if !strings.Contains(out, "replace _ZN4prog7compute") || !strings.Contains(out, "(prog::compute::h") {
		t.Fatalf("want prog::compute replaced:\n%s", out)
	}
	appliesLive(t, prog, hp, "42", "43")
}

// TestBuildSrcBuildFails: a failing build command is an error that names
// the tree and the build log, and keeps the work directory.
func TestBuildSrcBuildFails(t *testing.T) {
	src, prog := srcProject(t)
	work := filepath.Join(t.TempDir(), "work")
	errs := wantExit(t, exitFailure, "build", "--src", src, "--fix", "testdata/srcproj-static.patch", "--target", prog,
		"-o", filepath.Join(t.TempDir(), "x.hp"), "--work", work, "--", "make", "no-such-target")
	log := filepath.Join(work, "build-orig.log")
	for _, want := range []string{"build command failed in the orig tree", "see the build log " + log, "work directory kept: " + work} {
		if !strings.Contains(errs, want) {
			t.Errorf("error lacks %q:\n%s", want, errs)
		}
	}
	if b, err := os.ReadFile(log); err != nil || !strings.Contains(string(b), "no-such-target") {
		t.Errorf("the build log should hold make's complaint: %v %q", err, b)
	}
}

// TestBuildObjectModesLTOTarget: by-name and object-diff builds against a
// target built with -flto are refused with the way out (build --src): no
// object compiled alone has its code.
func TestBuildObjectModesLTOTarget(t *testing.T) {
	testutil.NeedGCC(t)
	d := t.TempDir()
	_, inst := installProject(t, "testdata/srcproj-lto", nil, "make")
	obj := filepath.Join(d, "callee.o")
	if err := run(inst, nil, "gcc", "-O2", "-g", "-ffunction-sections", "-fdata-sections", "-c", "callee.c", "-o", obj); err != nil {
		t.Fatal(err)
	}
	prog := filepath.Join(inst, "prog")
	for _, args := range [][]string{
		{"build", "--new", obj, "--target", prog, "-o", filepath.Join(d, "a.hp")},
		{"build", "--old", obj, "--new", obj, "--target", prog, "-o", filepath.Join(d, "b.hp")},
	} {
		errs := wantExit(t, exitRefused, args...)
		for _, want := range []string{"built with -flto", "GNU GIMPLE", "build --src"} {
			if !strings.Contains(errs, want) {
				t.Errorf("%v: error lacks %q:\n%s", args, want, errs)
			}
		}
	}
}

// TestBuildSrcNewFile: a fix that adds a translation unit (extra.c, with a
// static variable, linked in by the Makefile change) and calls its function
// from an existing one: compute is replaced, bonus added from the new
// object, and the running program uses them.
func TestBuildSrcNewFile(t *testing.T) {
	testutil.NeedPtrace(t)
	src, prog := srcProject(t)
	hp := filepath.Join(t.TempDir(), "fix.hp")
	out := mustCLI(t, "build", "--src", src, "--fix", "testdata/srcproj-newfile.patch", "--target", prog, "-o", hp, "--verbose", "--", "make")
	buildSays(t, out, "replace compute", "add     bonus", "new       variable bonus_calls", "1 translation unit(s) changed")
	appliesLive(t, prog, hp, "21 22", "121 22")
}

// TestBuildSrcNewFunctionAcrossFiles: a fix that adds a function to one
// existing file (other.c) and calls it from another (lib.c): the two
// changed objects could not be patched one by one (each is linked alone
// against the target, which has no tripled), so build --src compares the
// linked outputs and the patch holds both in one object.
func TestBuildSrcNewFunctionAcrossFiles(t *testing.T) {
	testutil.NeedPtrace(t)
	src, prog := srcProject(t)
	hp := filepath.Join(t.TempDir(), "fix.hp")
	out, errs, code := runCLI(t, "build", "--src", src, "--fix", "testdata/srcproj-crossfile.patch", "--target", prog, "-o", hp, "--", "make")
	if code != 0 {
		t.Fatalf("build --src: exit %d\n%s%s", code, out, errs)
	}
	buildSays(t, out, "replace compute", "add     tripled", "1 translation unit(s) changed")
	if !strings.Contains(errs, "lib.o calls tripled, which the fix adds to other.o: comparing the linked outputs") {
		t.Errorf("the progress should say why the linked outputs are compared:\n%s", errs)
	}
	appliesLive(t, prog, hp, "21 22", "23 22")
}
