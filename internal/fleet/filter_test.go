package fleet

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/engine"
	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/shield"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// nobody is the user the other-user process runs as.
const nobody = 65534

// startAs starts bin as uid/gid nobody with setpriv(1) (setresuid before
// the exec: the process's real and effective uid are nobody's).
func startAs(t *testing.T, f *fixture, bin string) *testutil.Target {
	t.Helper()
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skipf("setpriv (util-linux) is needed to start a process of another user: %v", err)
	}
	// The fixture directory is private (MkdirTemp, 0700): let nobody in.
	for _, d := range []string{f.dir, filepath.Join(f.dir, "lib")} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	n := strconv.Itoa(nobody)
	tg := testutil.Start(t, setpriv, "--reuid="+n, "--regid="+n, "--clear-groups", bin)
	tg.WaitLine(t, 10*time.Second, ratio(2))
	return tg
}

// inCgroup moves pid into a new cgroup v2 below the root and returns its
// path relative to the root. The cgroup is removed at the end of the test
// (after the process, started before, is killed).
func inCgroup(t *testing.T, pid int) string {
	t.Helper()
	mnt, err := shield.Cgroup2Mount()
	if err != nil {
		t.Skipf("no cgroup v2 hierarchy: %v", err)
	}
	rel := "hotpatch-test-" + strconv.Itoa(os.Getpid()) + "/svc.service"
	dir := filepath.Join(mnt, rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Skipf("cannot create a cgroup: %v", err)
	}
	t.Cleanup(func() {
		// The process is killed by testutil's cleanup, registered before
		// this one and so run after it: wait for the cgroup to empty.
		deadline := time.Now().Add(10 * time.Second)
		for os.Remove(dir) != nil && time.Now().Before(deadline) {
			exec.Command("kill", "-9", strconv.Itoa(pid)).Run()
			time.Sleep(20 * time.Millisecond)
		}
		os.Remove(filepath.Dir(dir))
	})
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		t.Skipf("cannot move a process into a cgroup: %v", err)
	}
	return rel
}

func resultsOf(rep *Report) map[int]string {
	m := map[int]string{}
	for _, r := range rep.Results {
		m[r.PID] = r.Result
	}
	return m
}

func noPatch(t *testing.T, when string, pids ...int) {
	t.Helper()
	for _, pid := range pids {
		st, err := engine.Status(pid)
		if err != nil || len(st.Patches) != 0 {
			t.Errorf("%s: process %d: %+v %v, want no patch", when, pid, st, err)
		}
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/maps")
		if strings.Contains(string(b), "hotpatch:") {
			t.Errorf("%s: process %d has a patch region:\n%s", when, pid, b)
		}
	}
}

