package engine

import (
	"fmt"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/testutil"
)

// TestThreadChurn patches and reverts, 20 times in a row, a process whose
// main thread calls the function being replaced while another thread
// creates detached threads without pause (each lives microseconds to
// milliseconds): every one-thread stop, all-threads stop and injected call
// of apply and revert meets threads that exit under it. Every result the
// target sees must be old or new (it checks), and no cycle may fail.
func TestThreadChurn(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flags []string
		opt   Options
	}{
		{"normal", nil, Options{}},
		// A patch-ready build: the first apply takes the patch-ready path
		// (the region mapped with one thread stopped, the entries flipped
		// without a stop). Revert keeps the region and the padding jumps;
		// recover (all threads stopped) frees the region, so that the later
		// applies map a new one (taking either path).
		{"patch-ready", readyFlags, Options{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := setup(t)
			bin := compileTarget(t, dir, "churn.c", tc.flags...)
			p := buildPatch(t, bin, compileObj(t, dir, "basic_new.c"))
			tg := testutil.Start(t, bin)
			tg.WaitLine(t, 5*time.Second, func(l string) bool {
				var o, n, s int64
				k, _ := fmt.Sscanf(l, "old %d new %d spawned %d", &o, &n, &s)
				return k == 3 && s > 1000
			})
			ready := len(tc.flags) > 0
			for i := 0; i < 20; i++ {
				rep, err := Apply(tg.Pid, p, tc.opt)
				if err != nil {
					t.Fatalf("cycle %d apply: %v", i, err)
				}
				if path := rep.Functions[0].Path; (path == "patch-ready") != ready && (i == 0 || !ready) {
					t.Fatalf("cycle %d: took path %q", i, path)
				}
				if _, err := Revert(tg.Pid, p.ID, tc.opt); err != nil {
					t.Fatalf("cycle %d revert: %v", i, err)
				}
				if ready {
					freeRetained(t, tg.Pid, i)
				}
				if exited, err := tg.Exited(); exited {
					t.Fatalf("target died at cycle %d: %v; stderr: %s", i, err, tg.Stderr())
				}
			}
			// Leave it applied: every new call must go to the new code (the
			// counts are cumulative, so "new > 0" alone would be met by the
			// earlier cycles), and after a last revert every call goes to the
			// old code again, with no wrong result at any time.
			if _, err := Apply(tg.Pid, p, tc.opt); err != nil {
				t.Fatal(err)
			}
			waitChurn(t, tg, "applied: only the new code runs", func(prev, cur [3]int64) bool {
				return cur[0] == prev[0] && cur[1] > prev[1]
			})
			if _, err := Revert(tg.Pid, p.ID, tc.opt); err != nil {
				t.Fatalf("last revert: %v", err)
			}
			waitChurn(t, tg, "reverted: only the old code runs", func(prev, cur [3]int64) bool {
				return cur[0] > prev[0] && cur[1] == prev[1]
			})
			if s := tg.Stderr(); s != "" {
				t.Fatalf("target reported: %s", s)
			}
			assertRunning(t, tg.Pid)
		})
	}
}

// freeRetained runs recover until the region a patch-ready revert kept is
// freed (a thread may still have been returning through it).
func freeRetained(t *testing.T, pid, cycle int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rec, err := Recover(pid, Options{})
		if err != nil {
			t.Fatalf("cycle %d recover: %v", cycle, err)
		}
		kept := false
		for _, a := range rec.Actions {
			kept = kept || a.Action == "kept"
		}
		if !kept {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cycle %d: recover keeps the region: %+v", cycle, rec.Actions)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitChurn waits (10 s at most) for two consecutive count lines of churn.c
// ("old N new M spawned S", cumulative, every 20 ms) whose change satisfies
// cond: the main thread calls compute() without pause, so a count that does
// not move between two lines means no call reached that version.
func waitChurn(t *testing.T, tg *testutil.Target, what string, cond func(prev, cur [3]int64) bool) {
	t.Helper()
	tg.Drain()
	var prev [3]int64
	have := false
	tg.WaitLine(t, 10*time.Second, func(l string) bool {
		var cur [3]int64
		if k, _ := fmt.Sscanf(l, "old %d new %d spawned %d", &cur[0], &cur[1], &cur[2]); k != 3 {
			return false
		}
		ok := have && cond(prev, cur)
		if ok {
			t.Logf("%s: %v -> %v", what, prev, cur)
		}
		prev, have = cur, true
		return ok
	})
}
