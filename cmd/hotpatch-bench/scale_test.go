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
		// The figures agree with each other (each part is measured inside
		// the whole): one per process, the scan and every process's pause
		// within the apply's wall time, the per-process time its share.
		if row.PausePerProcess.N != 5 || row.Scan > row.Apply || row.PausePerProcess.Max > row.Apply ||
			row.StallPerProcess.Max > row.Apply || row.ApplyPerProcess != row.Apply/5 {
			t.Errorf("%s: figures disagree: %+v", kind, row)
		}
	}
}
