package main

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/testutil"
)

// TestSeccompBlockedExit4: an apply the target's seccomp filter allows no
// way for (memfd_create kills the process) exits 4, "nothing was changed",
// naming the call, and the target lives on.
func TestSeccompBlockedExit4(t *testing.T) {
	testutil.NeedGCC(t)
	testutil.NeedPtrace(t)
	d := t.TempDir()
	src := func(n string) string { return filepath.Join("..", "..", "internal", "engine", "testdata", n) }
	bin := testutil.Compile(t, filepath.Join(d, "seccomp"), src("seccomp.c"), "-O2", "-g", "-pthread", "-flive-patching=inline-clone")
	obj := testutil.Compile(t, filepath.Join(d, "new.o"), src("basic_new.c"), "-O2", "-ffunction-sections", "-fdata-sections", "-c")
	hp := filepath.Join(d, "fix.hp")
	mustCLI(t, "build", "--target", bin, "--new", obj, "-o", hp)
	tg := testutil.Start(t, bin, "kill-memfd")
	tg.WaitLine(t, 5*time.Second, func(l string) bool { return strings.HasPrefix(l, "old ") })
	errs := wantExit(t, exitRefused, "apply", hp, "--pid", strconv.Itoa(tg.Pid), "--allow-unsigned")
	if !strings.Contains(errs, "memfd_create is blocked by the target's seccomp filter (SECCOMP_RET_KILL_PROCESS)") || !strings.Contains(errs, "nothing was changed") {
		t.Errorf("stderr %q", errs)
	}
	if !testutil.Alive(tg.Pid) {
		t.Fatal("target died")
	}
	tg.Drain()
	tg.WaitLine(t, 5*time.Second, func(l string) bool { return strings.HasPrefix(l, "old ") && strings.Contains(l, " new 0 sigsys 0") })
}
