package engine

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hotpatch/hotpatch/internal/procmaps"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// Targets hardened with seccomp (testdata/seccomp.c): hotpatch must never
// get them killed or signalled, and must patch them whenever the filter
// allows some way.

type scCounts struct{ old, new, sigsys int64 }

func parseSC(l string) (c scCounts, ok bool) {
	_, err := fmt.Sscanf(l, "old %d new %d sigsys %d", &c.old, &c.new, &c.sigsys)
	return c, err == nil
}

// waitSC waits for a line of the target's counts that satisfies cond.
func waitSC(t *testing.T, tg *testutil.Target, what string, cond func(scCounts) bool) scCounts {
	t.Helper()
	var got scCounts
	tg.Drain()
	l := tg.WaitLine(t, 5*time.Second, func(l string) bool {
		c, ok := parseSC(l)
		if ok {
			got = c
		}
		return ok && cond(c)
	})
	if _, ok := parseSC(l); !ok {
		t.Fatalf("%s: last line %q", what, l)
	}
	return got
}

var seccompBuilds = []struct {
	name  string
	flags []string
	path  string
}{{"stop", nil, "stop"}, {"patch-ready", readyFlags, "patch-ready"}}

func startSeccomp(t *testing.T, bin, policy string, mode ...string) *testutil.Target {
	tg := testutil.Start(t, bin, append([]string{policy}, mode...)...)
	waitSC(t, tg, "start", func(c scCounts) bool { return c.old > 0 })
	return tg
}

