package engine

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/build"
	"github.com/hotpatch/hotpatch/internal/linker"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/procmaps"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// Flags of the test targets: optimised like production code; the patches
// add the two section flags, as docs/ tells users to.
var (
	targetFlags = []string{"-O2", "-g", "-pthread", "-flive-patching=inline-clone"}
	objFlags    = []string{"-O2", "-ffunction-sections", "-fdata-sections", "-c"}
)

func setup(t *testing.T) string {
	t.Helper()
	testutil.NeedGCC(t)
	testutil.NeedPtrace(t)
	return t.TempDir()
}

func compileTarget(t *testing.T, dir, src string, extra ...string) string {
	t.Helper()
	out := filepath.Join(dir, strings.TrimSuffix(src, ".c")+strings.Join(extra, ""))
	args := append(append([]string{filepath.Join("testdata", src)}, targetFlags...), extra...)
	return testutil.Compile(t, out, args...)
}

func compileObj(t *testing.T, dir, src string, extra ...string) string {
	t.Helper()
	out := filepath.Join(dir, strings.TrimSuffix(src, ".c")+".o")
	args := append(append([]string{filepath.Join("testdata", src)}, objFlags...), extra...)
	return testutil.Compile(t, out, args...)
}

func buildPatch(t *testing.T, target string, objs ...string) *patchfile.Patch {
	t.Helper()
	p, _, err := build.ByName(build.Options{Target: target, New: objs})
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	// Go through the file format, as the CLI does.
	b, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	q, err := patchfile.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// startWithPatch compiles testdata/src as the target and newSrc as its
// fix, builds the patch and starts the target.
func startWithPatch(t *testing.T, src, newSrc string) (*testutil.Target, *patchfile.Patch) {
	t.Helper()
	dir := setup(t)
	bin := compileTarget(t, dir, src)
	p := buildPatch(t, bin, compileObj(t, dir, newSrc))
	return testutil.Start(t, bin), p
}

// parsePair parses "a b" lines printed by basic.c.
func parsePair(l string) (int64, int64, bool) {
	f := strings.Fields(l)
	if len(f) != 2 {
		return 0, 0, false
	}
	a, err1 := strconv.ParseInt(f[0], 10, 64)
	b, err2 := strconv.ParseInt(f[1], 10, 64)
	return a, b, err1 == nil && err2 == nil
}

func ratio(k int64) func(string) bool {
	return func(l string) bool {
		a, b, ok := parsePair(l)
		return ok && b == a*k
	}
}

// freshRatio drops the lines read so far and waits up to d for a line of
// the running code: i and k*i.
func freshRatio(t *testing.T, tg *testutil.Target, d time.Duration, k int64) {
	t.Helper()
	tg.Drain()
	tg.WaitLine(t, d, ratio(k))
}

func TestApplyRevertSingleThread(t *testing.T) {
	for _, pie := range []struct {
		name  string
		flags []string
	}{{"pie", []string{"-fPIE", "-pie"}}, {"nopie", []string{"-fno-pie", "-no-pie"}}} {
		t.Run(pie.name, func(t *testing.T) {
			dir := setup(t)
			bin := compileTarget(t, dir, "basic.c", pie.flags...)
			objFl := []string{"-fPIE"}
			if pie.name == "nopie" {
				objFl = []string{"-fno-pie"}
			}
			obj := compileObj(t, dir, "basic_new.c", objFl...)
			p := buildPatch(t, bin, obj)
			tg := testutil.Start(t, bin)
			tg.WaitLine(t, 5*time.Second, ratio(2))

			rep, err := Apply(tg.Pid, p, Options{})
			if err != nil {
				t.Fatalf("apply: %v", err)
			}
			if len(rep.Functions) != 1 || rep.Functions[0].Name != "compute" || rep.Pause <= 0 {
				t.Fatalf("report: %+v", rep)
			}
			t.Logf("apply pause %v, elapsed %v", rep.Pause, rep.Elapsed)
			checkPhases(t, "apply", rep.Phases, rep.Elapsed, "stop, check")
			// One thread: the region is mapped in the same stop as the
			// checks and the jumps, not in a one-thread stop of its own.
			if rep.AllocPause != 0 || !hasPhase(rep.Phases, phaseOneStop) {
				t.Errorf("one-thread target: alloc pause %v, phases %+v; want the region mapped in the one stop", rep.AllocPause, rep.Phases)
			}
			tg.Drain()
			tg.WaitLine(t, time.Second, ratio(3))

			st, err := Status(tg.Pid)
			if err != nil || len(st.Patches) != 1 || st.Patches[0].ID != p.ID || st.Patches[0].StateName != "applied" {
				t.Fatalf("status: %+v %v", st, err)
			}
			// Applying again is a no-op that says so.
			again, err := Apply(tg.Pid, p, Options{})
			if err != nil || !again.AlreadyApplied {
				t.Fatalf("second apply: %+v %v", again, err)
			}

			rrep, err := Revert(tg.Pid, p.ID, Options{})
			if err != nil {
				t.Fatalf("revert: %v", err)
			}
			t.Logf("revert pause %v freed=%v %s", rrep.Pause, rrep.Freed, rrep.Retained)
			checkPhases(t, "revert", rrep.Phases, rrep.Elapsed, "stop, check")
			tg.Drain()
			tg.WaitLine(t, time.Second, ratio(2))
			if !rrep.Freed {
				t.Errorf("region not freed: %s", rrep.Retained)
			}
			if !hasPhase(rrep.Phases, phaseRevertOneStop) {
				t.Errorf("one-thread target: revert phases %+v; want the region freed in the one stop", rrep.Phases)
			}
			st, _ = Status(tg.Pid)
			if len(st.Patches) != 0 {
				t.Errorf("status after revert: %+v", st.Patches)
			}
			if _, err := Revert(tg.Pid, p.ID, Options{}); !errors.Is(err, ErrNotApplied) {
				t.Errorf("second revert: %v", err)
			}
			assertRunning(t, tg.Pid)
		})
	}
}

// assertRunning checks no thread of pid is left stopped or traced.
func assertRunning(t *testing.T, pid int) {
	t.Helper()
	states, err := testutil.ThreadStates(pid)
	if err != nil {
		t.Fatal(err)
	}
	for tid, s := range states {
		if s == "t" || s == "T" {
			t.Errorf("thread %d left in state %s", tid, s)
		}
	}
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if !bytes.Contains(b, []byte("TracerPid:\t0\n")) {
		t.Errorf("process still traced")
	}
}

func TestThreadsHammer(t *testing.T) {
	dir := setup(t)
	bin := compileTarget(t, dir, "threads.c")
	obj := compileObj(t, dir, "basic_new.c")
	p := buildPatch(t, bin, obj)
	tg := testutil.Start(t, bin)
	tg.WaitLine(t, 5*time.Second, func(l string) bool { return strings.HasPrefix(l, "old ") })
	cycles := 100
	if testing.Short() {
		cycles = 20
	}
	var pauses []time.Duration
	for i := 0; i < cycles; i++ {
		rep, err := Apply(tg.Pid, p, Options{})
		if err != nil {
			t.Fatalf("cycle %d apply: %v", i, err)
		}
		pauses = append(pauses, rep.Pause)
		if _, err := Revert(tg.Pid, p.ID, Options{}); err != nil {
			t.Fatalf("cycle %d revert: %v", i, err)
		}
		if exited, err := tg.Exited(); exited {
			t.Fatalf("target died at cycle %d: %v; stderr: %s", i, err, tg.Stderr())
		}
	}
	// Leave it applied for a moment: both results must have been seen.
	if _, err := Apply(tg.Pid, p, Options{}); err != nil {
		t.Fatal(err)
	}
	// The counts are cumulative; wait (generously: CI machines are loaded)
	// for a report in which both results have been seen.
	tg.WaitLine(t, 10*time.Second, func(l string) bool {
		var olds, news int64
		n, _ := fmt.Sscanf(l, "old %d new %d", &olds, &news)
		return n == 2 && olds > 0 && news > 0
	})
	if exited, err := tg.Exited(); exited {
		t.Fatalf("target died: %v; stderr: %s", err, tg.Stderr())
	}
	if s := tg.Stderr(); s != "" {
		t.Fatalf("target reported: %s", s)
	}
	assertRunning(t, tg.Pid)
	t.Logf("%d cycles, apply pauses: first %v last %v", cycles, pauses[0], pauses[len(pauses)-1])
}

func TestLibcAndStaticVariable(t *testing.T) {
	dir := setup(t)
	bin := compileTarget(t, dir, "libc.c")
	obj := compileObj(t, dir, "libc_new.c")
	p := buildPatch(t, bin, obj)
	tg := testutil.Start(t, bin)
	var before int
	l := tg.WaitLine(t, 5*time.Second, func(l string) bool { return strings.HasPrefix(l, "v1 ") })
	fmt.Sscanf(l[strings.Index(l, "calls="):], "calls=%d", &before)
	if _, err := Apply(tg.Pid, p, Options{}); err != nil {
		t.Fatalf("apply: %v", err)
	}
	l = tg.WaitLine(t, 2*time.Second, func(l string) bool { return strings.HasPrefix(l, "v2 ") })
	var after, length int
	var v int
	if _, err := fmt.Sscanf(l, "v2 value=%d calls=%d len=%d", &v, &after, &length); err != nil {
		t.Fatalf("parse %q: %v", l, err)
	}
	if after <= before || after > before+100 {
		t.Errorf("static variable did not carry over: %d before, %d after (%q)", before, after, l)
	}
	if length != 3 {
		t.Errorf("strlen through the IFUNC gave %d: %q", length, l)
	}
	if _, err := Revert(tg.Pid, p.ID, Options{}); err != nil {
		t.Fatal(err)
	}
	tg.Drain()
	tg.WaitLine(t, 2*time.Second, func(l string) bool { return strings.HasPrefix(l, "v1 ") })
}

func TestBlockedSyscalls(t *testing.T) {
	dir := setup(t)
	bin := compileTarget(t, dir, "blocking.c")
	obj := compileObj(t, dir, "basic_new.c")
	p := buildPatch(t, bin, obj)
	tg := testutil.Start(t, bin)
	tg.WaitLine(t, 5*time.Second, func(l string) bool { return l == "ready 42" })
	// Patch and revert while every thread is blocked: the injected system
	// calls run on one of them.
	for i := 0; i < 3; i++ {
		if _, err := Apply(tg.Pid, p, Options{}); err != nil {
			t.Fatalf("apply: %v", err)
		}
		if _, err := Revert(tg.Pid, p.ID, Options{}); err != nil {
			t.Fatalf("revert: %v", err)
		}
	}
	if _, err := Apply(tg.Pid, p, Options{}); err != nil {
		t.Fatalf("apply: %v", err)
	}
	fmt.Fprintln(tg.Stdin, "go")
	got := map[string]string{}
	for len(got) < 4 {
		l := tg.WaitLine(t, 5*time.Second, func(string) bool { return true })
		f := strings.Fields(l)
		got[f[0]] = l
	}
	var ms, rc, errno int
	fmt.Sscanf(got["sleep"], "sleep %d %d %d", &ms, &rc, &errno)
	if rc != 0 || ms < 1990 || ms > 3000 {
		t.Errorf("nanosleep of 2 s: %q", got["sleep"])
	}
	if got["read"] != "read 5 hello 0" {
		t.Errorf("read: %q", got["read"])
	}
	if got["cond"] != "cond 0" {
		t.Errorf("cond: %q", got["cond"])
	}
	if got["done"] != "done 63" {
		t.Errorf("patched compute after the stop: %q", got["done"])
	}
}

// textBytes returns every executable mapping's bytes and the maps text.
func snapshot(t *testing.T, pid int) (string, []byte) {
	t.Helper()
	maps, err := procmaps.Read(pid)
	if err != nil {
		t.Fatal(err)
	}
	var text []byte
	var lines []string
	for _, m := range maps {
		lines = append(lines, fmt.Sprintf("%x-%x %s %s", m.Start, m.End, m.Perms, m.Path))
		if m.Executable() && m.Path != "[vsyscall]" {
			b := make([]byte, m.End-m.Start)
			if err := proc.ReadMem(pid, m.Start, b); err != nil {
				t.Fatalf("read %s: %v", m.Path, err)
			}
			text = append(text, b...)
		}
	}
	return strings.Join(lines, "\n"), text
}

func TestFailuresLeaveTargetUntouched(t *testing.T) {
	dir := setup(t)
	bin := compileTarget(t, dir, "basic.c")
	other := compileTarget(t, dir, "libc.c")
	good := buildPatch(t, bin, compileObj(t, dir, "basic_new.c"))
	wrongTarget := buildPatch(t, other, compileObj(t, dir, "libc_new.c"))
	unresolved := buildPatch(t, bin, compileObj(t, dir, "unresolved_new.c"))
	// -mcmodel=large -fPIC makes the object use R_X86_64_PLTOFF64/GOTOFF64,
	// which the linker does not handle.
	largeObj := testutil.Compile(t, filepath.Join(dir, "large.o"),
		"testdata/libc_new.c", "-O2", "-c", "-fPIC", "-mcmodel=large", "-ffunction-sections", "-fdata-sections")
	largeTarget := buildPatch(t, other, largeObj)

	tg := testutil.Start(t, bin)
	tg.WaitLine(t, 5*time.Second, ratio(2))
	cases := []struct {
		name string
		p    *patchfile.Patch
		want error
	}{
		{"build-id mismatch", wrongTarget, ErrNoTarget},
		{"unresolved symbol", unresolved, linker.ErrUnresolved},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			maps0, text0 := snapshot(t, tg.Pid)
			_, err := Apply(tg.Pid, c.p, Options{})
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			t.Logf("error: %v", err)
			maps1, text1 := snapshot(t, tg.Pid)
			if maps0 != maps1 {
				t.Errorf("maps changed:\n%s\n---\n%s", maps0, maps1)
			}
			if !bytes.Equal(text0, text1) {
				t.Errorf("text changed")
			}
			assertRunning(t, tg.Pid)
		})
	}
	t.Run("unsupported relocation", func(t *testing.T) {
		tg2 := testutil.Start(t, other)
		tg2.WaitLine(t, 5*time.Second, func(l string) bool { return strings.HasPrefix(l, "v1") })
		maps0, text0 := snapshot(t, tg2.Pid)
		_, err := Apply(tg2.Pid, largeTarget, Options{})
		if err == nil || !strings.Contains(err.Error(), "R_X86_64_") {
			t.Fatalf("got %v, want an unsupported relocation error naming the type", err)
		}
		t.Logf("error: %v", err)
		maps1, text1 := snapshot(t, tg2.Pid)
		if maps0 != maps1 || !bytes.Equal(text0, text1) {
			t.Errorf("target changed")
		}
	})
	t.Run("dead pid", func(t *testing.T) {
		dead := testutil.Start(t, bin)
		pid := dead.Pid
		dead.Cmd.Process.Kill()
		dead.Wait(5 * time.Second)
		if _, err := Apply(pid, good, Options{}); !errors.Is(err, proc.ErrNoProcess) {
			t.Fatalf("got %v, want ErrNoProcess", err)
		}
	})
	t.Run("fault at each step", func(t *testing.T) {
		for _, step := range []string{"map", "write", "protect", "redirect", "commit"} {
			maps0, text0 := snapshot(t, tg.Pid)
			faultHook = func(s string) error {
				if s == step {
					return fmt.Errorf("injected fault")
				}
				return nil
			}
			_, err := Apply(tg.Pid, good, Options{})
			faultHook = func(string) error { return nil }
			if err == nil || !strings.Contains(err.Error(), step+": injected fault") {
				t.Fatalf("step %s: got %v", step, err)
			}
			maps1, text1 := snapshot(t, tg.Pid)
			if maps0 != maps1 || !bytes.Equal(text0, text1) {
				t.Errorf("step %s: target changed:\n%s\n---\n%s", step, maps0, maps1)
			}
		}
		tg.Drain()
		tg.WaitLine(t, time.Second, ratio(2))
		assertRunning(t, tg.Pid)
	})
	t.Run("detach fails after the jumps", func(t *testing.T) {
		// The patch is installed once its jumps are committed: a failing
		// detach must not free the region they lead to (it did: every call
		// of the patched function then jumped into unmapped memory).
		faultHook = func(s string) error {
			if s == "detach" {
				return fmt.Errorf("injected fault")
			}
			return nil
		}
		_, err := Apply(tg.Pid, good, Options{})
		faultHook = func(string) error { return nil }
		if err == nil || !strings.Contains(err.Error(), "applied") {
			t.Fatalf("got %v, want an error saying the patch is applied", err)
		}
		tg.Drain()
		tg.WaitLine(t, 2*time.Second, ratio(3))
		if st, err := Status(tg.Pid); err != nil || len(st.Patches) != 1 || st.Patches[0].StateName != "applied" {
			t.Fatalf("status after the failed detach: %+v %v", st, err)
		}
		if _, err := Revert(tg.Pid, good.ID, Options{}); err != nil {
			t.Fatal(err)
		}
		tg.Drain()
		tg.WaitLine(t, 2*time.Second, ratio(2))
		assertRunning(t, tg.Pid)
	})
	t.Run("target exits mid-apply", func(t *testing.T) {
		victim := testutil.Start(t, bin)
		victim.WaitLine(t, 5*time.Second, ratio(2))
		faultHook = func(s string) error {
			if s == "write" {
				victim.Cmd.Process.Kill()
				time.Sleep(50 * time.Millisecond)
			}
			return nil
		}
		defer func() { faultHook = func(string) error { return nil } }()
		_, err := Apply(victim.Pid, good, Options{})
		if err == nil {
			t.Fatal("apply to a dying process succeeded")
		}
		t.Logf("error: %v", err)
	})
}

