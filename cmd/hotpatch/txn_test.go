package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/engine"
	"github.com/hotpatch/hotpatch/internal/record"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// TestTransaction: the hot and cold halves of a bundle are one transaction
// with honest results. A failed hot half leaves the file on disk alone (it
// used to be replaced, with exit 3); a failed revert of the processes leaves
// the fixed file in place (it used to restore the original while the
// process stayed patched); a cold half that fails after the hot half undoes
// the hot half; a revert whose backup is gone is an error (it used to
// succeed silently); build --cold refuses a bundle whose hot half cannot
// apply (a function too short to redirect).
func TestTransaction(t *testing.T) {
	testutil.NeedGCC(t)
	testutil.NeedPtrace(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root (chown of the installed target)")
	}
	d := t.TempDir()
	state := filepath.Join(d, "state")
	flags := []string{"-O2", "-g", "-flive-patching=inline-clone", "-Wl,--build-id"}
	v1 := testutil.Compile(t, filepath.Join(d, "svc-v1"), append([]string{"testdata/svc.c"}, flags...)...)
	v2 := testutil.Compile(t, filepath.Join(d, "svc-v2"), append([]string{"testdata/svc.c", "-DFIXED"}, flags...)...)
	obj := testutil.Compile(t, filepath.Join(d, "fix.o"), "testdata/svc_fix.c", "-O2", "-ffunction-sections", "-fdata-sections", "-c")
	bin := filepath.Join(d, "bin", "svc")
	os.Mkdir(filepath.Dir(bin), 0o755)
	orig, _ := os.ReadFile(v1)
	os.WriteFile(bin, orig, 0o755)
	hp := filepath.Join(d, "fix.hp")
	mustCLI(t, "build", "--target", bin, "--new", obj, "-o", hp, "--id", "txn-fix", "--cold", v2)
	origSum := sha(t, bin)
	common := []string{"--allow-unsigned", "--state-dir", state}

	tg := testutil.Start(t, bin, "loop")
	tg.WaitLine(t, 10*time.Second, func(l string) bool { return l == "v1" })
	pid := strconv.Itoa(tg.Pid)
	bystander := testutil.Start(t, "/bin/sleep", "600") // does not map the target
	notTarget := strconv.Itoa(bystander.Pid)

	type outcome struct {
		Transaction struct {
			Hot, Cold struct{ Outcome, Reason string }
		}
		ExitCode int `json:"exit_code"`
	}
	jsonRun := func(want int, args ...string) outcome {
		t.Helper()
		out, errs, code := runCLI(t, append(args, "--json")...)
		var o outcome
		if err := json.Unmarshal([]byte(out), &o); err != nil {
			t.Fatalf("hotpatch %s: %v\n%s%s", strings.Join(args, " "), err, out, errs)
		}
		if code != want || (want != 0 && o.ExitCode != want) {
			t.Fatalf("hotpatch %s: exit %d (document %d), want %d\n%s%s", strings.Join(args, " "), code, o.ExitCode, want, out, errs)
		}
		return o
	}
	applied := func(pid int) bool {
		st, err := engine.Status(pid)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range st.Patches {
			if p.ID == "txn-fix" && p.State == record.StateApplied {
				return true
			}
		}
		return false
	}

	// 1. Hot half fails (the process does not run the target): exit 3, the
	// file on disk untouched, each half reported.
	o := jsonRun(exitNoTarget, append([]string{"apply", hp, "--pid", notTarget}, common...)...)
	if o.Transaction.Hot.Outcome != "failed" || o.Transaction.Cold.Outcome != "not-done" {
		t.Fatalf("hot failure: %+v", o.Transaction)
	}
	if sha(t, bin) != origSum {
		t.Fatal("the cold half was installed although the hot half failed")
	}
	out, _, _ := runCLI(t, append([]string{"apply", hp, "--pid", notTarget}, common...)...)
	if !strings.Contains(out, "cold half (file on disk): not-done") {
		t.Errorf("text output does not report the halves:\n%s", out)
	}

	// 1b. Host-wide form: one process patched, one failed: the hot half is
	// partial, the file on disk untouched.
	o = jsonRun(exitNoTarget, append([]string{"apply", hp, "--pid", pid, "--pid", notTarget}, common...)...)
	if o.Transaction.Hot.Outcome != "partial" || o.Transaction.Cold.Outcome != "not-done" || sha(t, bin) != origSum || !applied(tg.Pid) {
		t.Fatalf("host-wide partial failure: %+v", o.Transaction)
	}
	mustCLI(t, "revert", "txn-fix", "--pid", pid, "--state-dir", state)
	if applied(tg.Pid) || sha(t, bin) != origSum {
		t.Fatal("revert after the partial apply")
	}

	// 2. Both halves; then a revert whose hot half fails keeps the fixed
	// file (exit 6: not applied in that process).
	o = jsonRun(0, append([]string{"apply", hp, "--pid", pid}, common...)...)
	if o.Transaction.Hot.Outcome != "done" || o.Transaction.Cold.Outcome != "done" {
		t.Fatalf("apply: %+v", o.Transaction)
	}
	tg.WaitLine(t, 10*time.Second, func(l string) bool { return l == "v2" })
	o = jsonRun(exitNotApplied, "revert", "txn-fix", "--pid", notTarget, "--state-dir", state)
	if o.Transaction.Hot.Outcome != "failed" || o.Transaction.Cold.Outcome != "not-done" || runOnce(t, bin) != "v2" {
		t.Fatalf("revert with a failing hot half: %+v, file runs %s", o.Transaction, runOnce(t, bin))
	}

	// 3. The backup is gone: revert is an error, and the process stays patched.
	backup := filepath.Join(state, "cold", "txn-fix")
	saved := filepath.Join(d, "saved-backup")
	if err := os.Rename(backup, saved); err != nil {
		t.Fatal(err)
	}
	o = jsonRun(exitNotApplied, "revert", hp, "--pid", pid, "--state-dir", state)
	if o.Transaction.Cold.Outcome != "failed" || o.Transaction.Hot.Outcome != "not-done" || !applied(tg.Pid) {
		t.Fatalf("revert without backup: %+v (process patched: %v)", o.Transaction, applied(tg.Pid))
	}
	os.Rename(saved, backup)
	o = jsonRun(0, "revert", hp, "--pid", pid, "--state-dir", state)
	if o.Transaction.Hot.Outcome != "done" || o.Transaction.Cold.Outcome != "done" || sha(t, bin) != origSum || applied(tg.Pid) {
		t.Fatalf("revert: %+v", o.Transaction)
	}

	// 4. The cold half fails after the hot half: the process is reverted.
	os.MkdirAll(filepath.Join(state, "cold"), 0o700)
	os.WriteFile(backup, []byte("not a directory"), 0o600) // where the backup must go
	o = jsonRun(exitPermission, append([]string{"apply", hp, "--pid", pid}, common...)...)
	if o.Transaction.Hot.Outcome != "rolled-back" || o.Transaction.Cold.Outcome != "failed" || applied(tg.Pid) || sha(t, bin) != origSum {
		t.Fatalf("cold failure: %+v (process patched: %v)", o.Transaction, applied(tg.Pid))
	}
	os.Remove(backup)

	// 5. build --cold refuses a bundle whose hot half cannot apply.
	tiny := testutil.Compile(t, filepath.Join(d, "tiny"), "testdata/tiny.c", "-O2", "-g", "-flive-patching=inline-clone", "-falign-functions=1", "-Wl,--build-id")
	tinyFixed := testutil.Compile(t, filepath.Join(d, "tiny2"), "testdata/tiny.c", "-O2", "-g", "-flive-patching=inline-clone", "-falign-functions=1", "-DFIXED", "-Wl,--build-id")
	os.WriteFile(tinyFixed, append(mustRead(t, tinyFixed), 0), 0o755) // differs from the target
	tobj := testutil.Compile(t, filepath.Join(d, "tiny_fix.o"), "testdata/tiny_fix.c", "-O2", "-ffunction-sections", "-c")
	tb := []string{"build", "--target", tiny, "--new", tobj, "-o", filepath.Join(d, "tiny.hp")}
	if errs := wantExit(t, exitRefused, append(tb, "--cold", tinyFixed)...); !strings.Contains(errs, "tiny") || !strings.Contains(errs, "cannot apply") {
		t.Errorf("build --cold of a too-short function: %s", errs)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(b)
}
