//go:build linux && amd64

package proc

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// maxOff asks the stopgap target for the longest time its spinning main
// thread stood still since the last question (testdata/stopgap.c).
func (tg *target) maxOff(tb testing.TB) time.Duration {
	tb.Helper()
	fmt.Fprintln(tg.stdin)
	line := tg.readUntil(tb, "maxoff ")
	n, err := strconv.ParseInt(strings.TrimPrefix(line, "maxoff "), 10, 64)
	if err != nil {
		tb.Fatalf("target said %q", line)
	}
	tg.readUntil(tb, "v ")
	return time.Duration(n)
}

// stopFor stops pr's threads, keeps them stopped for d, and resumes them.
func stopFor(tb testing.TB, pr *Process, d time.Duration) {
	tb.Helper()
	if err := pr.Stop(); err != nil {
		tb.Fatal(err)
	}
	time.Sleep(d)
	if err := pr.Resume(); err != nil {
		tb.Fatal(err)
	}
}

// TestStallOverWindows: Stall and Pause are the longest stop, over every
// window of a session (the long one first, then short ones: Pause used to
// be the last window's), and a Meter shared by two sessions (one thread
// stopped, then all) keeps the longest of both. Each is at least what the
// target measured itself standing still, generously (its measure also
// counts time the hypervisor took the CPU away).
func TestStallOverWindows(t *testing.T) {
	requirePtrace(t)
	tg := start(t, "stopgap")
	tg.readUntil(t, "ready")
	tg.maxOff(t)
	const long, mid = 80 * time.Millisecond, 40 * time.Millisecond
	var m Meter

	// One thread (the spinning leader), held long.
	one, err := Attach(tg.pid(), Options{OneThread: true, Meter: &m, preferTID: tg.pid()})
	if err != nil {
		t.Fatal(err)
	}
	stopFor(t, one, long)
	if err := one.Detach(); err != nil {
		t.Fatal(err)
	}
	if one.Stall() < long || one.Pause() < long {
		t.Errorf("one-thread session: stall %v, pause %v; want both ≥ %v", one.Stall(), one.Pause(), long)
	}
	seen := tg.maxOff(t)
	if seen < long {
		t.Errorf("the target measured %v standing still, want ≥ %v (is the measure broken?)", seen, long)
	}
	checkCovers(t, "one-thread session", one.Stall(), seen)

	// Every thread: a mid window, then short ones.
	all, err := Attach(tg.pid(), Options{Meter: &m})
	if err != nil {
		t.Fatal(err)
	}
	defer all.Detach()
	stopFor(t, all, mid)
	stopFor(t, all, 0)
	stopFor(t, all, 0)
	if err := all.Detach(); err != nil {
		t.Fatal(err)
	}
	if all.Pause() < mid || all.Stall() < mid {
		t.Errorf("all-thread session: pause %v, stall %v; want both ≥ %v (the longest window, not the last)", all.Pause(), all.Stall(), mid)
	}
	checkCovers(t, "all-thread session", all.Stall(), tg.maxOff(t))
	if m.Stall() < one.Stall() || m.Stall() < all.Stall() || m.Pause() < long {
		t.Errorf("meter: stall %v, pause %v; want the longest of the sessions (%v, %v)", m.Stall(), m.Pause(), one.Stall(), all.Stall())
	}
}

// checkCovers fails unless stall is at least the stop the target measured,
// less a generous allowance for what its measure adds (steal and interrupt
// time of a shared virtual machine).
func checkCovers(tb testing.TB, what string, stall, seen time.Duration) {
	tb.Helper()
	if slack := 5*time.Millisecond + seen/10; stall+slack < seen {
		tb.Errorf("%s: stall %v, but the target stood still %v", what, stall, seen)
	}
}

// TestMeterChainsStopsNotRunBetween: a thread found stopped with the very
// registers it was let go with (in user mode) has not run since: its stall
// runs from the earlier stop. In a system call, or with other registers,
// each stop counts alone.
func TestMeterChainsStopsNotRunBetween(t *testing.T) {
	var m Meter
	t0 := time.Now()
	user := Regs{}
	user.Rip, user.Orig_rax = 0x401000, ^uint64(0)
	m.released(7, user, t0, t0.Add(time.Millisecond))
	if got := m.stillSince(7, user, t0.Add(2*time.Millisecond)); !got.Equal(t0) {
		t.Errorf("same registers: still since %v, want the first stop %v", got.Sub(t0), time.Duration(0))
	}
	moved := user
	moved.Rip++
	if b := t0.Add(2 * time.Millisecond); !m.stillSince(7, moved, b).Equal(b) {
		t.Error("the thread ran (other registers), but its stops were chained")
	}
	sys := user
	sys.Orig_rax = 35 // nanosleep
	m.released(8, sys, t0, t0.Add(time.Millisecond))
	if b := t0.Add(2 * time.Millisecond); !m.stillSince(8, sys, b).Equal(b) {
		t.Error("a thread blocked in a system call was chained")
	}
	if b := t0.Add(2 * time.Millisecond); !m.stillSince(9, user, b).Equal(b) {
		t.Error("another thread was chained")
	}
	m.released(7, user, t0, t0.Add(5*time.Millisecond))
	if m.Stall() != 5*time.Millisecond {
		t.Errorf("stall %v, want 5ms", m.Stall())
	}
}