func TestIPARAHazardRefused(t *testing.T) {
	dir := setup(t)
	// Plain -O2: -fipa-ra is on.
	bin := testutil.Compile(t, filepath.Join(dir, "ipara-O2"), "testdata/ipara.c", "-O2", "-g")
	obj := compileObj(t, dir, "ipara_new.c")
	_, _, err := build.ByName(build.Options{Target: bin, New: []string{obj}})
	if !errors.Is(err, build.ErrUnsafeTarget) || !strings.Contains(err.Error(), "caller") {
		t.Fatalf("got %v, want ErrUnsafeTarget naming caller", err)
	}
	t.Logf("refused: %v", err)
	// Built with -fno-ipa-ra the same patch is fine.
	safe := testutil.Compile(t, filepath.Join(dir, "ipara-safe"), "testdata/ipara.c", "-O2", "-g", "-fno-ipa-ra")
	p := buildPatch(t, safe, obj)
	tg := testutil.Start(t, safe)
	first := tg.WaitLine(t, 5*time.Second, func(string) bool { return true })
	if _, err := Apply(tg.Pid, p, Options{}); err != nil {
		t.Fatal(err)
	}
	tg.Drain()
	if l := tg.WaitLine(t, 2*time.Second, func(string) bool { return true }); l != first {
		t.Errorf("patched output %q, want %q", l, first)
	}
}

// checkPhases checks a report's phases: one named must... is among them
// (the stop window, or the patch-ready path's writes), none is negative, and
// together they do not exceed the elapsed time.
func hasPhase(ps []Phase, name string) bool {
	for _, p := range ps {
		if p.Name == name {
			return true
		}
	}
	return false
}

func checkPhases(t *testing.T, what string, ps []Phase, elapsed time.Duration, must string) {
	t.Helper()
	var sum time.Duration
	stop := false
	for _, p := range ps {
		if p.Took < 0 {
			t.Errorf("%s phase %q took %v", what, p.Name, p.Took)
		}
		sum += p.Took
		stop = stop || strings.HasPrefix(p.Name, must)
	}
	if !stop || sum > elapsed {
		t.Errorf("%s phases %+v (sum %v) for elapsed %v", what, ps, sum, elapsed)
	}
}
