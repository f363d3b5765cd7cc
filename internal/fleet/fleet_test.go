package fleet

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/build"
	"github.com/hotpatch/hotpatch/internal/engine"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/procmaps"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// fixture is compiled once per test binary: the library, two executables
// using it, another build of the library with an executable of its own, the
// dlopen program, the tracer and the patch.
type fixture struct {
	dir      string
	lib      string // dir/lib/libfleet.so
	appA     string
	appB     string
	appOther string // uses a different build of libfleet.so
	appDl    string
	sleeper  string
	tracer   string
	patch    *patchfile.Patch
	patchF   string // the patch written to a file
}

var (
	fixOnce sync.Once
	fix     *fixture
	fixErr  string
	fixDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if fixDir != "" {
		os.RemoveAll(fixDir)
	}
	os.Exit(code)
}

// Flags of the targets: like production code, patchable (see README.md).
var cflags = []string{"-O2", "-g", "-flive-patching=inline-clone", "-Wl,--build-id"}

func getFixture(t testing.TB) *fixture {
	t.Helper()
	testutil.NeedGCC(t)
	testutil.NeedPtrace(t)
	fixOnce.Do(func() {
		d, err := os.MkdirTemp("", "fleet-test-")
		if err != nil {
			fixErr = err.Error()
			return
		}
		fixDir = d
		fix, fixErr = buildFixture(t, d)
	})
	if fix == nil {
		t.Fatalf("fixture: %s", fixErr)
	}
	return fix
}

func buildFixture(t testing.TB, d string) (*fixture, string) {
	f := &fixture{dir: d}
	src := func(n string) string { return filepath.Join("testdata", n) }
	for _, sub := range []string{"lib", "other"} {
		if err := os.MkdirAll(filepath.Join(d, sub), 0o755); err != nil {
			return nil, err.Error()
		}
	}
	f.lib = filepath.Join(d, "lib", "libfleet.so")
	salt := fmt.Sprintf(`-DSALT="%s"`, d) // a build-id of this run's own
	testutil.Compile(t, f.lib, append([]string{src("libfleet.c"), "-fPIC", "-shared", salt}, cflags...)...)
	testutil.Compile(t, filepath.Join(d, "other", "libfleet.so"), append([]string{src("libfleet.c"), "-fPIC", "-shared", "-DOTHER", salt}, cflags...)...)
	link := func(out, c, libdir string, extra ...string) string {
		args := append([]string{src(c)}, cflags...)
		args = append(args, extra...)
		args = append(args, "-L"+libdir, "-lfleet", "-Wl,-rpath,"+libdir)
		return testutil.Compile(t, filepath.Join(d, out), args...)
	}
	f.appA = link("app_a", "app.c", filepath.Join(d, "lib"), "-DVARIANT=1")
	f.appB = link("app_b", "app.c", filepath.Join(d, "lib"), "-DVARIANT=2")
	f.appOther = link("app_other", "app.c", filepath.Join(d, "other"))
	f.sleeper = link("sleeper", "sleeper.c", filepath.Join(d, "lib"))
	f.appDl = testutil.Compile(t, filepath.Join(d, "app_dl"), append([]string{src("app_dl.c"), "-ldl"}, cflags...)...)
	f.tracer = testutil.Compile(t, filepath.Join(d, "tracer"), src("tracer.c"), "-O2")
	obj := testutil.Compile(t, filepath.Join(d, "libfleet_new.o"), src("libfleet_new.c"), "-O2", "-fPIC",
		"-ffunction-sections", "-fdata-sections", "-c")
	p, _, err := build.ByName(build.Options{Target: f.lib, New: []string{obj}})
	if err != nil {
		return nil, "build patch: " + err.Error()
	}
	f.patchF = filepath.Join(d, "fix.hp")
	if err := p.WriteFile(f.patchF); err != nil {
		return nil, err.Error()
	}
	// Go through the file format, as the CLI does.
	if f.patch, err = patchfile.ReadFile(f.patchF); err != nil {
		return nil, err.Error()
	}
	return f, ""
}

// ratio matches the "a b" lines of app.c with b == a*k.
func ratio(k int64) func(string) bool {
	return func(l string) bool {
		fs := strings.Fields(l)
		if len(fs) != 2 {
			return false
		}
		a, err1 := strconv.ParseInt(fs[0], 10, 64)
		b, err2 := strconv.ParseInt(fs[1], 10, 64)
		return err1 == nil && err2 == nil && b == a*k
	}
}