// noRegion checks the target maps no patch region.
func noRegion(t *testing.T, pid int) {
	t.Helper()
	maps, err := procmaps.Read(pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range maps {
		if strings.Contains(m.Path, "memfd:hotpatch") {
			t.Errorf("a patch region is left mapped: %+v", m)
		}
	}
}

// TestSeccompRefusedWhenMemfdBlocked: memfd_create killed, failing with
// EPERM, or trapped: apply is refused with an error naming memfd_create
// (ErrSeccompBlocked, exit 4), the target keeps running the old code, no
// SIGSYS is delivered, nothing is left mapped.
func TestSeccompRefusedWhenMemfdBlocked(t *testing.T) {
	dir := setup(t)
	for _, b := range seccompBuilds {
		bin := compileTarget(t, dir, "seccomp.c", b.flags...)
		p := buildPatch(t, bin, compileObj(t, dir, "basic_new.c"))
		for _, policy := range []string{"kill-memfd", "errno-memfd", "trap-memfd", "kill-memfd single"} {
			t.Run(b.name+"/"+policy, func(t *testing.T) {
				tg := startSeccomp(t, bin, strings.Fields(policy)[0], strings.Fields(policy)[1:]...)
				_, err := Apply(tg.Pid, p, Options{})
				if !errors.Is(err, ErrSeccompBlocked) || !strings.Contains(err.Error(), "memfd_create is blocked by the target's seccomp filter") {
					t.Fatalf("apply: %v, want ErrSeccompBlocked naming memfd_create", err)
				}
				if policy == "errno-memfd" && !errors.Is(err, unix.EPERM) {
					t.Errorf("%v does not wrap EPERM", err)
				}
				t.Logf("refused: %v", err)
				c := waitSC(t, tg, "after the refusal", func(c scCounts) bool { return c.old > 0 })
				later := waitSC(t, tg, "still running", func(n scCounts) bool { return n.old > c.old })
				if later.new != 0 || later.sigsys != 0 {
					t.Errorf("after the refusal: %+v (new code ran or SIGSYS delivered)", later)
				}
				noRegion(t, tg.Pid)
				assertRunning(t, tg.Pid)
			})
		}
	}
}

// TestSeccompMemoryDenyWriteExecute: with mprotect(PROT_EXEC) and
// mmap(PROT_WRITE|PROT_EXEC) killed (or trapped), apply maps the region with
// its final protections, the calls go to the new code, revert works, and
// the target is alive and never got SIGSYS.
func TestSeccompMemoryDenyWriteExecute(t *testing.T) {
	dir := setup(t)
	for _, b := range seccompBuilds {
		bin := compileTarget(t, dir, "seccomp.c", b.flags...)
		p := buildPatch(t, bin, compileObj(t, dir, "basic_new.c"))
		// "single": a process of one thread, whose region is mapped in the
		// stop of the checks (engine.oneStop).
		for _, policy := range []string{"mdwe", "trap-mdwe", "mdwe single"} {
			t.Run(b.name+"/"+policy, func(t *testing.T) {
				tg := startSeccomp(t, bin, strings.Fields(policy)[0], strings.Fields(policy)[1:]...)
				rep, err := Apply(tg.Pid, p, Options{})
				if err != nil {
					t.Fatalf("apply: %v", err)
				}
				if len(rep.Functions) != 1 || rep.Functions[0].Path != b.path {
					t.Fatalf("report: %+v, want the %s path", rep.Functions, b.path)
				}
				if strings.HasSuffix(policy, "single") && b.path == "stop" && !hasPhase(rep.Phases, phaseOneStop) {
					t.Errorf("one thread: phases %+v, want the region mapped in the one stop", rep.Phases)
				}
				waitSC(t, tg, "new code", func(c scCounts) bool { return c.new > 0 })
				maps, _ := procmaps.Read(tg.Pid)
				exec := 0
				for _, m := range maps {
					if strings.Contains(m.Path, "memfd:hotpatch") && strings.Contains(m.Perms, "x") {
						exec++
						if strings.Contains(m.Perms, "w") {
							t.Errorf("writable and executable: %+v", m)
						}
					}
				}
				if exec == 0 {
					t.Errorf("no executable patch mapping")
				}
				if _, err := Revert(tg.Pid, p.ID, Options{}); err != nil {
					t.Fatalf("revert: %v", err)
				}
				c := waitSC(t, tg, "after revert", func(scCounts) bool { return true })
				// New calls go to the old code again: new stops growing.
				c = waitSC(t, tg, "old code again", func(n scCounts) bool { return n.old > c.old && n.new == c.new })
				if c.sigsys != 0 {
					t.Errorf("%d SIGSYS delivered", c.sigsys)
				}
				assertRunning(t, tg.Pid)
			})
		}
	}
}

// TestSeccompMunmapBlocked: a filter that kills munmap does not stop the
// apply (it needs none) and the revert restores the old code but keeps the
// region, saying why, instead of killing the target.
func TestSeccompMunmapBlocked(t *testing.T) {
	dir := setup(t)
	bin := compileTarget(t, dir, "seccomp.c")
	p := buildPatch(t, bin, compileObj(t, dir, "basic_new.c"))
	tg := startSeccomp(t, bin, "kill-munmap")
	if _, err := Apply(tg.Pid, p, Options{}); err != nil {
		t.Fatalf("apply: %v", err)
	}
	waitSC(t, tg, "new code", func(c scCounts) bool { return c.new > 0 })
	rep, err := Revert(tg.Pid, p.ID, Options{})
	if err != nil {
		t.Fatalf("revert: %v", err)
	}
	if !strings.Contains(rep.Retained, "munmap is blocked") {
		t.Errorf("revert report: retained %q, want the munmap refusal", rep.Retained)
	}
	// The region is kept, not unmapped: it is still in /proc/PID/maps.
	if n := regionMappings(t, tg.Pid); n == 0 {
		t.Errorf("revert reported the region kept, but no patch region is mapped")
	}
	c := waitSC(t, tg, "after revert", func(scCounts) bool { return true })
	c = waitSC(t, tg, "old code again", func(n scCounts) bool { return n.old > c.old && n.new == c.new })
	if c.sigsys != 0 {
		t.Errorf("%d SIGSYS delivered", c.sigsys)
	}
	assertRunning(t, tg.Pid)
}
