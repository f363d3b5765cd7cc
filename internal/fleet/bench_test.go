package fleet

import (
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkApply patches the shared library in N quiet processes (sleeper.c:
// calls lib_compute once a second) with one host-wide Apply, scan included,
// and reverts outside the timer. Metrics: ms/apply (whole operation),
// us/process (that divided by N), scan-ms, and the median and max pause of
// one process. Run:
//
//	go test -run '^$' -bench Apply -benchtime 3x ./internal/fleet
func BenchmarkApply(b *testing.B) {
	if testing.Short() {
		b.Skip("starts up to 1000 processes")
	}
	f := getFixture(b)
	outer := b
	for _, n := range []int{200, 1000} {
		var pids []int
		stop := func() {}
		for _, jobs := range []int{numCPU(), 4 * numCPU()} {
			b.Run(fmt.Sprintf("procs=%d/jobs=%d", n, jobs), func(b *testing.B) {
				if pids == nil {
					var err error
					// Kept for the runs of this size; killed before the next
					// size starts (the apply is host-wide).
					if pids, err = startSleepers(func(kill func()) { stop = kill; outer.Cleanup(kill) }, f.sleeper, n); err != nil {
						b.Fatal(err)
					}
				}
				var scan, pauseMed, pauseMax time.Duration
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					rep, err := Apply(f.patch, Options{Jobs: jobs})
					if err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					if rep.Summary.Applied != n || rep.Err() != nil {
						b.Fatalf("applied %d of %d: %v", rep.Summary.Applied, n, rep.Err())
					}
					scan += rep.Scan.Elapsed
					var ps []time.Duration
					for _, r := range rep.Results {
						ps = append(ps, r.Pause)
					}
					sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
					pauseMed += ps[len(ps)/2]
					pauseMax = max(pauseMax, ps[len(ps)-1])
					rr, err := Revert(f.patch.ID, Options{PIDs: pids, Jobs: jobs})
					if err != nil || rr.Summary.Reverted != n {
						b.Fatalf("revert: %v %+v", err, rr.Summary)
					}
					b.StartTimer()
				}
				b.StopTimer()
				per := b.Elapsed() / time.Duration(b.N)
				b.ReportMetric(float64(per.Microseconds())/1000, "ms/apply")
				b.ReportMetric(float64(per.Microseconds())/float64(n), "us/process")
				b.ReportMetric(float64((scan/time.Duration(b.N)).Microseconds())/1000, "scan-ms")
				b.ReportMetric(float64((pauseMed / time.Duration(b.N)).Microseconds()), "us-pause-median")
				b.ReportMetric(float64(pauseMax.Microseconds()), "us-pause-max")
				b.ReportMetric(0, "ns/op") // the custom metrics say it better
			})
		}
		stop()
	}
}

// startSleepers starts n sleepers (stdin, stdout and stderr on /dev/null)
// and waits until each has mapped the library. cleanup registers their
// killing.
func startSleepers(cleanup func(func()), bin string, n int) ([]int, error) {
	var cmds []*exec.Cmd
	var once sync.Once
	cleanup(func() {
		once.Do(func() {
			for _, c := range cmds {
				c.Process.Kill()
			}
			for _, c := range cmds {
				c.Wait()
			}
		})
	})
	var pids []int
	for i := 0; i < n; i++ {
		c := exec.Command(bin)
		if err := c.Start(); err != nil {
			return nil, fmt.Errorf("start sleeper %d: %w (raise ulimit -u?)", i, err)
		}
		cmds = append(cmds, c)
		pids = append(pids, c.Process.Pid)
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, pid := range pids {
		for {
			m, _ := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
			if strings.Contains(string(m), "libfleet.so") {
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("sleeper %d did not load the library", pid)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return pids, nil
}
