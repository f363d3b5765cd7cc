package engine

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

func TestConsistencyStackAndEntry(t *testing.T) {
	dir := setup(t)
	bin := compileTarget(t, dir, "busy.c")
	p := buildPatch(t, bin, compileObj(t, dir, "busy_new.c"))
	tg := testutil.Start(t, bin, "3")
	tg.WaitLine(t, 5*time.Second, func(l string) bool { return l == "ready" })

	// A thread sleeps inside busy(): the stack model refuses after the
	// timeout and names the function, the thread and its backtrace.
	_, err := Apply(tg.Pid, p, Options{Timeout: 300 * time.Millisecond})
	if !errors.Is(err, ErrUnsafe) {
		t.Fatalf("stack model: got %v, want ErrUnsafe", err)
	}
	for _, want := range []string{"busy is active on thread", "backtrace", "#1", "busy+"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	t.Logf("refused as expected:\n%v", err)

	// The entry model only needs the first bytes free.
	rep, err := Apply(tg.Pid, p, Options{Consistency: ConsistencyEntry})
	if err != nil {
		t.Fatalf("entry model: %v", err)
	}
	if rep.Consistency != ConsistencyEntry {
		t.Errorf("report says %q", rep.Consistency)
	}
	freshRatio(t, tg, 2*time.Second, 3)
	if _, err := Revert(tg.Pid, p.ID, Options{Consistency: ConsistencyEntry}); err != nil {
		t.Fatal(err)
	}
	// Once the thread has left busy(), the stack model succeeds.
	tg.WaitLine(t, 6*time.Second, func(l string) bool { return l == "left" })
	rep, err = Apply(tg.Pid, p, Options{})
	if err != nil {
		t.Fatalf("stack model after the thread left: %v", err)
	}
	if rep.Consistency != ConsistencyStack {
		t.Errorf("report says %q", rep.Consistency)
	}
	freshRatio(t, tg, 2*time.Second, 3)
}

func parseThree(l string) (a, b, c int, ok bool) {
	n, err := fmt.Sscanf(l, "%d %d %d", &a, &b, &c)
	return a, b, c, err == nil && n == 3
}

func TestAllOrNothingThreeFunctions(t *testing.T) {
	tg, p := startWithPatch(t, "three.c", "three_new.c")
	tg.WaitLine(t, 5*time.Second, func(l string) bool { return l == "1 2 3" })
	type fault struct {
		step string
		nth  int
	}
	faults := []fault{{"map", 1}, {"write", 1}, {"protect", 1}, {"redirect", 1}, {"redirect", 2}, {"redirect", 3}, {"commit", 1}}
	for _, f := range faults {
		maps0, text0 := snapshot(t, tg.Pid)
		n := 0
		faultHook = func(s string) error {
			if s == f.step {
				n++
				if n == f.nth {
					return errors.New("injected fault")
				}
			}
			return nil
		}
		_, err := Apply(tg.Pid, p, Options{})
		faultHook = func(string) error { return nil }
		if err == nil || !strings.Contains(err.Error(), f.step+": injected fault") {
			t.Fatalf("fault %v: got %v", f, err)
		}
		maps1, text1 := snapshot(t, tg.Pid)
		if maps0 != maps1 {
			t.Errorf("fault %v: maps changed:\n%s\n---\n%s", f, maps0, maps1)
		}
		if !bytes.Equal(text0, text1) {
			t.Errorf("fault %v: text changed", f)
		}
		tg.Drain()
		tg.WaitLine(t, time.Second, func(l string) bool { return l == "1 2 3" })
	}
	if _, err := Apply(tg.Pid, p, Options{}); err != nil {
		t.Fatal(err)
	}
	tg.Drain()
	tg.WaitLine(t, time.Second, func(l string) bool { return l == "101 102 103" })
	// No line may ever show a mix once applied.
	for i := 0; i < 10; i++ {
		l := tg.WaitLine(t, time.Second, func(string) bool { return true })
		if l != "101 102 103" {
			t.Fatalf("mixed state: %q", l)
		}
	}
}

func TestStackingLIFO(t *testing.T) {
	dir := setup(t)
	bin := compileTarget(t, dir, "basic.c")
	p3 := buildPatch(t, bin, compileObj(t, dir, "basic_new.c"))
	p4 := buildPatch(t, bin, compileObj(t, dir, "basic_new4.c"))
	if p3.ID == p4.ID {
		t.Fatal("two patches with one id")
	}
	tg := testutil.Start(t, bin)
	tg.WaitLine(t, 5*time.Second, ratio(2))
	if _, err := Apply(tg.Pid, p3, Options{}); err != nil {
		t.Fatal(err)
	}
	freshRatio(t, tg, time.Second, 3)
	if _, err := Apply(tg.Pid, p4, Options{}); err != nil {
		t.Fatalf("stacked apply: %v", err)
	}
	freshRatio(t, tg, time.Second, 4)
	_, err := Revert(tg.Pid, p3.ID, Options{})
	if !errors.Is(err, ErrStacked) || !strings.Contains(err.Error(), p4.ID) {
		t.Fatalf("reverting the lower patch: got %v, want ErrStacked naming %s", err, p4.ID)
	}
	t.Logf("refused: %v", err)
	freshRatio(t, tg, time.Second, 4)
	if _, err := Revert(tg.Pid, p4.ID, Options{}); err != nil {
		t.Fatal(err)
	}
	freshRatio(t, tg, time.Second, 3)
	if _, err := Revert(tg.Pid, p3.ID, Options{}); err != nil {
		t.Fatal(err)
	}
	freshRatio(t, tg, time.Second, 2)
}

func TestConcurrentApplies(t *testing.T) {
	dir := setup(t)
	bin := compileTarget(t, dir, "basic.c")
	p3 := buildPatch(t, bin, compileObj(t, dir, "basic_new.c"))
	p4 := buildPatch(t, bin, compileObj(t, dir, "basic_new4.c"))
	tg := testutil.Start(t, bin)
	tg.WaitLine(t, 5*time.Second, ratio(2))
	for round := 0; round < 5; round++ {
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, p := range []int{0, 1} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				pp := p3
				if p == 1 {
					pp = p4
				}
				_, errs[i] = Apply(tg.Pid, pp, Options{})
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		st, err := Status(tg.Pid)
		if err != nil || len(st.Patches) != 2 {
			t.Fatalf("round %d: status %+v %v", round, st, err)
		}
		// Whichever came second is on top: revert in LIFO order.
		top, bottom := st.Patches[0].ID, st.Patches[1].ID
		if _, err := Revert(tg.Pid, top, Options{}); err != nil {
			top, bottom = bottom, top
			if _, err := Revert(tg.Pid, top, Options{}); err != nil {
				t.Fatalf("round %d: revert: %v", round, err)
			}
		}
		if _, err := Revert(tg.Pid, bottom, Options{}); err != nil {
			t.Fatalf("round %d: revert %s: %v", round, bottom, err)
		}
	}
	freshRatio(t, tg, time.Second, 2)
}

func TestRecoverAfterInterruptedApply(t *testing.T) {
	tg, p := startWithPatch(t, "three.c", "three_new.c")
	tg.WaitLine(t, 5*time.Second, func(l string) bool { return l == "1 2 3" })
	for _, c := range []struct {
		step   string
		nth    int
		action string
		want   string
	}{
		{"write", 1, "freed", "1 2 3"},           // region mapped, no record yet
		{"protect", 1, "rolled back", "1 2 3"},   // record and code written, no jump yet
		{"redirect", 2, "rolled back", "1 2 3"},  // one of three jumps written
		{"commit", 1, "finished", "101 102 103"}, // all jumps written, not marked applied
	} {
		n := 0
		faultHook = func(s string) error {
			if s == c.step {
				if n++; n == c.nth {
					return errSimulatedCrash
				}
			}
			return nil
		}
		_, err := Apply(tg.Pid, p, Options{})
		faultHook = func(string) error { return nil }
		if !errors.Is(err, errSimulatedCrash) {
			t.Fatalf("%s: %v", c.step, err)
		}
		st, err := Status(tg.Pid)
		if err != nil || len(st.Patches) != 1 || !st.Patches[0].InTransition() {
			t.Fatalf("%s: status %+v %v", c.step, st, err)
		}
		if _, err := Apply(tg.Pid, p, Options{}); !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "recover") {
			t.Fatalf("%s: apply over a patch in transition: %v", c.step, err)
		}
		rep, err := Recover(tg.Pid, Options{})
		if err != nil || len(rep.Actions) != 1 || rep.Actions[0].Action != c.action {
			t.Fatalf("%s: recover %+v %v", c.step, rep, err)
		}
		tg.Drain()
		tg.WaitLine(t, time.Second, func(l string) bool { return l == c.want })
		st, _ = Status(tg.Pid)
		if c.action == "finished" {
			if len(st.Patches) != 1 || st.Patches[0].StateName != "applied" {
				t.Fatalf("after finish: %+v", st.Patches)
			}
			if _, err := Revert(tg.Pid, p.ID, Options{}); err != nil {
				t.Fatal(err)
			}
		} else if len(st.Patches) != 0 {
			t.Fatalf("after rollback: %+v", st.Patches)
		}
	}
	assertRunning(t, tg.Pid)
}

