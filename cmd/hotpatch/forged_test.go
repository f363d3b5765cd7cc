package main

import (
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

// TestForgedRecords: unprivileged processes forge hotpatch records (memfd
// mappings named "hotpatch:..."): one with terminal escapes in its name and
// a garbage header, one with a well-formed record left "applying". Root's
// status shows the first as foreign, with the escapes escaped (they used to
// reach the terminal raw); an --all-or-none apply patches the process with
// the foreign record (which it ignores) and root's own process, and the
// record of the other process decides nothing for them (it used to roll
// back root's processes).
func TestForgedRecords(t *testing.T) {
	testutil.NeedGCC(t)
	testutil.NeedPtrace(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root (to run the forgers as nobody)")
	}
	d := t.TempDir()
	openUp(t, d)
	// SALT: a build-id of this run's own, so that no other test's process matches.
	bin := testutil.Compile(t, filepath.Join(d, "forge"), "testdata/forge.c", "-O2", "-g", "-flive-patching=inline-clone",
		"-Wl,--build-id", `-DSALT="`+d+`"`)
	obj := testutil.Compile(t, filepath.Join(d, "fix.o"), "testdata/svc_fix.c", "-O2", "-ffunction-sections", "-fdata-sections", "-c")
	hp := filepath.Join(d, "fix.hp")
	mustCLI(t, "build", "--target", bin, "--new", obj, "-o", hp, "--id", "forge-fix")

	root := testutil.Start(t, bin, "run")
	root.WaitLine(t, 10*time.Second, func(l string) bool { return l == "v1" })
	foreign, waitForeign := startNobody(t, bin, "run", "foreign")
	applying, waitApplying := startNobody(t, bin, "run", "applying")
	waitForeign("v1")
	waitApplying("v1")

	// status, text: sanitised, and the garbage record is foreign.
	for _, args := range [][]string{{"status"}, {"status", "--pid", strconv.Itoa(foreign)}} {
		out := mustCLI(t, args...)
		if strings.ContainsAny(out, "\x1b\x07\u009b") {
			t.Errorf("%s printed raw control characters: %q", strings.Join(args, " "), out)
		}
		if !strings.Contains(out, engine.StateForeign) || !strings.Contains(out, `\x1b[2J`) {
			t.Errorf("%s does not show the escaped foreign region:\n%s", strings.Join(args, " "), out)
		}
	}
	// status, JSON: valid, and says foreign.
	var st engine.StatusReport
	if err := json.Unmarshal([]byte(mustCLI(t, "status", "--pid", strconv.Itoa(foreign), "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Patches) != 1 || st.Patches[0].StateName != engine.StateForeign {
		t.Fatalf("status JSON: %+v", st)
	}
	// The well-formed record is believed for its own process only.
	st = engine.StatusReport{}
	if err := json.Unmarshal([]byte(mustCLI(t, "status", "--pid", strconv.Itoa(applying), "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Patches) != 1 || st.Patches[0].StateName != "applying" {
		t.Fatalf("status JSON of the applying forger: %+v", st)
	}

	pids := []string{"--pid", strconv.Itoa(root.Pid), "--pid", strconv.Itoa(foreign), "--pid", strconv.Itoa(applying)}
	out, errs, code := runCLI(t, append([]string{"apply", hp, "--all-or-none", "--allow-unsigned", "--no-cold"}, pids...)...)
	if code == 0 {
		t.Fatalf("apply succeeded everywhere, want the applying forger to fail:\n%s", out)
	}
	if !strings.Contains(out, "not counted for --all-or-none") {
		t.Errorf("apply report does not say why nothing was rolled back:\n%s%s", out, errs)
	}
	for _, pid := range []int{root.Pid, foreign} {
		st, err := engine.Status(pid)
		if err != nil {
			t.Fatal(err)
		}
		applied := false
		for _, p := range st.Patches {
			applied = applied || (p.ID == "forge-fix" && p.State == record.StateApplied)
		}
		if !applied {
			t.Errorf("process %d: forge-fix not applied after the rollout (rolled back because of a forged record?): %+v\n%s", pid, st.Patches, out)
		}
	}
	root.WaitLine(t, 10*time.Second, func(l string) bool { return l == "v2" })
	waitForeign("v2")
}
