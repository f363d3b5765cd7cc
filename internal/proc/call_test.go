//go:build linux && amd64

package proc

import "testing"

// TestCallFunctionInTarget calls a function of the target on a stopped
// thread and checks its result, that every register is as before, and that
// the process runs on.
func TestCallFunctionInTarget(t *testing.T) {
	requirePtrace(t)
	tg := start(t, "threads", "4")
	tg.readUntil(t, "ready")
	fn := tg.addr(t, "never")
	p, err := Attach(tg.pid(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Detach()
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	before := regsOf(t, p)
	for _, x := range []uint64{0, 5, 1000} {
		got, err := p.Call(fn, x)
		if err != nil {
			t.Fatalf("call never_called(%d): %v", x, err)
		}
		if want := x*7 + 3; uint32(got) != uint32(want) {
			t.Errorf("never_called(%d) = %d, want %d", x, int32(got), want)
		}
	}
	after := regsOf(t, p)
	for tid, r := range before {
		if after[tid] != r {
			t.Errorf("thread %d: registers changed by the call", tid)
		}
	}
	if err := p.Detach(); err != nil {
		t.Fatal(err)
	}
	countersAdvance(t, tg.pid(), tg.addr(t, "counters"), 4)
	checkRunning(t, tg.pid())
}
