package main

import (
	"encoding/json"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/engine"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// TestKilledAtRandomMoments kills `hotpatch apply` and `hotpatch revert`
// with SIGKILL at random moments while they patch a 16-thread target whose
// threads check every result. The target must stay alive and correct,
// status must always parse and show each patch applied, absent, or in
// transition, and recover must bring it back to a clean state.
func TestKilledAtRandomMoments(t *testing.T) {
	testutil.NeedGCC(t)
	testutil.NeedPtrace(t)
	d := t.TempDir()
	bin := filepath.Join(d, "hotpatch")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	target := testutil.Compile(t, filepath.Join(d, "crash16"), "testdata/crash16.c", "-O2", "-g", "-pthread", "-flive-patching=inline-clone")
	obj := testutil.Compile(t, filepath.Join(d, "new.o"), "testdata/crash16_new.c", "-O2", "-ffunction-sections", "-fdata-sections", "-c")
	hp := filepath.Join(d, "fix.hp")
	if out, err := exec.Command(bin, "build", "--target", target, "--new", obj, "-o", hp, "--id", "crash-fix").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	tg := testutil.Start(t, target)
	tg.WaitLine(t, 5*time.Second, func(l string) bool { return l == "1 2 3" })
	pid := strconv.Itoa(tg.Pid)

	runs := 200
	if testing.Short() {
		runs = 40
	}
	rng := rand.New(rand.NewSource(1))
	applied := false
	var killed int
	for i := 0; i < runs; i++ {
		args := []string{"apply", hp, "--pid", pid, "--allow-unsigned"}
		if applied {
			args = []string{"revert", "crash-fix", "--pid", pid}
		}
		cmd := exec.Command(bin, args...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rng.Intn(25000)) * time.Microsecond)
		if cmd.Process.Kill() == nil {
			killed++
		}
		cmd.Wait()
		if exited, err := tg.Exited(); exited {
			t.Fatalf("run %d: target died: %v; stderr: %s", i, err, tg.Stderr())
		}
		// status waits for nothing: it reads the record while the worker
		// may still be finishing, so it may see a transition.
		st := status(t, bin, pid)
		switch {
		case len(st.Patches) == 0:
			applied = false
		case len(st.Patches) == 1 && st.Patches[0].StateName == "applied":
			applied = true
		case len(st.Patches) == 1:
			// In transition or reverted-retained: let the worker finish, then
			// recover settles anything left.
			time.Sleep(50 * time.Millisecond)
			if out, err := exec.Command(bin, "recover", "--pid", pid).CombinedOutput(); err != nil {
				t.Fatalf("run %d: recover: %v\n%s", i, err, out)
			}
			st = status(t, bin, pid)
			applied = len(st.Patches) == 1 && st.Patches[0].StateName == "applied"
			if len(st.Patches) > 1 || (len(st.Patches) == 1 && !applied) {
				t.Fatalf("run %d: after recover: %+v", i, st.Patches)
			}
		default:
			t.Fatalf("run %d: status %+v", i, st.Patches)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if out, err := exec.Command(bin, "recover", "--pid", pid).CombinedOutput(); err != nil {
		t.Fatalf("recover: %v\n%s", err, out)
	}
	if st := status(t, bin, pid); len(st.Patches) == 1 {
		if out, err := exec.Command(bin, "revert", "crash-fix", "--pid", pid).CombinedOutput(); err != nil {
			t.Fatalf("final revert: %v\n%s", err, out)
		}
	}
	if st := status(t, bin, pid); len(st.Patches) != 0 {
		t.Fatalf("not clean at the end: %+v", st.Patches)
	}
	tg.Drain()
	tg.WaitLine(t, time.Second, func(l string) bool { return l == "1 2 3" })
	if s := tg.Stderr(); s != "" {
		t.Fatalf("target reported: %s", s)
	}
	t.Logf("%d runs, %d commands killed", runs, killed)
}

func status(t *testing.T, bin, pid string) engine.StatusReport {
	t.Helper()
	out, err := exec.Command(bin, "status", "--pid", pid, "--json").Output()
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	var st engine.StatusReport
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("status json: %v\n%s", err, out)
	}
	return st
}

var _ = os.Getpid
