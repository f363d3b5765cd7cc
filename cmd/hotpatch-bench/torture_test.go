package main

import (
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/testutil"
)

// TestTorture is the short version of `hotpatch-bench torture`: a 64-thread
// target calling the patched functions in tight loops and checking every
// result, under ~300 apply/revert cycles (40 with -short). It asserts
// correctness only (zero wrong results, failed system calls, crashes, failed
// operations and leftovers), never timing. The target runs at nice 10 so the
// rest of a parallel test suite keeps its CPU share, and the run stops
// starting cycles after 25 s so that it stays well under 40 s on a loaded
// 2-CPU machine.
func TestTorture(t *testing.T) {
	testutil.NeedGCC(t)
	testutil.NeedPtrace(t)
	cfg := TortureConfig{Threads: 64, Sleepers: 8, Cycles: 300, CheckEvery: 50, Nice: 10,
		Timeout: 10 * time.Second, Budget: 25 * time.Second}
	if testing.Short() {
		cfg.Cycles, cfg.CheckEvery, cfg.Budget = 40, 20, 10*time.Second
	}
	w, err := newWorkdir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r, err := torture(w, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d cycles in %v, %d retries, %d calls checked (old %d, new %d); apply pause p50 %v p99 %v, revert pause p50 %v p99 %v",
		r.Cycles, r.Duration.Round(time.Millisecond), r.Retries, r.Calls, r.OldCalls, r.NewCalls,
		r.Apply.Median, r.Apply.P99, r.Revert.Median, r.Revert.P99)
	if !r.OK() {
		t.Fatalf("torture found problems: %+v", r)
	}
	// A run that could not do anything proves nothing; at least a few cycles
	// fit in the budget even on a very busy machine.
	if r.Cycles < 5 || r.Checks < 1 {
		t.Fatalf("only %d cycles and %d effect checks ran", r.Cycles, r.Checks)
	}
	if r.NewCalls == 0 || r.OldCalls == 0 {
		t.Fatalf("the target never ran both versions: old %d new %d", r.OldCalls, r.NewCalls)
	}
}
