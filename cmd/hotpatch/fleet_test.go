package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/fleet"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// runCLI runs hotpatch with args as main does and returns stdout, stderr
// and the exit code.
func runCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	root := newRoot(&out, &errb)
	root.SetArgs(args)
	code := report(root.Execute(), &out, &errb)
	return out.String(), errb.String(), code
}

// fleetFixture builds, in d, internal/fleet's app with its library, the
// tracer that holds a process, and the patch id of the library.
func fleetFixture(t *testing.T, d, id string) (app, tracer, hp string) {
	t.Helper()
	src := func(n string) string { return filepath.Join("..", "..", "internal", "fleet", "testdata", n) }
	flags := []string{"-O2", "-g", "-flive-patching=inline-clone", "-Wl,--build-id"}
	// SALT: a build-id of this run's own (host-wide applies of parallel test
	// runs must not find each other's processes).
	lib := testutil.Compile(t, filepath.Join(d, "libfleet.so"), append([]string{src("libfleet.c"), "-fPIC", "-shared", `-DSALT="` + d + `"`}, flags...)...)
	app = testutil.Compile(t, filepath.Join(d, "app"), append([]string{src("app.c"), "-L" + d, "-lfleet", "-Wl,-rpath," + d}, flags...)...)
	tracer = testutil.Compile(t, filepath.Join(d, "tracer"), src("tracer.c"))
	obj := testutil.Compile(t, filepath.Join(d, "new.o"), src("libfleet_new.c"), "-O2", "-fPIC", "-ffunction-sections", "-fdata-sections", "-c")
	hp = filepath.Join(d, "fix.hp")
	if out, errs, code := runCLI(t, "build", "--target", lib, "--new", obj, "-o", hp, "--id", id); code != 0 {
		t.Fatalf("build: %d %s %s", code, out, errs)
	}
	return app, tracer, hp
}

// fleetComputes checks what a fleet app does now: past the line in
// flight, its next two lines are "i k*i" (the library computes 2*i, the
// fix 3*i).
func fleetComputes(t *testing.T, tg *testutil.Target, k int64, when string) {
	t.Helper()
	tg.Drain()
	tg.WaitLine(t, 10*time.Second, func(string) bool { return true })
	for n := 0; n < 2; n++ {
		l := tg.WaitLine(t, 10*time.Second, func(string) bool { return true })
		var i, v int64
		if _, err := fmt.Sscanf(l, "%d %d", &i, &v); err != nil || v != k*i {
			t.Fatalf("%s: process %d printed %q, want i and %d*i", when, tg.Pid, l, k)
		}
	}
}