// startN starts n copies of bin and waits until each prints a line with
// ratio k (so its library is loaded and it runs).
func startN(t *testing.T, n int, bin string, k int64) []*testutil.Target {
	t.Helper()
	var ts []*testutil.Target
	for i := 0; i < n; i++ {
		ts = append(ts, testutil.Start(t, bin))
	}
	for _, tg := range ts {
		tg.WaitLine(t, 10*time.Second, ratio(k))
	}
	return ts
}

// expectOutput checks that every target now prints lines with ratio k.
func expectOutput(t *testing.T, ts []*testutil.Target, k int64) {
	t.Helper()
	for _, tg := range ts {
		tg.Drain()
		tg.WaitLine(t, 5*time.Second, ratio(k))
	}
}

func pidsOf(ts ...[]*testutil.Target) []int {
	var out []int
	for _, l := range ts {
		for _, tg := range l {
			out = append(out, tg.Pid)
		}
	}
	return out
}

func byPID(rs []Result) map[int]Result {
	m := map[int]Result{}
	for _, r := range rs {
		m[r.PID] = r
	}
	return m
}

// TestTwentyFivePlusOthers: 20 processes of one executable and 5 of another
// share the library; two more run another build of it. One host-wide apply
// patches the library in all 25 and only there; status lists them; one
// host-wide revert takes it out of all.
func TestTwentyFivePlusOthers(t *testing.T) {
	f := getFixture(t)
	a := startN(t, 20, f.appA, 2)
	b := startN(t, 5, f.appB, 2)
	other := startN(t, 2, f.appOther, 2)
	ours := pidsOf(a, b)

	var mu sync.Mutex
	var calls, lastDone, lastTotal int
	rep, err := Apply(f.patch, Options{Jobs: 4, Progress: func(done, total int) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		lastDone, lastTotal = done, total
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("scan: %+v; apply of %d processes in %v", rep.Scan, rep.Summary.Processes, rep.Elapsed)
	if err := rep.Err(); err != nil {
		t.Fatalf("apply: %v\n%+v", err, rep.Results)
	}
	// Exactly our 25 (a host-wide scan: nothing else maps this build-id).
	got := byPID(rep.Results)
	if len(rep.Results) != 25 || rep.Summary.Applied != 25 {
		t.Fatalf("want 25 applied, got summary %+v: %+v", rep.Summary, rep.Results)
	}
	for _, pid := range ours {
		r, ok := got[pid]
		if !ok || r.Result != Applied || r.Pause <= 0 || r.Target == "" || r.Command == "" {
			t.Errorf("process %d: %+v", pid, r)
		}
	}
	for _, pid := range pidsOf(other) {
		if _, ok := got[pid]; ok {
			t.Errorf("process %d runs another build of the library but was patched", pid)
		}
	}
	if calls != 25 || lastDone != 25 || lastTotal != 25 {
		t.Errorf("progress: %d calls, last %d/%d", calls, lastDone, lastTotal)
	}
	expectOutput(t, a, 3)
	expectOutput(t, b, 3)
	expectOutput(t, other, 2)

	// The library is patched at whatever address each process loaded it.
	entries := map[uint64]bool{}
	for _, pid := range ours {
		st, err := engine.Status(pid)
		if err != nil || len(st.Patches) != 1 || len(st.Patches[0].Redirects) != 1 {
			t.Fatalf("status of %d: %+v %v", pid, st, err)
		}
		entries[st.Patches[0].Redirects[0].Entry] = true
	}
	if aslr, _ := os.ReadFile("/proc/sys/kernel/randomize_va_space"); strings.TrimSpace(string(aslr)) != "0" && len(entries) < 2 {
		t.Errorf("every process has the library at the same address (%v): ASLR on, expected different", entries)
	}

	// A second apply is a no-op everywhere.
	again, err := Apply(f.patch, Options{PIDs: ours[:3]})
	if err != nil || again.Summary.AlreadyApplied != 3 {
		t.Errorf("second apply: %+v %v", again, err)
	}

	// Host-wide status lists all 25 (other engineers' tests may add more).
	sts, err := Status(nil, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	listed := map[int]ProcessStatus{}
	for _, s := range sts {
		listed[s.PID] = s
	}
	for _, pid := range ours {
		s, ok := listed[pid]
		if !ok || len(s.Patches) != 1 || s.Patches[0].ID != f.patch.ID || s.Patches[0].StateName != "applied" {
			t.Errorf("status: process %d: %+v (listed %v)", pid, s, ok)
		}
	}
	for _, pid := range pidsOf(other) {
		if _, ok := listed[pid]; ok {
			t.Errorf("status lists unpatched process %d", pid)
		}
	}

	rrep, err := Revert(f.patch.ID, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := rrep.Err(); err != nil || rrep.Summary.Reverted != 25 || len(rrep.Results) != 25 {
		t.Fatalf("revert: %v %+v %+v", err, rrep.Summary, rrep.Results)
	}
	expectOutput(t, a, 2)
	expectOutput(t, b, 2)
	if sts, _ := Status(ours, Filter{}); len(sts) != 0 {
		t.Errorf("status after revert: %+v", sts)
	}
}

// TestDlopen: a library loaded with dlopen after the process started is
// found and patched; before the dlopen the process is not a target.
func TestDlopen(t *testing.T) {
	f := getFixture(t)
	tg := testutil.Start(t, f.appDl, f.lib)
	tg.WaitLine(t, 5*time.Second, func(l string) bool { return l == "waiting" })
	rep, err := Apply(f.patch, Options{PIDs: []int{tg.Pid}})
	if err != nil {
		t.Fatal(err)
	}
	if r := rep.Results; len(r) != 1 || r[0].Result != Failed || !errors.Is(r[0].Err, engine.ErrNoTarget) {
		t.Fatalf("before dlopen: %+v", r)
	}
	if !errors.Is(rep.Err(), ErrFailed) {
		t.Errorf("Err: %v", rep.Err())
	}
	tg.Stdin.Write([]byte("go\n"))
	tg.WaitLine(t, 5*time.Second, ratio(2))
	rep, err = Apply(f.patch, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := byPID(rep.Results)[tg.Pid]
	if r.Result != Applied || r.Target != f.lib {
		t.Fatalf("after dlopen: %+v", rep.Results)
	}
	expectOutput(t, []*testutil.Target{tg}, 3)
}

// TestDeletedLibrary: the library was replaced on disk (as a package upgrade
// does) before the apply; the process maps the old, deleted inode, which
// still has the patch's build-id.
func TestDeletedLibrary(t *testing.T) {
	f := getFixture(t)
	d := t.TempDir()
	lib := filepath.Join(d, "libfleet.so")
	copyFile(t, f.lib, lib)
	bin := testutil.Compile(t, filepath.Join(d, "app"), append([]string{filepath.Join("testdata", "app.c")}, append(cflags,
		"-L"+d, "-lfleet", "-Wl,-rpath,"+d)...)...)
	tg := startN(t, 1, bin, 2)[0]
	// Replace: a new file renamed over the old path, so the old inode lives
	// on only in the mapping.
	copyFile(t, filepath.Join(f.dir, "other", "libfleet.so"), lib+".new")
	if err := os.Rename(lib+".new", lib); err != nil {
		t.Fatal(err)
	}
	maps, err := procmaps.Read(tg.Pid)
	if err != nil {
		t.Fatal(err)
	}
	deleted := false
	for _, m := range maps {
		deleted = deleted || (m.Path == lib && m.Deleted)
	}
	if !deleted {
		t.Fatalf("maps do not show %s (deleted)", lib)
	}
	rep, err := Apply(f.patch, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := byPID(rep.Results)[tg.Pid]
	if r.Result != Applied || !r.Deleted || r.Target != lib {
		t.Fatalf("result: %+v (all: %+v)", r, rep.Results)
	}
	expectOutput(t, []*testutil.Target{tg}, 3)
	rrep, err := Revert(f.patch.ID, Options{PIDs: []int{tg.Pid}})
	if err != nil || rrep.Err() != nil || rrep.Summary.Reverted != 1 {
		t.Fatalf("revert: %+v %v", rrep, err)
	}
	expectOutput(t, []*testutil.Target{tg}, 2)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// kill kills a target and waits until it is reaped or a zombie.
func kill(t *testing.T, tg *testutil.Target) {
	tg.Cmd.Process.Kill()
	if err := tg.Wait(5 * time.Second); err != nil && !strings.Contains(err.Error(), "killed") {
		t.Errorf("wait for killed %d: %v", tg.Pid, err)
	}
}

// TestExitDuringScanAndApply: processes that exit after the scan found them,
// or just before their apply, are reported gone and do not hide the others;
// a listed process that does not exist is gone too.
func TestExitDuringScanAndApply(t *testing.T) {
	f := getFixture(t)
	ts := startN(t, 4, f.appA, 2)
	dead := testutil.Start(t, f.appA)
	deadPid := dead.Pid
	kill(t, dead)
	victims := map[string]*testutil.Target{"matched": ts[1], "apply": ts[2]}
	testHook = func(point string, pid int) {
		if v := victims[point]; v != nil && v.Pid == pid {
			kill(t, v)
		}
	}
	defer func() { testHook = nil }()
	rep, err := Apply(f.patch, Options{PIDs: append(pidsOf(ts), deadPid), Jobs: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Err(); err != nil {
		t.Fatalf("gone processes counted as failures: %v", err)
	}
	got := byPID(rep.Results)
	for pid, want := range map[int]string{ts[0].Pid: Applied, ts[1].Pid: Gone, ts[2].Pid: Gone, ts[3].Pid: Applied, deadPid: Gone} {
		if got[pid].Result != want {
			t.Errorf("process %d: %+v, want %s", pid, got[pid], want)
		}
	}
	if rep.Summary.Gone != 3 || rep.Summary.Applied != 2 {
		t.Errorf("summary %+v", rep.Summary)
	}
	expectOutput(t, []*testutil.Target{ts[0], ts[3]}, 3)

	// Revert with a process exiting just before its turn.
	victims = map[string]*testutil.Target{"revert": ts[3]}
	rrep, err := Revert(f.patch.ID, Options{PIDs: []int{ts[0].Pid, ts[3].Pid}})
	if err != nil || rrep.Err() != nil {
		t.Fatalf("revert: %v %v", err, rrep.Err())
	}
	if got := byPID(rrep.Results); got[ts[0].Pid].Result != Reverted || got[ts[3].Pid].Result != Gone {
		t.Errorf("revert results: %+v", rrep.Results)
	}
}

// startTracer makes pid untraceable by hotpatch: a helper process holds it
// with PTRACE_SEIZE.
func startTracer(t *testing.T, f *fixture, pid int) {
	t.Helper()
	tr := testutil.Start(t, f.tracer, strconv.Itoa(pid))
	tr.WaitLine(t, 5*time.Second, func(l string) bool { return l == "seized" })
}

// TestAllOrNone: one of four processes cannot be patched (another tracer
// holds it). With AllOrNone none stays patched; without it, the other three
// stay patched and the failure is reported.
func TestAllOrNone(t *testing.T) {
	f := getFixture(t)
	ts := startN(t, 4, f.appA, 2)
	startTracer(t, f, ts[1].Pid)
	pids := pidsOf(ts)

	rep, err := Apply(f.patch, Options{PIDs: pids, Jobs: 4, AllOrNone: true})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(rep.Err(), ErrFailed) || !errors.Is(rep.Err(), proc.ErrAlreadyTraced) {
		t.Errorf("Err: %v", rep.Err())
	}
	got := byPID(rep.Results)
	if r := got[ts[1].Pid]; r.Result != Failed || !errors.Is(r.Err, proc.ErrAlreadyTraced) || r.Reason == "" {
		t.Errorf("traced process: %+v", r)
	}
	for _, tg := range []*testutil.Target{ts[0], ts[2], ts[3]} {
		if r := got[tg.Pid]; r.Result != RolledBack && r.Result != Skipped {
			t.Errorf("process %d: %+v, want rolled back or skipped", tg.Pid, r)
		}
		if st, err := engine.Status(tg.Pid); err != nil || len(st.Patches) != 0 {
			t.Errorf("process %d still has patches: %+v %v", tg.Pid, st, err)
		}
	}
	t.Logf("all-or-none summary: %+v", rep.Summary)
	expectOutput(t, ts, 2)

	// Without --all-or-none the others stay patched.
	rep, err = Apply(f.patch, Options{PIDs: pids, Jobs: 4})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Summary.Applied != 3 || rep.Summary.Failed != 1 || rep.Err() == nil {
		t.Errorf("summary %+v: %+v", rep.Summary, rep.Results)
	}
	expectOutput(t, []*testutil.Target{ts[0], ts[2], ts[3]}, 3)
	expectOutput(t, ts[1:2], 2)
	rrep, err := Revert(f.patch.ID, Options{PIDs: pids})
	if err != nil {
		t.Fatal(err)
	}
	// The traced process has no region: not applied, not a failure.
	if rrep.Summary.Reverted != 3 || rrep.Summary.NotApplied != 1 || rrep.Err() != nil {
		t.Errorf("revert: %+v %+v", rrep.Summary, rrep.Results)
	}
}

// TestFindSkipsSelf: hotpatch never reports itself (it cannot trace itself).
func TestFindSkipsSelf(t *testing.T) {
	f := getFixture(t)
	m, gone, bad, _, err := Find(f.patch.Target.BuildID, []int{os.Getpid()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 0 || len(gone) != 0 || len(bad) != 0 {
		t.Errorf("matches %+v gone %v unreadable %v", m, gone, bad)
	}
}

func TestUniq(t *testing.T) {
	for _, c := range []struct{ in, want []int }{
		{nil, nil},
		{[]int{3}, []int{3}},
		{[]int{5, 1, 5, 3, 1}, []int{1, 3, 5}},
	} {
		got := uniq(c.in)
		if len(got) != len(c.want) {
			t.Errorf("uniq(%v) = %v", c.in, got)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("uniq(%v) = %v", c.in, got)
			}
		}
	}
}
