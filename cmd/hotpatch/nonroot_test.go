package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/engine"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

const nobody = 65534

// asNobody returns a command that runs bin as uid/gid nobody with env.
func asNobody(bin string, env []string, args ...string) *exec.Cmd {
	c := exec.Command(bin, args...)
	c.Env = append([]string{"PATH=/usr/bin:/bin"}, env...)
	c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	return c
}

// openUp makes dir and every directory above it up to / searchable by
// others, so that nobody can run the programs the test built in it.
func openUp(t *testing.T, dir string) {
	for p := dir; p != "/" && p != "."; p = filepath.Dir(p) {
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		if st.Mode&0o055 != 0o055 { // keep every other bit (the sticky bit of /tmp)
			syscall.Chmod(p, st.Mode&0o7777|0o055)
		}
	}
}

// TestNonRootState: a user other than root keeps hotpatch's locks in
// $XDG_RUNTIME_DIR/hotpatch, never in root's /run/hotpatch (which it cannot
// write: that used to fail with exit 1) nor in a shared /tmp directory where
// users could block each other or plant symbolic links; without
// XDG_RUNTIME_DIR it refuses clearly; a lock directory or file another user
// could have prepared is refused.
func TestNonRootState(t *testing.T) {
	testutil.NeedGCC(t)
	testutil.NeedPtrace(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root (to run commands as nobody)")
	}
	d := t.TempDir()
	openUp(t, d)
	bin := filepath.Join(d, "hotpatch")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	target := testutil.Compile(t, filepath.Join(d, "svc"), "testdata/svc.c", "-O2", "-g", "-flive-patching=inline-clone", "-Wl,--build-id")
	obj := testutil.Compile(t, filepath.Join(d, "fix.o"), "testdata/svc_fix.c", "-O2", "-ffunction-sections", "-fdata-sections", "-c")
	hp := filepath.Join(d, "fix.hp")
	mustCLI(t, "build", "--target", target, "--new", obj, "-o", hp, "--id", "nonroot-fix")
	os.Chmod(hp, 0o644)
	// Root's state directory exists, as on any host where root used hotpatch.
	if err := os.MkdirAll(engine.RootStateDir, 0o700); err != nil {
		t.Fatal(err)
	}

	// The target runs as nobody.
	tpid, waitFor := startNobody(t, target, "loop")
	waitFor("v1")
	pid := strconv.Itoa(tpid)
	stat, _ := os.ReadFile("/proc/" + pid + "/stat")
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	lockName := fmt.Sprintf("%s-%s.lock", pid, f[19])

	xdg := filepath.Join(d, "xdg")
	os.Mkdir(xdg, 0o700)
	os.Chown(xdg, nobody, nobody)
	env := []string{"XDG_RUNTIME_DIR=" + xdg}
	run := func(want int, env []string, args ...string) string {
		t.Helper()
		c := asNobody(bin, env, args...)
		out, _ := c.CombinedOutput()
		if code := c.ProcessState.ExitCode(); code != want {
			t.Fatalf("as nobody: hotpatch %s: exit %d, want %d\n%s", strings.Join(args, " "), code, want, out)
		}
		return string(out)
	}

	run(0, env, "status", "--pid", pid)
	run(0, env, "apply", hp, "--pid", pid, "--allow-unsigned", "--no-cold")
	waitFor("v2")
	// The lock was taken in nobody's own directory and removed on unlock.
	if st, err := os.Lstat(filepath.Join(xdg, "hotpatch")); err != nil || st.Sys().(*syscall.Stat_t).Uid != nobody {
		t.Fatalf("nobody's state directory: %v %v", st, err)
	}
	if _, err := os.Lstat(filepath.Join(xdg, "hotpatch", lockName)); err == nil {
		t.Errorf("the apply left its lock file %s behind", lockName)
	}
	if dst, _ := os.Stat(filepath.Join(xdg, "hotpatch")); dst.Mode().Perm() != 0o700 {
		t.Errorf("nobody's state directory has mode %v", dst.Mode().Perm())
	}
	if _, err := os.Lstat(filepath.Join(engine.RootStateDir, lockName)); err == nil {
		t.Errorf("nobody's command left %s in root's state directory", lockName)
	}
	if out := run(0, env, "status", "--pid", pid); !strings.Contains(out, "nonroot-fix") {
		t.Fatalf("status as nobody:\n%s", out)
	}
	run(0, env, "revert", "nonroot-fix", "--pid", pid)
	waitFor("v1")

	// No XDG_RUNTIME_DIR: a clear refusal, exit 5.
	if out := run(exitPermission, nil, "apply", hp, "--pid", pid, "--allow-unsigned", "--no-cold"); !strings.Contains(out, "XDG_RUNTIME_DIR") {
		t.Errorf("without XDG_RUNTIME_DIR:\n%s", out)
	}
	// A symbolic link planted as the lock file: refused, its target untouched.
	victim := filepath.Join(d, "victim")
	os.WriteFile(victim, []byte("precious"), 0o666)
	lock := filepath.Join(xdg, "hotpatch", lockName)
	os.Remove(lock)
	os.Symlink(victim, lock)
	if out := run(exitPermission, env, "apply", hp, "--pid", pid, "--allow-unsigned", "--no-cold"); !strings.Contains(out, "symbolic link") {
		t.Errorf("planted symlink:\n%s", out)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Errorf("the symlink's target changed: %q", b)
	}
	os.Remove(lock)
	// A state directory others may write to: refused.
	os.Chmod(filepath.Join(xdg, "hotpatch"), 0o770)
	if out := run(exitPermission, env, "apply", hp, "--pid", pid, "--allow-unsigned", "--no-cold"); !strings.Contains(out, "must be 0700 or stricter") {
		t.Errorf("group-writable state directory:\n%s", out)
	}
	waitFor("v1") // none of the refusals touched the process
}

// startNobody starts bin as nobody and returns its pid and a function that
// waits (10 s at most) for the process to print a line.
func startNobody(t *testing.T, bin string, args ...string) (int, func(string)) {
	t.Helper()
	tc := asNobody(bin, nil, args...)
	stdout, _ := tc.StdoutPipe()
	if err := tc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Process.Kill(); tc.Wait() })
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	return tc.Process.Pid, func(want string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case l := <-lines:
				if l == want {
					return
				}
			case <-deadline:
				t.Fatalf("process %d never printed %q", tc.Process.Pid, want)
			}
		}
	}
}
