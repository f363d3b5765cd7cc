package main

import (
	"testing"

	"github.com/hotpatch/hotpatch/internal/testutil"
)

// TestScaleRows runs the scale rows on a few processes of each kind: every
// process is patched by the host-wide apply and reverted (scale checks the
// counts and that every process is still alive). Correctness only: the
// figures are the benchmark's business.
func TestScaleRows(t *testing.T) {
	testutil.NeedGCC(t)
	testutil.NeedPtrace(t)
	b := testBench(t)
	for _, kind := range []string{"executable", "library"} {
		row, err := b.scale(kind, 5, 2)
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		if row.Procs != 5 || row.Apply <= 0 || row.Revert <= 0 || row.PausePerProcess.Median <= 0 {
			t.Errorf("%s: row %+v", kind, row)
		}
	}
}
