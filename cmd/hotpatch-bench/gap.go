package main

import (
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/hotpatch/hotpatch/internal/engine"
)

// The gap measurement: what the target itself feels. gap.c's threads each
// record their largest loop gap in a file shared with the benchmark (the
// layout is described in gap.c); around one apply or one revert the
// benchmark resets those maxima, runs the operation, waits until every
// thread has looped once more, and reads the largest. A baseline window of
// the same length with no operation, interleaved with the operations, shows
// the machine's own noise floor.

// GapRow is one target configuration of the gap measurement.
type GapRow struct {
	Threads int    `json:"threads"`
	Load    string `json:"load"` // busy: ~1 µs of work per loop; idle: nanosleep(SleepUs) per loop
	SleepUs int    `json:"sleep_us,omitempty"`
	// Realtime: engine Options.Realtime (the tracer at SCHED_FIFO in the stop).
	Realtime bool `json:"realtime,omitempty"`
	// Target-side: the largest gap any thread of the target saw in the
	// window of one apply, one revert, or no operation (Baseline).
	ApplyGap    Summary `json:"apply_gap"`
	RevertGap   Summary `json:"revert_gap"`
	BaselineGap Summary `json:"baseline_gap"`
	// Tool-side, from the engine's reports: Stall (stall_ns, the longest
	// stop of one thread), Pause (pause_ns), AllocPause (alloc_pause_ns,
	// apply only), and the wall time of the engine call.
	ApplyStall      Summary `json:"apply_stall"`
	ApplyPause      Summary `json:"apply_pause"`
	ApplyAllocPause Summary `json:"apply_alloc_pause"`
	ApplyWall       Summary `json:"apply_wall"`
	RevertStall     Summary `json:"revert_stall"`
	RevertPause     Summary `json:"revert_pause"`
	RevertWall      Summary `json:"revert_wall"`
	// Failures: operations refused transiently (not in the sample).
	Failures int    `json:"transient_failures"`
	Error    string `json:"error,omitempty"`
}

// gapTarget is a running gap.c with its shared file mapped.
type gapTarget struct {
	*child
	threads int
	shm     []byte
	gen     uint64
}

func (b *bench) startGap(threads int, load string, sleepUs int) (*gapTarget, error) {
	if b.gapBin == "" {
		bin, err := b.w.target("gap", "gap.c")
		if err != nil {
			return nil, err
		}
		obj, err := b.w.object("gap_fix.o", "gap_fix.c")
		if err != nil {
			return nil, err
		}
		if b.gapPatch, err = b.w.patch(bin, obj, "gap-fix", "gap_fix.hp"); err != nil {
			return nil, err
		}
		b.gapBin = bin
	}
	path := b.w.path(fmt.Sprintf("gap-%d-%s.shm", threads, load))
	size := 64 * (threads + 1)
	if err := os.WriteFile(path, make([]byte, size), 0o600); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	shm, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("map %s: %w", path, err)
	}
	p, err := start(nil, b.gapBin, strconv.Itoa(threads), load, strconv.Itoa(sleepUs), path)
	if err != nil {
		syscall.Munmap(shm)
		return nil, err
	}
	g := &gapTarget{child: p, threads: threads, shm: shm}
	if err := p.waitReady(); err != nil {
		g.stop()
		return nil, err
	}
	return g, nil
}

func (g *gapTarget) stop() {
	g.kill()
	syscall.Munmap(g.shm)
}

// The words of the shared file, read and written with atomic 64-bit
// accesses (aligned words on x86-64 and arm64 are single-copy atomic).
func (g *gapTarget) word(line, k int) *uint64 {
	return (*uint64)(unsafe.Pointer(&g.shm[64*line+8*k]))
}

// reset starts a new window: a new gen, and every thread has seen it (its
// max counts from now).
func (g *gapTarget) reset(deadline time.Time) error {
	g.gen++
	atomic.StoreUint64(g.word(0, 0), g.gen)
	for i := range g.threads {
		for atomic.LoadUint64(g.word(1+i, 0)) != g.gen {
			if err := g.waitTick(deadline, "see the window start"); err != nil {
				return err
			}
		}
	}
	return nil
}

