package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/engine"
	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/shield"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// killRig is a 16-thread target whose threads check every result of the
// functions a patch replaces, the patch, and the hotpatch binary.
type killRig struct {
	bin, hp, pid string
	tg           *testutil.Target
	applied      bool
	rng          *rand.Rand
	stages       []string
	announced    int // kills at an announced instant of an injected call
}

func newKillRig(t *testing.T, bin string, targetArgs []string, flags ...string) *killRig {
	d := t.TempDir()
	args := append([]string{"testdata/crash16.c", "-O2", "-g", "-pthread"}, flags...)
	target := testutil.Compile(t, filepath.Join(d, "crash16"), args...)
	obj := testutil.Compile(t, filepath.Join(d, "new.o"), "testdata/crash16_new.c", "-O2", "-ffunction-sections", "-fdata-sections", "-c")
	hp := filepath.Join(d, "fix.hp")
	if out, err := exec.Command(bin, "build", "--target", target, "--new", obj, "-o", hp, "--id", "crash-fix").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	tg := testutil.Start(t, target, targetArgs...)
	tg.WaitLine(t, 5*time.Second, func(l string) bool { return l == "1 2 3" })
	return &killRig{bin: bin, hp: hp, pid: strconv.Itoa(tg.Pid), tg: tg, rng: rand.New(rand.NewSource(1)),
		stages: []string{"set", "entry", "exit", "restored"}}
}