// TestFleetCLI drives apply, status and revert without --pid and with
// several, in text and JSON, against real processes sharing a library.
func TestFleetCLI(t *testing.T) {
	testutil.NeedGCC(t)
	testutil.NeedPtrace(t)
	id := fmt.Sprintf("fleet-cli-fix-%d", os.Getpid())
	app, tracer, hp := fleetFixture(t, t.TempDir(), id)

	var ts []*testutil.Target
	var pidArgs []string
	for i := 0; i < 6; i++ {
		tg := testutil.Start(t, app)
		ts = append(ts, tg)
		pidArgs = append(pidArgs, "--pid", strconv.Itoa(tg.Pid))
	}
	for _, tg := range ts {
		tg.WaitLine(t, 10*time.Second, func(l string) bool { return l != "" })
	}

	// apply with no --pid, JSON.
	out, errs, code := runCLI(t, "apply", hp, "--allow-unsigned", "--jobs", "3", "--json")
	if code != 0 {
		t.Fatalf("apply: exit %d\n%s\n%s", code, out, errs)
	}
	var rep fleet.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("apply JSON: %v\n%s", err, out)
	}
	if rep.Summary.Applied != 6 || len(rep.Results) != 6 || rep.Operation != "apply" {
		t.Fatalf("apply: %+v", rep)
	}
	for _, r := range rep.Results {
		if r.Stall <= 0 || !strings.Contains(out, `"stall_ns"`) {
			t.Errorf("apply JSON: process %d: no stall_ns\n%s", r.PID, out)
		}
	}
	for _, tg := range ts {
		fleetComputes(t, tg, 3, "after apply")
	}

	// status with no --pid lists them; with two --pid, only those two.
	out, _, code = runCLI(t, "status", "--json")
	var st struct{ Processes []fleet.ProcessStatus }
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil {
		t.Fatalf("status: %d %v\n%s", code, err, out)
	}
	listed := map[int]bool{}
	for _, p := range st.Processes {
		for _, ps := range p.Patches {
			if ps.ID == id && ps.StateName == "applied" {
				listed[p.PID] = true
			}
		}
	}
	for _, tg := range ts {
		if !listed[tg.Pid] {
			t.Errorf("status does not list %d", tg.Pid)
		}
	}
	out, _, code = runCLI(t, append([]string{"status"}, pidArgs[:4]...)...)
	if code != 0 || strings.Count(out, id+"  applied") != 2 || !strings.Contains(out, "2 patched process(es)") {
		t.Errorf("status of two: %d\n%s", code, out)
	}

	// revert with no --pid, text: a table and a summary line.
	out, errs, code = runCLI(t, "revert", id)
	if code != 0 || !strings.Contains(out, "STALL") || !strings.Contains(out, "6 reverted") {
		t.Fatalf("revert: %d\n%s\n%s", code, out, errs)
	}
	for _, tg := range ts {
		fleetComputes(t, tg, 2, "after revert")
	}
	out, _, code = runCLI(t, "revert", id)
	if code != 0 || !strings.Contains(out, "no process has the patch") {
		t.Errorf("second revert: %d\n%s", code, out)
	}

	// --all-or-none with one process held by another tracer: non-zero exit
	// (5: cannot trace), one JSON document, nobody left patched.
	tr := testutil.Start(t, tracer, strconv.Itoa(ts[2].Pid))
	tr.WaitLine(t, 5*time.Second, func(l string) bool { return l == "seized" })
	out, errs, code = runCLI(t, append([]string{"apply", hp, "--allow-unsigned", "--all-or-none", "--json"}, pidArgs...)...)
	if code != exitPermission {
		t.Errorf("all-or-none: exit %d, want %d\n%s", code, exitPermission, errs)
	}
	var doc struct {
		fleet.Report
		Error    string `json:"error"`
		ExitCode int    `json:"exit_code"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("all-or-none: not one JSON document: %v\n%s", err, out)
	}
	if doc.Summary.Failed != 1 || doc.Summary.RolledBack+doc.Summary.Skipped != 5 || doc.Error == "" || doc.ExitCode != exitPermission {
		t.Errorf("all-or-none report: %+v", doc)
	}
	out, _, _ = runCLI(t, append([]string{"status"}, pidArgs...)...)
	if strings.Contains(out, id+"  applied") {
		t.Errorf("a process stayed patched after --all-or-none:\n%s", out)
	}
	for _, tg := range ts {
		fleetComputes(t, tg, 2, "after --all-or-none")
	}
}

// TestFleetTextNSPID: the host-wide table gains an NSPID column (the pid in
// the process's own PID namespace, "-" for the host's) only when some
// process is in a container; JSON always carries ns_pid when there is one.
func TestFleetTextNSPID(t *testing.T) {
	rep := &fleet.Report{Operation: "apply", PatchID: "p", Results: []fleet.Result{
		{PID: 100, Command: "app", Result: fleet.Applied},
		{PID: 4242, NSPID: 7, Command: "app", Result: fleet.Applied},
	}}
	var b bytes.Buffer
	printFleetText(&b, rep)
	lines := strings.Split(b.String(), "\n")
	if f := strings.Fields(lines[0]); len(f) < 3 || f[0] != "PID" || f[1] != "NSPID" || f[2] != "COMMAND" {
		t.Fatalf("header %q", lines[0])
	}
	if f := strings.Fields(lines[1]); f[0] != "100" || f[1] != "-" {
		t.Errorf("host process line %q", lines[1])
	}
	if f := strings.Fields(lines[2]); f[0] != "4242" || f[1] != "7" || f[2] != "app" {
		t.Errorf("container process line %q", lines[2])
	}
	j, err := json.Marshal(rep.Results[1])
	if err != nil || !strings.Contains(string(j), `"ns_pid":7`) {
		t.Errorf("JSON %s (%v)", j, err)
	}
	b.Reset()
	rep.Results = rep.Results[:1]
	printFleetText(&b, rep)
	if strings.Contains(b.String(), "NSPID") {
		t.Errorf("no container process, yet:\n%s", b.String())
	}
}
