package main

import (
	"testing"

	"github.com/hotpatch/hotpatch/internal/testutil"
)

// testBench is a bench in a temporary work directory, with no options.
func testBench(t *testing.T) *bench {
	t.Helper()
	w, err := newWorkdir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b, err := newBench(w, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGap runs the gap measurement briefly on a 2-thread idle target: the
// target must survive every apply and revert, and report a gap for each
// window (its threads did loop). It asserts no speed.
func TestGap(t *testing.T) {
	testutil.NeedGCC(t)
	testutil.NeedPtrace(t)
	b := testBench(t)
	row, err := b.gap(2, "idle", 1000, 3, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", row)
	if row.ApplyGap.N != 3 || row.RevertGap.N != 3 || row.BaselineGap.N != 3 {
		t.Fatalf("want 3 samples of each window, got %d/%d/%d", row.ApplyGap.N, row.RevertGap.N, row.BaselineGap.N)
	}
	if row.ApplyGap.Max <= 0 || row.ApplyPause.Max <= 0 || row.ApplyWall.Max <= 0 {
		t.Fatalf("apply: gap %v pause %v wall %v, want all > 0", row.ApplyGap.Max, row.ApplyPause.Max, row.ApplyWall.Max)
	}
	// The engine's stops are measured inside the call whose wall time is
	// taken around it: every sample's pause and stall is within its wall.
	if row.ApplyPause.Max > row.ApplyWall.Max || row.ApplyStall.Max > row.ApplyWall.Max ||
		row.RevertPause.Max > row.RevertWall.Max || row.RevertStall.Max > row.RevertWall.Max {
		t.Fatalf("a stop longer than its operation: %+v", row)
	}
}
