package engine

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/testutil"
)

// standStill asks the stopgap target how long its spinning main thread
// stood still at most since the last question (internal/proc/testdata/stopgap.c,
// shared with proc's test), and
// which compute() runs.
func standStill(t *testing.T, tg *testutil.Target) (time.Duration, string) {
	t.Helper()
	tg.Drain()
	fmt.Fprintln(tg.Stdin)
	l := tg.WaitLine(t, 10*time.Second, func(l string) bool { return strings.HasPrefix(l, "maxoff ") })
	n, err := strconv.ParseInt(strings.TrimPrefix(l, "maxoff "), 10, 64)
	if err != nil {
		t.Fatalf("target said %q", l)
	}
	v := tg.WaitLine(t, 10*time.Second, func(l string) bool { return strings.HasPrefix(l, "v ") })
	return time.Duration(n), v
}

// covers fails unless the reported stall is at least what the target
// measured itself standing still, less a generous allowance for what that
// measure adds (time a shared virtual machine's hypervisor or interrupts
// took).
func covers(t *testing.T, what string, stall, seen time.Duration) {
	t.Helper()
	if stall <= 0 {
		t.Errorf("%s: stall_ns not reported", what)
	}
	if slack := 5*time.Millisecond + seen/10; stall+slack < seen {
		t.Errorf("%s: stall %v, but the target stood still for %v", what, stall, seen)
	}
}

// TestStallCoversEveryWindow: apply's and revert's Stall is at least the
// longest time the target's thread stood still, whichever window that was:
// held long in the one-thread window that maps the region (apply) or frees
// it (revert), Stall shows it, though the every-thread window (Pause) was
// short.
func TestStallCoversEveryWindow(t *testing.T) {
	dir := setup(t)
	bin := testutil.Compile(t, filepath.Join(dir, "stopgap"), append([]string{"../proc/testdata/stopgap.c"}, targetFlags...)...)
	p := buildPatch(t, bin, compileObj(t, dir, "basic_new.c", "-fPIE"))
	tg := testutil.Start(t, bin)
	tg.WaitLine(t, 10*time.Second, func(l string) bool { return l == "ready" })
	standStill(t, tg)

	cycle := func(hold string, d time.Duration) {
		t.Helper()
		faultHook = func(s string) error {
			if s == hold {
				time.Sleep(d)
			}
			return nil
		}
		defer func() { faultHook = func(string) error { return nil } }()
		ar, err := Apply(tg.Pid, p, Options{})
		if err != nil {
			t.Fatal(err)
		}
		seen, v := standStill(t, tg)
		t.Logf("apply (held %q %v): stall %v, pause %v, one thread %v; the target stood still %v", hold, d, ar.Stall, ar.Pause, ar.AllocPause, seen)
		covers(t, "apply", ar.Stall, seen)
		if v != "v 3" {
			t.Fatalf("after apply the target computes %q", v)
		}
		if hold == "map" && ar.Stall < d {
			t.Errorf("apply: stall %v, but the thread that mapped the region was held %v", ar.Stall, d)
		}
		rr, err := Revert(tg.Pid, p.ID, Options{})
		if err != nil {
			t.Fatal(err)
		}
		seen, v = standStill(t, tg)
		t.Logf("revert (held %q %v): stall %v, pause %v, freed %v %s; the target stood still %v", hold, d, rr.Stall, rr.Pause, rr.Freed, rr.Retained, seen)
		covers(t, "revert", rr.Stall, seen)
		if v != "v 2" {
			t.Fatalf("after revert the target computes %q", v)
		}
		if hold == "free" && rr.Freed && rr.Stall < d {
			t.Errorf("revert: stall %v, but the thread that freed the region was held %v", rr.Stall, d)
		}
	}
	cycle("", 0)
	cycle("map", 60*time.Millisecond)
	cycle("free", 60*time.Millisecond)
}