// TestPanicRollsBack: a panic inside an apply (here injected between two
// jumps, with every thread stopped) is returned as ErrInternal with the
// process exactly as before: jumps restored, region unmapped, threads
// resumed and detached (issue 11 item 13: a panic killed the worker).
func TestPanicRollsBack(t *testing.T) {
	tg, p := startWithPatch(t, "three.c", "three_new.c")
	tg.WaitLine(t, 5*time.Second, func(l string) bool { return l == "1 2 3" })
	for _, step := range []string{"map", "redirect"} {
		maps0, text0 := snapshot(t, tg.Pid)
		n := 0
		faultHook = func(s string) error {
			if s == step {
				if n++; n == 2 || step == "map" {
					panic("injected panic at " + s)
				}
			}
			return nil
		}
		_, err := Apply(tg.Pid, p, Options{})
		faultHook = func(string) error { return nil }
		if !errors.Is(err, ErrInternal) || !strings.Contains(err.Error(), "injected panic at "+step) {
			t.Fatalf("%s: got %v, want ErrInternal", step, err)
		}
		maps1, text1 := snapshot(t, tg.Pid)
		if maps0 != maps1 || !bytes.Equal(text0, text1) {
			t.Fatalf("%s: the panic left the process changed:\n%s\n---\n%s", step, maps0, maps1)
		}
		if st, _ := testutil.ThreadStates(tg.Pid); st[tg.Pid] == "t" {
			t.Fatalf("%s: left stopped", step)
		}
		tg.Drain()
		tg.WaitLine(t, time.Second, func(l string) bool { return l == "1 2 3" })
	}
	if _, err := Apply(tg.Pid, p, Options{}); err != nil {
		t.Fatalf("apply after the panics: %v", err)
	}
	tg.Drain()
	tg.WaitLine(t, time.Second, func(l string) bool { return l == "101 102 103" })
	if _, err := Revert(tg.Pid, p.ID, Options{}); err != nil {
		t.Fatalf("revert after the panics: %v", err)
	}
	tg.Drain()
	tg.WaitLine(t, time.Second, func(l string) bool { return l == "1 2 3" })
	assertRunning(t, tg.Pid)
}

