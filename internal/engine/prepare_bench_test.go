package engine

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hotpatch/hotpatch/internal/build"
	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/testutil"
	"github.com/hotpatch/hotpatch/internal/unwind"
)

// BenchmarkPrepare measures what a fresh `hotpatch apply` does before any
// thread is stopped (the "symbols, link, unwind tables" phase): read the
// target's maps and modules, find the patched file by build-id, resolve and
// link the patch (it calls into libc), parse the call frame information. The
// per-file caches are emptied before each iteration, as in a new process.
// Run with -cpuprofile to see where the time goes.
func BenchmarkPrepare(b *testing.B) {
	testutil.NeedGCC(b)
	testutil.NeedPtrace(b)
	dir := b.TempDir()
	bin := testutil.Compile(b, filepath.Join(dir, "libc"), append([]string{filepath.Join("testdata", "libc.c")}, targetFlags...)...)
	obj := testutil.Compile(b, filepath.Join(dir, "libc_new.o"), append([]string{filepath.Join("testdata", "libc_new.c")}, objFlags...)...)
	p, _, err := build.ByName(build.Options{Target: bin, New: []string{obj}})
	if err != nil {
		b.Fatal(err)
	}
	tg := testutil.Start(b, bin)
	tg.WaitLine(b, 5*time.Second, func(l string) bool { return strings.HasPrefix(l, "v1 ") })
	cpu0 := cpuTime(b)
	for b.Loop() {
		fileCache.Clear()
		cfiCache = unwind.Cache{}
		if _, err := prepare(tg.Pid, nil, p, true); err != nil {
			b.Fatal(err)
		}
	}
	// CPU time, unlike wall time, means something on a loaded machine.
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkFirstCheck measures the stack check of a fresh apply with every
// thread stopped (the CFI of each function parsed on first use, see
// unwind's .eh_frame_hdr index), with and without prewarm, on a 1-thread
// target blocked in usleep. Only the check is timed, not the stop.
func BenchmarkFirstCheck(b *testing.B) {
	testutil.NeedGCC(b)
	testutil.NeedPtrace(b)
	dir := b.TempDir()
	bin := testutil.Compile(b, filepath.Join(dir, "libc"), append([]string{filepath.Join("testdata", "libc.c")}, targetFlags...)...)
	tg := testutil.Start(b, bin)
	tg.WaitLine(b, 5*time.Second, func(l string) bool { return strings.HasPrefix(l, "v1 ") })
	for _, warm := range []bool{false, true} {
		b.Run(map[bool]string{false: "cold", true: "prewarmed"}[warm], func(b *testing.B) {
			pr, err := proc.Attach(tg.Pid, proc.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer pr.Detach()
			var total time.Duration
			for b.Loop() {
				cfiCache = unwind.Cache{}
				t, err := readTargetArch(tg.Pid)
				if err != nil {
					b.Fatal(err)
				}
				u := t.unwinder()
				if warm {
					t.prewarm(u)
				}
				if err := pr.Stop(); err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				ths := pr.Threads()
				busy := t.activeOnStacks(pr, u, ths, newStackCopies(pr, ths, &t.maps), []span{{lo: 1, hi: 2, name: "none"}})
				total += time.Since(start)
				if err := pr.Resume(); err != nil {
					b.Fatal(err)
				}
				if busy != nil {
					b.Fatal(busy)
				}
			}
			b.ReportMetric(float64(total)/float64(b.N), "check-ns/op")
		})
	}
}