func buildHotpatch(t *testing.T) string {
	bin := filepath.Join(t.TempDir(), "hotpatch")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func (k *killRig) args() []string {
	if k.applied {
		return []string{"revert", "crash-fix", "--pid", k.pid}
	}
	return []string{"apply", k.hp, "--pid", k.pid, "--allow-unsigned"}
}

// killWorker runs apply or revert as the worker itself (HOTPATCH_WORKER:
// the process that traces the target) and SIGKILLs it: after a random delay,
// or (worst) at the instant of an injected call it announces (see
// internal/proc/stall.go), if it makes one.
func (k *killRig) killWorker(t *testing.T, worst bool, i int) {
	cmd := exec.Command(k.bin, k.args()...)
	cmd.Env = append(os.Environ(), "HOTPATCH_WORKER=1")
	var stderr io.ReadCloser
	if worst {
		cmd.Env = append(cmd.Env, "HOTPATCH_TEST_INJECT_STALL="+k.stages[i%len(k.stages)]+":10s")
		var err error
		if stderr, err = cmd.StderrPipe(); err != nil {
			t.Fatal(err)
		}
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if worst {
		if announced(stderr) {
			k.announced++
		}
	} else {
		time.Sleep(time.Duration(k.rng.Intn(25000)) * time.Microsecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
}

// announced reads r until the stall announcement (true) or EOF (false: the
// command made no injected call, e.g. a patch-ready re-apply).
func announced(r io.Reader) bool {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if strings.Contains(sc.Text(), proc.StallAnnounce) {
			go io.Copy(io.Discard, r)
			return true
		}
	}
	return false
}

// settle checks that the target lives and status parses, showing the patch
// applied, absent, or in a transition that recover settles.
func (k *killRig) settle(t *testing.T, run int) {
	t.Helper()
	if exited, err := k.tg.Exited(); exited {
		t.Fatalf("run %d: target died: %v; stderr: %s", run, err, k.tg.Stderr())
	}
	st := status(t, k.bin, k.pid)
	switch {
	case len(st.Patches) == 0:
		k.applied = false
	case len(st.Patches) == 1 && st.Patches[0].StateName == "applied":
		k.applied = true
	case len(st.Patches) == 1:
		if out, err := exec.Command(k.bin, "recover", "--pid", k.pid).CombinedOutput(); err != nil {
			t.Fatalf("run %d: recover: %v\n%s", run, err, out)
		}
		st = status(t, k.bin, k.pid)
		k.applied = len(st.Patches) == 1 && st.Patches[0].StateName == "applied"
		if len(st.Patches) > 1 || (len(st.Patches) == 1 && !k.applied) {
			t.Fatalf("run %d: after recover: %+v", run, st.Patches)
		}
	default:
		t.Fatalf("run %d: status %+v", run, st.Patches)
	}
	if run%5 == 0 {
		k.computes(t, run)
	}
}

// computes checks that the target runs what status says, all of it (the
// target's own check accepts each function's old or new value alone): past
// the line in flight, its next line is the three old results or the three
// new ones.
func (k *killRig) computes(t *testing.T, run int) {
	t.Helper()
	want := "1 2 3"
	if k.applied {
		want = "101 102 103"
	}
	any := func(string) bool { return true }
	k.tg.Drain()
	k.tg.WaitLine(t, 5*time.Second, any)
	if l := k.tg.WaitLine(t, 5*time.Second, any); l != want {
		t.Fatalf("run %d: status says applied=%v, but the target computes %q, want %q", run, k.applied, l, want)
	}
}

// finish brings the target back to unpatched and checks it is intact.
func (k *killRig) finish(t *testing.T) {
	if out, err := exec.Command(k.bin, "recover", "--pid", k.pid).CombinedOutput(); err != nil {
		t.Fatalf("recover: %v\n%s", err, out)
	}
	if st := status(t, k.bin, k.pid); len(st.Patches) == 1 {
		if out, err := exec.Command(k.bin, "revert", "crash-fix", "--pid", k.pid).CombinedOutput(); err != nil {
			t.Fatalf("final revert: %v\n%s", err, out)
		}
	}
	if st := status(t, k.bin, k.pid); len(st.Patches) != 0 {
		t.Fatalf("not clean at the end: %+v", st.Patches)
	}
	k.tg.Drain()
	k.tg.WaitLine(t, 2*time.Second, func(l string) bool { return l == "1 2 3" })
	if s := k.tg.Stderr(); s != "" {
		t.Fatalf("target reported: %s", s)
	}
}

// TestKilledAtRandomMoments SIGKILLs the apply/revert worker 300 times per
// build (normal, and patch-ready with -fpatchable-function-entry=7,5): 200
// times after a random delay, 100 times at an announced instant of an
// injected system call (the four instants in turn; -short: 20 and 10); and
// half as often a one-thread target (one stop per apply and revert). The
// 16-thread target checks every result: it must never die or compute a
// wrong value, status must always parse, and recover must settle every
// transition.
func TestKilledAtRandomMoments(t *testing.T) {
	testutil.NeedGCC(t)
	testutil.NeedPtrace(t)
	bin := buildHotpatch(t)
	random, worst := 200, 100
	if testing.Short() {
		random, worst = 20, 10
	}
	for _, b := range []struct {
		name  string
		flags []string
		args  []string
	}{{"normal", []string{"-flive-patching=inline-clone"}, nil}, {"patch-ready", []string{"-flive-patching=inline-clone", "-fpatchable-function-entry=7,5"}, nil},
		// One thread: the region is mapped in the stop of the checks and
		// the jumps, and freed in the stop of the restore (engine.oneStop).
		{"one-thread", []string{"-flive-patching=inline-clone"}, []string{"single"}}} {
		t.Run(b.name, func(t *testing.T) {
			k := newKillRig(t, bin, b.args, b.flags...)
			start := time.Now()
			random, worst := random, worst
			if b.args != nil {
				random, worst = random/2, worst/2
			}
			for i := 0; i < random+worst; i++ {
				k.killWorker(t, i >= random, i)
				k.settle(t, i)
				if b.name == "patch-ready" && i%10 == 9 {
					// A reverted patch-ready region is kept for a fast
					// re-apply (no injected call); recover frees it, so the
					// next apply injects again.
					k.settle(t, i)
					exec.Command(bin, "recover", "--pid", k.pid).Run()
				}
			}
			k.finish(t)
			t.Logf("%d kills (%d at an announced injected-call instant) in %v", random+worst, k.announced, time.Since(start).Round(time.Millisecond))
			if k.announced == 0 {
				t.Errorf("no kill at an injected call")
			}
		})
	}
}

// TestCgroupKill kills the cgroup the hotpatch command runs in (cgroup.kill,
// as systemctl stop or a container runtime does) while it applies or
// reverts: at a random instant, and at an announced instant of an injected
// call (by then the worker has moved to its own cgroup and must finish the
// operation: no transition is left for recover). Needs a writable cgroup v2.
func TestCgroupKill(t *testing.T) {
	testutil.NeedGCC(t)
	testutil.NeedPtrace(t)
	root, err := shield.Cgroup2Mount()
	if err != nil {
		t.Skipf("no cgroup v2: %v", err)
	}
	base := filepath.Join(root, fmt.Sprintf("hotpatch-test-%d", os.Getpid()))
	if err := os.Mkdir(base, 0o755); err != nil {
		t.Skipf("cgroup v2 not writable: %v", err)
	}
	defer os.Remove(base)
	bin := buildHotpatch(t)
	k := newKillRig(t, bin, nil, "-flive-patching=inline-clone")
	runs := 40
	if testing.Short() {
		runs = 10
	}
	finished := 0
	for i := 0; i < runs; i++ {
		worst := i%2 == 1
		dir := filepath.Join(base, strconv.Itoa(i))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, k.args()...)
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
		if worst {
			cmd.Env = append(os.Environ(), "HOTPATCH_TEST_INJECT_STALL="+k.stages[i/2%len(k.stages)]+":20ms")
		}
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		syscall.Close(fd)
		wasApplied := k.applied
		if worst {
			if announced(stderr) {
				k.announced++
			}
		} else {
			time.Sleep(time.Duration(k.rng.Intn(25000)) * time.Microsecond)
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0); err != nil {
			t.Fatal(err)
		}
		// The worker holds the pipe too: EOF means it is gone as well.
		done := make(chan struct{})
		go func() { io.Copy(io.Discard, stderr); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Fatalf("run %d: the worker did not finish", i)
		}
		cmd.Wait()
		for j := 0; os.Remove(dir) != nil && j < 200; j++ {
			time.Sleep(5 * time.Millisecond) // the killed processes are still exiting
		}
		if exited, err := k.tg.Exited(); exited {
			t.Fatalf("run %d: target died: %v; stderr: %s", i, err, k.tg.Stderr())
		}
		st := status(t, bin, k.pid)
		if worst && len(st.Patches) <= 1 {
			now := len(st.Patches) == 1 && st.Patches[0].StateName == "applied"
			if now != wasApplied && (len(st.Patches) == 0 || now) {
				finished++
			} else {
				t.Errorf("run %d: the worker, out of the killed cgroup, did not finish: %+v", i, st.Patches)
			}
		}
		k.settle(t, i)
	}
	k.finish(t)
	t.Logf("%d cgroup kills, %d at an injected-call instant, %d of those finished by the worker", runs, k.announced, finished)
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
