package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/fleet"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// TestDryRunCLI: apply --dry-run and revert --dry-run print the real run's
// table and JSON, exit as the real run does (here 5: one process is held by
// another tracer), say when processes of several users would be touched,
// honour --uid, and change nothing.
func TestDryRunCLI(t *testing.T) {
	testutil.NeedGCC(t)
	testutil.NeedPtrace(t)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skipf("setpriv (util-linux) is needed to start a process of another user: %v", err)
	}
	d := t.TempDir()
	for _, dir := range []string{filepath.Dir(d), d} { // the other user runs the app from here
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	id := fmt.Sprintf("dry-run-cli-%d", os.Getpid())
	app, tracer, hp := fleetFixture(t, d, id)
	mine := testutil.Start(t, app)
	held := testutil.Start(t, app)
	other := testutil.Start(t, setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", app)
	for _, tg := range []*testutil.Target{mine, held, other} {
		tg.WaitLine(t, 10*time.Second, func(l string) bool { return l != "" })
	}
	tr := testutil.Start(t, tracer, strconv.Itoa(held.Pid))
	tr.WaitLine(t, 5*time.Second, func(l string) bool { return l == "seized" })
	// unpatched: status lists no patched process, and every process still
	// runs the old code.
	unpatched := func(when string) {
		t.Helper()
		out, _, _ := runCLI(t, "status")
		if strings.Contains(out, id) {
			t.Fatalf("%s: a process is patched:\n%s", when, out)
		}
		for _, tg := range []*testutil.Target{mine, held, other} {
			fleetComputes(t, tg, 2, when)
		}
	}

	// Host-wide dry run, JSON: exit 5 like the real run, one document.
	out, errs, code := runCLI(t, "apply", hp, "--allow-unsigned", "--dry-run", "--json")
	if code != exitPermission {
		t.Fatalf("dry run: exit %d, want %d\n%s\n%s", code, exitPermission, out, errs)
	}
	var doc struct {
		fleet.Report
		ExitCode int    `json:"exit_code"`
		Error    string `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("dry run JSON: %v\n%s", err, out)
	}
	got := map[int]fleet.Result{}
	for _, r := range doc.Results {
		got[r.PID] = r
	}
	if !doc.DryRun || doc.ExitCode != exitPermission || doc.Summary.WouldApply != 2 || got[mine.Pid].Result != fleet.WouldApply ||
		got[other.Pid].Result != fleet.WouldApply || got[other.Pid].UID != 65534 || got[held.Pid].Result != fleet.Failed ||
		!strings.Contains(got[held.Pid].Reason, "trac") || len(doc.Users) != 2 {
		t.Errorf("dry run report: %+v", doc)
	}
	unpatched("after the dry run")

	// Text: the same table, marked as a dry run, with the users note.
	out, _, code = runCLI(t, "apply", hp, "--allow-unsigned", "--dry-run")
	for _, want := range []string{"dry run:", "PID", "would-apply", "failed", "note: this apply would touch processes of 2 users (uid 0: 2, uid 65534: 1)"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run text lacks %q:\n%s", want, out)
		}
	}
	if code != exitPermission {
		t.Errorf("dry run text: exit %d", code)
	}
	// The real run exits the same.
	if _, errs, code := runCLI(t, "apply", hp, "--allow-unsigned", "--pid", strconv.Itoa(held.Pid)); code != exitPermission {
		t.Errorf("real apply of the traced process: exit %d\n%s", code, errs)
	}
	unpatched("after the refused apply")

	// --uid selects the other user's process only; one --pid dry run.
	out, _, code = runCLI(t, "apply", hp, "--allow-unsigned", "--dry-run", "--uid", "65534")
	if code != 0 || !strings.Contains(out, "1 would apply") || !strings.Contains(out, strconv.Itoa(other.Pid)) ||
		strings.Contains(out, strconv.Itoa(mine.Pid)+" ") || strings.Contains(out, "note:") {
		t.Errorf("dry run --uid: exit %d\n%s", code, out)
	}
	out, _, code = runCLI(t, "apply", hp, "--allow-unsigned", "--dry-run", "--pid", strconv.Itoa(mine.Pid))
	if code != 0 || !strings.Contains(out, "dry run: would apply "+id) {
		t.Errorf("dry run --pid: exit %d\n%s", code, out)
	}
	unpatched("after the --uid and --pid dry runs")

	// Revert: dry run of an applied patch, then of a missing one (exit 6).
	if out, errs, code := runCLI(t, "apply", hp, "--allow-unsigned", "--pid", strconv.Itoa(mine.Pid)); code != 0 {
		t.Fatalf("apply: %d\n%s\n%s", code, out, errs)
	}
	out, _, code = runCLI(t, "revert", id, "--pid", strconv.Itoa(mine.Pid), "--dry-run")
	if code != 0 || !strings.Contains(out, "dry run: would revert "+id) {
		t.Errorf("dry revert: exit %d\n%s", code, out)
	}
	if out, _, _ := runCLI(t, "status", "--pid", strconv.Itoa(mine.Pid)); !strings.Contains(out, id+"  applied") {
		t.Errorf("after the dry revert:\n%s", out)
	}
	fleetComputes(t, mine, 3, "after the dry revert")
	if _, _, code := runCLI(t, "revert", id, "--pid", strconv.Itoa(other.Pid), "--dry-run"); code != exitNotApplied {
		t.Errorf("dry revert of a process without the patch: exit %d, want %d", code, exitNotApplied)
	}
	if _, errs, code := runCLI(t, "revert", id, "--pid", strconv.Itoa(mine.Pid)); code != 0 {
		t.Fatalf("revert: %d %s", code, errs)
	}
	unpatched("at the end")
}