// TestTargetDiesDuringApply: a target killed in the middle of an apply (here
// while its one thread is stopped to map the region, and while every thread
// is stopped for the jumps) is reported as having exited during the
// operation (proc.ErrExited, its own exit code), not as "no such process"
// (issue 11 item 13).
func TestTargetDiesDuringApply(t *testing.T) {
	dir := setup(t)
	bin := compileTarget(t, dir, "three.c")
	p := buildPatch(t, bin, compileObj(t, dir, "three_new.c"))
	for _, step := range []string{"map", "redirect"} {
		tg := testutil.Start(t, bin)
		tg.WaitLine(t, 5*time.Second, func(l string) bool { return l == "1 2 3" })
		faultHook = func(s string) error {
			if s == step {
				syscall.Kill(tg.Pid, syscall.SIGKILL)
				tg.Wait(5 * time.Second)
			}
			return nil
		}
		_, err := Apply(tg.Pid, p, Options{})
		faultHook = func(string) error { return nil }
		if !errors.Is(err, proc.ErrExited) {
			t.Errorf("%s: target killed during the apply: got %v, want proc.ErrExited", step, err)
		}
	}
	if _, err := Apply(1<<22+12345, p, Options{}); !errors.Is(err, proc.ErrNoProcess) || errors.Is(err, proc.ErrExited) {
		t.Errorf("no such process: got %v", err)
	}
}

// TestDeepStackWalked: a thread sleeps in a function called by compute with
// 32 KiB of stack between its stack pointer and compute's frame, beyond the
// first part of each stack a stop copies (stacks.go): the stack model must
// still see compute on that stack and refuse, naming it, until the timeout.
func TestDeepStackWalked(t *testing.T) {
	tg, p := startWithPatch(t, "deep.c", "basic_new.c")
	tg.WaitLine(t, 5*time.Second, func(l string) bool { return l == "inside" })
	_, err := Apply(tg.Pid, p, Options{Timeout: 300 * time.Millisecond})
	if !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "compute is active on thread") {
		t.Fatalf("apply: %v; want ErrUnsafe naming compute", err)
	}
	freshRatio(t, tg, 2*time.Second, 2)
}

// TestUnreadableStackRefused: a thread inside compute has its stack pointer
// in no mapping (its stack cannot be copied and the walk stops at once): the
// stack model cannot see compute there and must refuse until the timeout,
// not take an unreadable stack for one without compute.
func TestUnreadableStackRefused(t *testing.T) {
	dir := setup(t)
	bin := compileTarget(t, dir, "offstack.c")
	p := buildPatch(t, bin, compileObj(t, dir, "basic_new.c"))
	tg := testutil.Start(t, bin)
	tg.WaitLine(t, 5*time.Second, func(l string) bool { return l == "inside" })
	_, err := Apply(tg.Pid, p, Options{Timeout: 300 * time.Millisecond})
	if !errors.Is(err, ErrUnsafe) {
		t.Fatalf("apply: %v; want ErrUnsafe", err)
	}
	tg.Drain()
	tg.WaitLine(t, 2*time.Second, ratio(2))
}
