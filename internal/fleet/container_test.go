package fleet

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/engine"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// TestContainer: a process in its own mount and PID namespaces (unshare(1))
// maps a private copy of the library, bind-mounted over a directory whose
// host copy is another build. A host-wide apply finds it by build-id, opens
// its library the way the process sees it (the host path would give the
// wrong build), patches it, and reports its pid in its PID namespace next
// to the host pid; the revert takes the patch out again.
func TestContainer(t *testing.T) {
	f := getFixture(t)
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("no unshare(1)")
	}
	if out, err := exec.Command(unshare, "--mount", "--pid", "--fork", "true").CombinedOutput(); err != nil {
		t.Skipf("cannot create namespaces: %v: %s", err, out)
	}
	d := t.TempDir()
	hostLib := filepath.Join(d, "lib")
	private := filepath.Join(d, "private")
	for _, dir := range []string{hostLib, private} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, filepath.Join(f.dir, "other", "libfleet.so"), filepath.Join(hostLib, "libfleet.so")) // another build-id
	copyFile(t, f.lib, filepath.Join(private, "libfleet.so"))                                        // the patch's target
	bin := testutil.Compile(t, filepath.Join(d, "app"), append([]string{filepath.Join("testdata", "app.c")}, append(cflags,
		"-L"+hostLib, "-lfleet", "-Wl,-rpath,"+hostLib)...)...)
	// pid 1 of the namespace is the shell; the app is a later child.
	script := fmt.Sprintf("mount --bind %s %s || exit 1; %s & wait", private, hostLib, bin)
	ct := testutil.Start(t, unshare, "--mount", "--pid", "--fork", "--kill-child", "sh", "-c", script)
	ct.WaitLine(t, 10*time.Second, ratio(2))
	pid := descendant(t, ct.Pid, bin)
	nspid := NamespacePID(pid)
	if nspid == 0 || nspid == pid {
		t.Fatalf("process %d: pid in its namespace %d", pid, nspid)
	}

	rep, err := Apply(f.patch, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, ok := byPID(rep.Results)[pid]
	if !ok || r.Result != Applied || r.NSPID != nspid || r.Target != filepath.Join(hostLib, "libfleet.so") {
		t.Fatalf("container process %d (pid %d inside): %+v, report %+v", pid, nspid, r, rep.Results)
	}
	cts := []*testutil.Target{ct}
	expectOutput(t, cts, 3)

	st, err := Status([]int{pid}, Filter{})
	if err != nil || len(st) != 1 || st[0].NSPID != nspid {
		t.Fatalf("status: %+v, %v", st, err)
	}
	rr, err := Revert(f.patch.ID, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r := byPID(rr.Results)[pid]; r.Result != Reverted || r.NSPID != nspid {
		t.Fatalf("revert: %+v (all %+v)", r, rr.Results)
	}
	expectOutput(t, cts, 2)
}

// descendant returns the pid of the process running exe among the
// descendants of pid, waiting for it to appear.
func descendant(t *testing.T, pid int, exe string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		parent := map[int]int{}
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			p, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
			if i := bytes.LastIndexByte(b, ')'); err == nil && i > 0 {
				var state byte
				var ppid int
				if _, err := fmt.Sscanf(string(b[i+2:]), "%c %d", &state, &ppid); err == nil {
					parent[p] = ppid
				}
			}
		}
		for p := range parent {
			if link, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", p)); link != exe {
				continue
			}
			for a := parent[p]; a > 1; a = parent[a] {
				if a == pid {
					return p
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no process %s under %d", exe, pid)
	return 0
}

// TestExeFilterOtherMountNS: --exe selects by the file, not by the path a
// process in another mount namespace reads in /proc/PID/exe. The process
// runs app_a bind-mounted, in its own mount namespace, over a path whose
// host file is another executable: --exe with that path must leave it out,
// --exe with app_a's path selects it.
func TestExeFilterOtherMountNS(t *testing.T) {
	f := getFixture(t)
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("no unshare(1)")
	}
	if out, err := exec.Command(unshare, "--mount", "--pid", "--fork", "true").CombinedOutput(); err != nil {
		t.Skipf("cannot create namespaces: %v: %s", err, out)
	}
	hostApp := filepath.Join(t.TempDir(), "app")
	copyFile(t, f.appB, hostApp) // on the host, another file at that path
	if err := os.Chmod(hostApp, 0o755); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf("mount --bind %s %s || exit 1; %s & wait", f.appA, hostApp, hostApp)
	// A PID namespace too: --kill-child kills its init, the shell, and with it
	// the app (the shell alone would leave it running).
	ct := testutil.Start(t, unshare, "--mount", "--pid", "--fork", "--kill-child", "sh", "-c", script)
	ct.WaitLine(t, 10*time.Second, ratio(2))
	pid := descendant(t, ct.Pid, hostApp)

	for _, c := range []struct {
		exe  string
		want bool
	}{{hostApp, false}, {f.appA, true}} {
		rep, err := Apply(f.patch, Options{Filter: Filter{Exe: c.exe}, Engine: engine.Options{DryRun: true}})
		if err != nil {
			t.Fatal(err)
		}
		r, ok := byPID(rep.Results)[pid]
		if ok != c.want || ok && r.Result != WouldApply {
			t.Errorf("--exe %s: process %d selected %v (%+v), want %v", c.exe, pid, ok, r, c.want)
		}
	}
}