// TestDryRunAndFilters: a host-wide dry run checks every process that maps
// the target, reports the ones that would be refused and the users it would
// touch, and changes nothing; --uid, --exe and --cgroup select exactly their
// processes, for dry and real runs, host-wide and with explicit pids.
func TestDryRunAndFilters(t *testing.T) {
	f := getFixture(t)
	a := startN(t, 2, f.appA, 2)
	b := startN(t, 1, f.appB, 2)
	other := startAs(t, f, f.appA)
	cg := inCgroup(t, a[1].Pid)
	traced := startN(t, 1, f.appA, 2)
	startTracer(t, f, traced[0].Pid)
	all := []int{a[0].Pid, a[1].Pid, b[0].Pid, other.Pid, traced[0].Pid}

	// Host-wide dry run, no filter.
	rep, err := Apply(f.patch, Options{Engine: engine.Options{DryRun: true}})
	if err != nil {
		t.Fatal(err)
	}
	got := resultsOf(rep)
	for _, pid := range all[:4] {
		if got[pid] != WouldApply {
			t.Errorf("dry run: process %d: %q, want %q (%+v)", pid, got[pid], WouldApply, rep.Results)
		}
	}
	if !rep.DryRun || rep.Summary.WouldApply != 4 || rep.Summary.Applied != 0 || len(rep.Results) != 5 {
		t.Errorf("dry run report: %+v", rep)
	}
	// The traced process is reported as the real run would refuse it.
	if got[traced[0].Pid] != Failed || !errors.Is(rep.Err(), proc.ErrAlreadyTraced) {
		t.Errorf("dry run: traced process %q, Err %v", got[traced[0].Pid], rep.Err())
	}
	if len(rep.Users) != 2 || rep.Users[0].UID != 0 || rep.Users[1].UID != nobody || rep.Users[1].Processes != 1 {
		t.Errorf("dry run users: %+v", rep.Users)
	}
	noPatch(t, "after the dry run", all...)
	expectOutput(t, append(append(a, b...), other), 2)

	// Each filter selects its processes only (dry runs).
	uid := nobody
	for _, c := range []struct {
		name string
		f    Filter
		want []int
	}{
		{"uid", Filter{UID: &uid}, []int{other.Pid}},
		{"exe", Filter{Exe: f.appB}, []int{b[0].Pid}},
		{"cgroup", Filter{Cgroup: cg}, []int{a[1].Pid}},
		{"cgroup parent", Filter{Cgroup: "/" + filepath.Dir(cg) + "/"}, []int{a[1].Pid}},
		{"exe and uid", Filter{Exe: f.appA, UID: &uid}, []int{other.Pid}},
	} {
		rep, err := Apply(f.patch, Options{Filter: c.f, Engine: engine.Options{DryRun: true}})
		if err != nil {
			t.Fatal(err)
		}
		got := resultsOf(rep)
		if len(got) != len(c.want) || rep.Users != nil {
			t.Errorf("%s: %+v, want only %v", c.name, rep.Results, c.want)
		}
		for _, pid := range c.want {
			if got[pid] != WouldApply {
				t.Errorf("%s: process %d: %q", c.name, pid, got[pid])
			}
		}
	}
	// Explicit pids: the ones the filter rejects are reported skipped.
	rep, err = Apply(f.patch, Options{PIDs: all[:4], Filter: Filter{UID: &uid}, Engine: engine.Options{DryRun: true}})
	if err != nil {
		t.Fatal(err)
	}
	got = resultsOf(rep)
	if got[other.Pid] != WouldApply || got[a[0].Pid] != Skipped || got[b[0].Pid] != Skipped || rep.Err() != nil {
		t.Errorf("explicit pids with --uid: %+v", rep.Results)
	}
	noPatch(t, "after the filtered dry runs", all...)
	expectOutput(t, append(append(a, b...), other), 2)

	// A real apply with a filter patches only the other user's process.
	rep, err = Apply(f.patch, Options{Filter: Filter{UID: &uid}})
	if err != nil || rep.Err() != nil || resultsOf(rep)[other.Pid] != Applied || len(rep.Results) != 1 {
		t.Fatalf("apply --uid: %v %+v", err, rep)
	}
	expectOutput(t, []*testutil.Target{other}, 3)
	noPatch(t, "after apply --uid", a[0].Pid, a[1].Pid, b[0].Pid)
	expectOutput(t, append(a, b...), 2) // the processes the filter left out run the old code
	if sts, err := Status(nil, Filter{UID: &uid}); err != nil || len(sts) != 1 || sts[0].PID != other.Pid {
		t.Errorf("status --uid: %+v %v", sts, err)
	}
	if sts, err := Status(nil, Filter{Exe: f.appB}); err != nil || len(sts) != 0 {
		t.Errorf("status --exe app_b: %+v %v", sts, err)
	}

	// Dry revert: would revert it, changes nothing.
	rr, err := Revert(f.patch.ID, Options{Engine: engine.Options{DryRun: true}})
	if err != nil || rr.Err() != nil || !rr.DryRun || resultsOf(rr)[other.Pid] != WouldRevert || len(rr.Results) != 1 {
		t.Fatalf("dry revert: %v %+v", err, rr)
	}
	if st, err := engine.Status(other.Pid); err != nil || len(st.Patches) != 1 || st.Patches[0].StateName != "applied" {
		t.Errorf("after the dry revert: %+v %v", st, err)
	}
	expectOutput(t, []*testutil.Target{other}, 3)
	// Revert filtered by --exe app_b finds nothing; by --uid, the one.
	if rr, err := Revert(f.patch.ID, Options{Filter: Filter{Exe: f.appB}}); err != nil || len(rr.Results) != 0 {
		t.Errorf("revert --exe app_b: %v %+v", err, rr)
	}
	if rr, err := Revert(f.patch.ID, Options{Filter: Filter{UID: &uid}}); err != nil || rr.Err() != nil || resultsOf(rr)[other.Pid] != Reverted {
		t.Fatalf("revert --uid: %v %+v", err, rr)
	}
	expectOutput(t, []*testutil.Target{other}, 2)
}