// close waits until every thread has finished an iteration after now (so a
// gap still open when the operation returned is counted) and returns the
// largest gap of the window.
func (g *gapTarget) close(deadline time.Time) (time.Duration, error) {
	iters := make([]uint64, g.threads)
	for i := range iters {
		iters[i] = atomic.LoadUint64(g.word(1+i, 2))
	}
	var worst uint64
	for i := range iters {
		for atomic.LoadUint64(g.word(1+i, 2)) == iters[i] {
			if err := g.waitTick(deadline, "loop after the operation"); err != nil {
				return 0, err
			}
		}
		if atomic.LoadUint64(g.word(1+i, 0)) != g.gen {
			return 0, fmt.Errorf("gap target %d: thread %d left the window", g.pid, i)
		}
		worst = max(worst, atomic.LoadUint64(g.word(1+i, 1)))
	}
	return time.Duration(worst), nil
}

func (g *gapTarget) waitTick(deadline time.Time, what string) error {
	if g.exited() {
		return g.exitErr()
	}
	if time.Now().After(deadline) {
		return fmt.Errorf("gap target %d: a thread did not %s within the deadline", g.pid, what)
	}
	time.Sleep(50 * time.Microsecond)
	return nil
}

// window measures the largest gap any thread sees while op runs.
func (g *gapTarget) window(op func() error) (time.Duration, error) {
	if err := g.reset(time.Now().Add(10 * time.Second)); err != nil {
		return 0, err
	}
	if err := op(); err != nil {
		return 0, err
	}
	return g.close(time.Now().Add(10 * time.Second))
}

// gap measures runs apply and revert windows (and as many baselines) on one
// gap.c target.
func (b *bench) gap(threads int, load string, sleepUs, runs int, realtime bool) (GapRow, error) {
	row := GapRow{Threads: threads, Load: load, Realtime: realtime}
	if load == "idle" {
		row.SleepUs = sleepUs
	}
	g, err := b.startGap(threads, load, sleepUs)
	if err != nil {
		return row, err
	}
	defer g.stop()
	opt := engine.Options{Realtime: realtime}
	var ag, rg, bg, as, ap, aa, aw, rs, rp, rw []time.Duration
	for warm := true; len(ag) < runs; warm = false {
		var ar *engine.ApplyReport
		var rr *engine.RevertReport
		var wall time.Duration
		gapA, err := g.window(func() error {
			t0 := time.Now()
			var err error
			ar, err = engine.Apply(g.pid, b.gapPatch, opt)
			wall = time.Since(t0)
			return err
		})
		if err != nil {
			if transient(err) && row.Failures < runs {
				row.Failures++
				time.Sleep(100 * time.Millisecond)
				continue
			}
			return row, fmt.Errorf("apply to %d: %w", g.pid, err)
		}
		base, err := g.window(func() error { time.Sleep(wall); return nil })
		if err != nil {
			return row, err
		}
		var rwall time.Duration
		gapR, err := g.window(func() error {
			t0 := time.Now()
			var failed int
			rr, failed, err = revertRetry(g.pid, b.gapPatch.ID, opt)
			row.Failures += failed
			rwall = time.Since(t0)
			return err
		})
		if err != nil {
			return row, err
		}
		if warm {
			continue // the first cycle warms the page cache and the code paths
		}
		ag, rg, bg = append(ag, gapA), append(rg, gapR), append(bg, base)
		as, ap, aa, aw = append(as, ar.Stall), append(ap, ar.Pause), append(aa, ar.AllocPause), append(aw, wall)
		rs, rp, rw = append(rs, rr.Stall), append(rp, rr.Pause), append(rw, rwall)
	}
	row.ApplyGap, row.RevertGap, row.BaselineGap = summarize(ag), summarize(rg), summarize(bg)
	row.ApplyStall, row.ApplyPause, row.ApplyAllocPause, row.ApplyWall = summarize(as), summarize(ap), summarize(aa), summarize(aw)
	row.RevertStall, row.RevertPause, row.RevertWall = summarize(rs), summarize(rp), summarize(rw)
	return row, nil
}
