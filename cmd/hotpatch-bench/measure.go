package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/hotpatch/hotpatch/internal/engine"
	"github.com/hotpatch/hotpatch/internal/fleet"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/proc"
)

// bench holds what the measurements share: the work directory with the
// compiled targets and patches, and where progress goes.
type bench struct {
	w        *workdir
	log      io.Writer
	bin      string // bench.c
	patch    *patchfile.Patch
	patchHP  string // its file
	hotpatch string // the hotpatch binary, for latency
	gapBin   string // gap.c, built on first use
	gapPatch *patchfile.Patch

	scaleTargets map[string]scaleTarget // built on first use
}

func (b *bench) logf(format string, args ...any) {
	if b.log != nil {
		fmt.Fprintf(b.log, format+"\n", args...)
	}
}

func newBench(w *workdir, log io.Writer) (*bench, error) {
	b := &bench{w: w, log: log}
	var err error
	if b.bin, err = w.target("bench", "bench.c"); err != nil {
		return nil, err
	}
	obj, err := w.object("bench_fix.o", "bench_fix.c")
	if err != nil {
		return nil, err
	}
	b.patchHP = "bench_fix.hp"
	if b.patch, err = w.patch(b.bin, obj, "bench-fix", b.patchHP); err != nil {
		return nil, err
	}
	return b, nil
}

// transient reports whether err is a refusal that leaves the target as it
// was and may succeed later: a wait on the target that timed out (on a
// loaded machine the tracer may not get a CPU in time), no safe moment to
// write within the engine's timeout, another hotpatch at work, or a tracer
// still attached: after a timed-out operation, the kernel detaches the
// target only when the tracer's OS thread has exited (see package proc).
func transient(err error) bool {
	return errors.Is(err, proc.ErrTimeout) || errors.Is(err, engine.ErrUnsafe) || errors.Is(err, engine.ErrBusy) ||
		errors.Is(err, proc.ErrAlreadyTraced)
}

// revertRetry reverts id in pid, retrying transient failures a few times.
func revertRetry(pid int, id string, opt engine.Options) (*engine.RevertReport, int, error) {
	var failed int
	for {
		rr, err := engine.Revert(pid, id, opt)
		if err == nil || !transient(err) || failed >= 5 {
			if err != nil {
				err = fmt.Errorf("revert in %d: %w", pid, err)
			}
			return rr, failed, err
		}
		failed++
		time.Sleep(100 * time.Millisecond)
	}
}

// cycle applies and reverts b.patch once in pid. failed counts transient
// failures (apply is not retried: the caller counts and goes on).
func (b *bench) cycle(pid int, opt engine.Options) (ar *engine.ApplyReport, rr *engine.RevertReport, failed int, err error) {
	ar, err = engine.Apply(pid, b.patch, opt)
	if err != nil {
		if transient(err) {
			time.Sleep(100 * time.Millisecond)
			return nil, nil, 1, nil
		}
		return nil, nil, 0, fmt.Errorf("apply to %d: %w", pid, err)
	}
	rr, failed, err = revertRetry(pid, b.patch.ID, opt)
	return ar, rr, failed, err
}

// PauseRow is the pause of one target configuration.
type PauseRow struct {
	Threads  int     `json:"threads"`
	Load     string  `json:"load"` // busy: threads spin; idle: threads sleep in the kernel
	Realtime bool    `json:"realtime"`
	Apply    Summary `json:"apply"`
	Revert   Summary `json:"revert"`
	// Retries counts stop windows that found a thread inside the bytes to
	// replace and had to resume and try again (only the last window of an
	// operation is its pause).
	Retries int `json:"retries"`
	// Failures counts operations refused transiently (see transient) and
	// not counted in the sample; the target was left as it was.
	Failures      int           `json:"transient_failures"`
	ApplyElapsed  time.Duration `json:"apply_elapsed_median_ns"`
	RevertElapsed time.Duration `json:"revert_elapsed_median_ns"`
	// Error is why this configuration could not be measured (the others
	// still are): e.g. a 256-thread target on a machine so loaded that the
	// engine's 2 s attach timeout passes.
	Error string `json:"error,omitempty"`
}

// pause measures the stop window of apply and revert, runs times each, for a
// target with threads threads.
func (b *bench) pause(threads int, load string, realtime bool, runs int) (PauseRow, error) {
	row := PauseRow{Threads: threads, Load: load, Realtime: realtime}
	p, err := start(nil, b.bin, strconv.Itoa(threads), load)
	if err != nil {
		return row, err
	}
	defer p.kill()
	if err := p.waitReady(); err != nil {
		return row, err
	}
	opt := engine.Options{Realtime: realtime}
	// One untimed cycle warms the page cache and the target's code paths.
	if _, _, _, err := b.cycle(p.pid, opt); err != nil {
		return row, err
	}
	var ap, rp, ae, re []time.Duration
	for len(ap) < runs {
		ar, rr, failed, err := b.cycle(p.pid, opt)
		if err != nil {
			return row, err
		}
		row.Failures += failed
		if row.Failures > runs {
			return row, fmt.Errorf("%d transient failures in %d runs: the machine is too busy", row.Failures, len(ap))
		}
		if ar == nil {
			continue
		}
		ap, rp = append(ap, ar.Pause), append(rp, rr.Pause)
		ae, re = append(ae, ar.Elapsed), append(re, rr.Elapsed)
		row.Retries += ar.Attempts - 1 + rr.Attempts - 1
	}
	if p.exited() {
		return row, p.exitErr()
	}
	row.Apply, row.Revert = summarize(ap), summarize(rp)
	row.ApplyElapsed, row.RevertElapsed = summarize(ae).Median, summarize(re).Median
	return row, nil
}

// Latency is the wall time of `hotpatch apply` and `hotpatch revert` as
// subprocesses, start to exit.
type Latency struct {
	Apply  Summary `json:"apply"`
	Revert Summary `json:"revert"`
	// EngineApply is engine.Apply's own Elapsed (no process start, no patch
	// file read), for comparison.
	EngineApply Summary `json:"engine_apply"`
	// PeakRSSKiB is the largest peak resident set of a hotpatch apply or
	// revert process (getrusage(2) ru_maxrss of the child).
	PeakRSSKiB int64 `json:"hotpatch_peak_rss_kib"`
	// Where the CLI's time goes: the medians of the phases its --json
	// reports, after the time spent outside the engine.
	ApplyPhases  []PhaseSummary `json:"apply_phases"`
	RevertPhases []PhaseSummary `json:"revert_phases"`
}

// buildHotpatch builds the hotpatch command into the work directory.
func (b *bench) buildHotpatch() (string, error) {
	out := b.w.path("hotpatch")
	cmd := exec.Command("go", "build", "-o", out, "github.com/hotpatch/hotpatch/cmd/hotpatch")
	if o, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build hotpatch (run hotpatch-bench inside the module, or pass --hotpatch): %w\n%s", err, o)
	}
	return out, nil
}

// runHotpatch runs the hotpatch binary and returns its wall time and peak RSS.
// hotpatchRun is one run of the hotpatch command.
type hotpatchRun struct {
	wall   time.Duration
	rssKiB int64
	// From its --json report: the engine's elapsed time and its phases.
	elapsed time.Duration
	phases  []engine.Phase
}

func (b *bench) runHotpatch(args ...string) (hotpatchRun, error) {
	cmd := exec.Command(b.hotpatch, append(args, "--json")...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	t0 := time.Now()
	out, err := cmd.Output()
	r := hotpatchRun{wall: time.Since(t0)}
	if err != nil {
		return r, fmt.Errorf("hotpatch %v: %w\n%s%s", args, err, out, stderr.Bytes())
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.rssKiB = ru.Maxrss // KiB on Linux, getrusage(2)
	}
	var rep struct {
		Elapsed time.Duration  `json:"elapsed_ns"`
		Phases  []engine.Phase `json:"phases"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		return r, fmt.Errorf("hotpatch %v --json: %w", args, err)
	}
	r.elapsed, r.phases = rep.Elapsed, rep.Phases
	return r, nil
}

// PhaseSummary is the median of one phase of the CLI's apply.
type PhaseSummary struct {
	Name   string        `json:"name"`
	Median time.Duration `json:"median_ns"`
}

// phaseMedians summarises the runs' phases, in order; outside is the part of
// each wall time the engine did not see (process starts, reading the patch,
// printing).
func phaseMedians(runs []hotpatchRun) []PhaseSummary {
	var names []string
	by := map[string][]time.Duration{}
	var outside []time.Duration
	for _, r := range runs {
		outside = append(outside, r.wall-r.elapsed)
		for _, p := range r.phases {
			if _, ok := by[p.Name]; !ok {
				names = append(names, p.Name)
			}
			by[p.Name] = append(by[p.Name], p.Took)
		}
	}
	out := []PhaseSummary{{Name: "outside the engine: start hotpatch and its worker, read the patch, print", Median: summarize(outside).Median}}
	for _, n := range names {
		out = append(out, PhaseSummary{Name: n, Median: summarize(by[n]).Median})
	}
	return out
}

func (b *bench) latency(runs int) (Latency, error) {
	var l Latency
	p, err := start(nil, b.bin, "1", "idle")
	if err != nil {
		return l, err
	}
	defer p.kill()
	if err := p.waitReady(); err != nil {
		return l, err
	}
	pid := strconv.Itoa(p.pid)
	var ap, rp, ep []time.Duration
	var aruns, rruns []hotpatchRun
	for i := range runs + 1 {
		ra, err := b.runHotpatch("apply", b.w.path(b.patchHP), "--pid", pid, "--allow-unsigned")
		if err != nil {
			return l, err
		}
		rr, err := b.runHotpatch("revert", b.patch.ID, "--pid", pid)
		if err != nil {
			return l, err
		}
		ar, _, _, err := b.cycle(p.pid, engine.Options{})
		if err != nil {
			return l, err
		}

		if i == 0 {
			continue // warm-up
		}
		ap, rp = append(ap, ra.wall), append(rp, rr.wall)
		aruns, rruns = append(aruns, ra), append(rruns, rr)
		if ar != nil { // nil: refused transiently, no sample
			ep = append(ep, ar.Elapsed)
		}
		l.PeakRSSKiB = max(l.PeakRSSKiB, ra.rssKiB, rr.rssKiB)
	}
	if p.exited() {
		return l, p.exitErr()
	}
	l.Apply, l.Revert, l.EngineApply = summarize(ap), summarize(rp), summarize(ep)
	l.ApplyPhases, l.RevertPhases = phaseMedians(aruns), phaseMedians(rruns)
	return l, nil
}

// ScaleRow is the time to patch n one-thread idle processes that map one
// file: an executable (Kind "executable", scale.c) or a shared library all
// of them load (Kind "library", scaleapp.c and libscale.so).
type ScaleRow struct {
	Kind  string `json:"kind"`
	Procs int    `json:"procs"`
	Jobs  int    `json:"jobs"`
	// Apply and Revert: wall time of the host-wide fleet.Apply /
	// fleet.Revert (what `hotpatch apply PATCH` without --pid runs), the
	// scan of /proc included; per process: divided by Procs.
	Apply            time.Duration `json:"apply_total_ns"`
	Revert           time.Duration `json:"revert_total_ns"`
	ApplyPerProcess  time.Duration `json:"apply_per_process_ns"`
	RevertPerProcess time.Duration `json:"revert_per_process_ns"`
	// DryRun: wall time of the same apply with --dry-run first (every
	// check, the stop window included, nothing changed).
	DryRun time.Duration `json:"dry_run_total_ns"`
	// ApplyCPU and RevertCPU: hotpatch-bench's own CPU time (user and
	// system, getrusage(2)) per process: on a machine shared with other
	// work, what the wall time would shrink to first.
	ApplyCPU  time.Duration `json:"apply_cpu_per_process_ns"`
	RevertCPU time.Duration `json:"revert_cpu_per_process_ns"`
	// Scan: the /proc scan part of Apply.
	Scan time.Duration `json:"apply_scan_ns"`
	// PausePerProcess and RevertPausePerProcess summarise the per-process
	// pauses (longest all-threads stop) of the apply and the revert.
	PausePerProcess       Summary `json:"apply_pause_per_process"`
	RevertPausePerProcess Summary `json:"revert_pause_per_process"`
	// StallPerProcess and RevertStallPerProcess summarise what each process
	// felt: the longest time any one of its threads was stopped, over every
	// stop of the operation (stall_ns).
	StallPerProcess       Summary `json:"apply_stall_per_process"`
	RevertStallPerProcess Summary `json:"revert_stall_per_process"`
}

// stopsOf summarises the pauses and the stalls of a host-wide run's
// processes.
func stopsOf(rs []fleet.Result) (pause, stall Summary) {
	var ps, ss []time.Duration
	for _, r := range rs {
		ps, ss = append(ps, r.Pause), append(ss, r.Stall)
	}
	return summarize(ps), summarize(ss)
}

// scaleTarget is what the scale rows patch: an executable to start n
// times and the patch of the file they all map.
type scaleTarget struct {
	bin   string
	patch *patchfile.Patch
}

// scaleTarget builds (once per kind) the scale target. Its sources carry
// the work directory as SALT: a build-id of this run's own, so the host-wide
// apply finds this run's processes only, not those of another run on the
// same machine.
func (b *bench) scaleTarget(kind string) (scaleTarget, error) {
	if st, ok := b.scaleTargets[kind]; ok {
		return st, nil
	}
	salt := fmt.Sprintf(`-DSALT="%s"`, b.w.dir)
	var st scaleTarget
	var err error
	switch kind {
	case "executable":
		if st.bin, err = b.w.target("scale", "scale.c", salt); err != nil {
			return st, err
		}
		obj, err := b.w.object("scale_fix.o", "scale_fix.c")
		if err != nil {
			return st, err
		}
		if st.patch, err = b.w.patch(st.bin, obj, "scale-fix", "scale_fix.hp"); err != nil {
			return st, err
		}
	case "library":
		lib, err := b.w.gcc("libscale.so", append(append([]string{"scalelib.c", "-fPIC", "-shared", salt}, targetFlags...), "-Wl,--build-id")...)
		if err != nil {
			return st, err
		}
		if st.bin, err = b.w.target("scaleapp", "scaleapp.c", "-L"+b.w.dir, "-lscale", "-Wl,-rpath,"+b.w.dir); err != nil {
			return st, err
		}
		obj, err := b.w.object("scalelib_fix.o", "scalelib_fix.c")
		if err != nil {
			return st, err
		}
		if st.patch, err = b.w.patch(lib, obj, "scalelib-fix", "scalelib_fix.hp"); err != nil {
			return st, err
		}
	default:
		return st, fmt.Errorf("unknown scale target %q", kind)
	}
	if b.scaleTargets == nil {
		b.scaleTargets = map[string]scaleTarget{}
	}
	b.scaleTargets[kind] = st
	return st, nil
}

// cpuTime is this process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// scale starts n one-thread idle processes of the kind's target, runs a
// host-wide dry run, apply and revert of its patch with internal/fleet
// (jobs processes at once), and checks every process was patched and
// reverted and is still alive.
func (b *bench) scale(kind string, n, jobs int) (ScaleRow, error) {
	row := ScaleRow{Kind: kind, Procs: n, Jobs: jobs}
	st, err := b.scaleTarget(kind)
	if err != nil {
		return row, err
	}
	var ps []*child
	defer func() {
		for _, p := range ps {
			p.kill()
		}
	}()
	for range n {
		p, err := start(nil, st.bin)
		if err != nil {
			return row, fmt.Errorf("start process %d of %d: %w (raise ulimit -u?)", len(ps)+1, n, err)
		}
		ps = append(ps, p)
	}
	for _, p := range ps {
		if err := p.waitReady(); err != nil {
			return row, err
		}
	}
	opt := fleet.Options{Jobs: jobs} // host-wide: no PIDs
	dry := opt
	dry.Engine.DryRun = true
	t0 := time.Now()
	dr, err := fleet.Apply(st.patch, dry)
	row.DryRun = time.Since(t0)
	if err == nil {
		err = dr.Err()
	}
	if err != nil {
		return row, fmt.Errorf("fleet dry run over %d processes: %w", n, err)
	}
	c0 := cpuTime()
	t0 = time.Now()
	ar, err := fleet.Apply(st.patch, opt)
	row.Apply = time.Since(t0)
	row.ApplyCPU = (cpuTime() - c0) / time.Duration(n)
	if err == nil {
		err = ar.Err()
	}
	if err != nil {
		return row, fmt.Errorf("fleet apply to %d processes: %w", n, err)
	}
	if ar.Summary.Applied != n {
		return row, fmt.Errorf("fleet apply: %d of %d processes applied: %+v", ar.Summary.Applied, n, ar.Summary)
	}
	row.Scan = ar.Scan.Elapsed
	row.ApplyPerProcess = row.Apply / time.Duration(n)
	row.PausePerProcess, row.StallPerProcess = stopsOf(ar.Results)
	c0 = cpuTime()
	t0 = time.Now()
	rr, err := fleet.Revert(st.patch.ID, opt)
	row.Revert = time.Since(t0)
	row.RevertCPU = (cpuTime() - c0) / time.Duration(n)
	if err == nil {
		err = rr.Err()
	}
	if err != nil {
		return row, fmt.Errorf("fleet revert in %d processes: %w", n, err)
	}
	if rr.Summary.Reverted != n {
		return row, fmt.Errorf("fleet revert: %d of %d processes reverted: %+v", rr.Summary.Reverted, n, rr.Summary)
	}
	row.RevertPerProcess = row.Revert / time.Duration(n)
	row.RevertPausePerProcess, row.RevertStallPerProcess = stopsOf(rr.Results)
	for _, p := range ps {
		if p.exited() {
			return row, p.exitErr()
		}
	}
	return row, nil
}

// Overhead compares the throughput of a patched function with the same
// function compiled natively into the binary.
type Overhead struct {
	Window time.Duration `json:"window_ns"`
	// Calls per second: best and median of the windows measured.
	UnpatchedBest  float64 `json:"unpatched_best"`
	PatchedBest    float64 `json:"patched_best"`
	FixedBest      float64 `json:"fixed_best"`
	PatchedMedian  float64 `json:"patched_median"`
	FixedMedian    float64 `json:"fixed_median"`
	RatioBest      float64 `json:"patched_over_fixed_best"`
	RatioMedian    float64 `json:"patched_over_fixed_median"`
	Rounds         int     `json:"rounds"`
	WindowsPerTurn int     `json:"windows_per_turn"`
}

// overhead runs the overhead target twice: once built from the defective
// source and patched live, once built from the fixed source. The two take
// turns (the other one is stopped with SIGSTOP) so they never compete for a
// CPU, and each turn's first window, which spans the stop, is discarded.
func (b *bench) overhead(rounds, windows int, window time.Duration) (Overhead, error) {
	o := Overhead{Window: window, Rounds: rounds, WindowsPerTurn: windows}
	orig, err := b.w.target("overhead", "overhead.c")
	if err != nil {
		return o, err
	}
	fixed, err := b.w.target("overhead_fixed", "overhead.c", "-DFIXED")
	if err != nil {
		return o, err
	}
	obj, err := b.w.object("overhead_fix.o", "overhead_fix.c")
	if err != nil {
		return o, err
	}
	patch, err := b.w.patch(orig, obj, "overhead-fix", "overhead_fix.hp")
	if err != nil {
		return o, err
	}
	ms := strconv.Itoa(int(window / time.Millisecond))
	pa, err := start(nil, orig, ms)
	if err != nil {
		return o, err
	}
	defer pa.kill()
	pf, err := start(nil, fixed, ms)
	if err != nil {
		return o, err
	}
	defer pf.kill()
	syscall.Kill(pf.pid, syscall.SIGSTOP)
	sample := func(p *child) ([]float64, error) {
		syscall.Kill(p.pid, syscall.SIGCONT)
		defer syscall.Kill(p.pid, syscall.SIGSTOP)
		p.drain()
		var out []float64
		for i := 0; i <= windows; i++ {
			l, err := p.waitLine(10*window+5*time.Second, func(l string) bool { _, ok := parseCallsPerSec(l); return ok })
			if err != nil {
				return nil, err
			}
			if i > 0 {
				v, _ := parseCallsPerSec(l)
				out = append(out, v)
			}
		}
		return out, nil
	}
	un, err := sample(pa)
	if err != nil {
		return o, err
	}
	syscall.Kill(pa.pid, syscall.SIGCONT) // ptrace needs it running (a stopped process would be group-stopped)
	if _, err := engine.Apply(pa.pid, patch, engine.Options{}); err != nil {
		return o, fmt.Errorf("apply overhead patch: %w", err)
	}
	syscall.Kill(pa.pid, syscall.SIGSTOP)
	var pv, fv []float64
	for range rounds {
		s, err := sample(pa)
		if err != nil {
			return o, err
		}
		pv = append(pv, s...)
		if s, err = sample(pf); err != nil {
			return o, err
		}
		fv = append(fv, s...)
	}
	o.UnpatchedBest, o.PatchedBest, o.FixedBest = maxFloat(un), maxFloat(pv), maxFloat(fv)
	o.PatchedMedian, o.FixedMedian = medianFloat(pv), medianFloat(fv)
	o.RatioBest, o.RatioMedian = o.PatchedBest/o.FixedBest, o.PatchedMedian/o.FixedMedian
	return o, nil
}

func maxFloat(xs []float64) float64 {
	m := 0.0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

// Memory is the target's extra resident memory per applied patch and the
// benchmark's own peak.
type Memory struct {
	Patches int     `json:"patches"`
	Before  memInfo `json:"before"`
	Applied memInfo `json:"applied"`
	// Reverted: after reverting every patch. The text pages that held the
	// jumps stay private copies (copy-on-write happened on the first write).
	Reverted         memInfo `json:"reverted"`
	PerPatchRSSKiB   float64 `json:"per_patch_rss_kib"`
	PerPatchAnonKiB  float64 `json:"per_patch_anon_kib"`
	PerPatchShmemKiB float64 `json:"per_patch_shmem_kib"`
	// BenchPeakRSSKiB is this benchmark process's own peak RSS (it ran the
	// engine in-process for every measurement so far).
	BenchPeakRSSKiB int64 `json:"bench_peak_rss_kib"`
}

// memory applies 8 one-function patches (memfn0..memfn7 of bench.c) to one
// idle target and measures its resident memory before, with all applied,
// and after reverting them.
func (b *bench) memory() (Memory, error) {
	const n = 8
	m := Memory{Patches: n}
	var patches []*patchfile.Patch
	for k := range n {
		src := fmt.Sprintf("memfn%d.c", k)
		if err := os.WriteFile(b.w.path(src), fmt.Appendf(nil, "long memfn%d(long x) { return x + %d; }\n", k, 100+k), 0o644); err != nil {
			return m, err
		}
		obj, err := b.w.object(fmt.Sprintf("memfn%d.o", k), src)
		if err != nil {
			return m, err
		}
		p, err := b.w.patch(b.bin, obj, fmt.Sprintf("memfn%d", k), fmt.Sprintf("memfn%d.hp", k))
		if err != nil {
			return m, err
		}
		patches = append(patches, p)
	}
	p, err := start(nil, b.bin, "1", "idle")
	if err != nil {
		return m, err
	}
	defer p.kill()
	if err := p.waitReady(); err != nil {
		return m, err
	}
	if m.Before, err = readMem(p.pid); err != nil {
		return m, err
	}
	for _, pt := range patches {
		if _, err := engine.Apply(p.pid, pt, engine.Options{}); err != nil {
			return m, fmt.Errorf("apply %s: %w", pt.ID, err)
		}
	}
	if m.Applied, err = readMem(p.pid); err != nil {
		return m, err
	}
	for _, pt := range patches {
		if _, err := engine.Revert(p.pid, pt.ID, engine.Options{}); err != nil {
			return m, fmt.Errorf("revert %s: %w", pt.ID, err)
		}
	}
	if m.Reverted, err = readMem(p.pid); err != nil {
		return m, err
	}
	m.PerPatchRSSKiB = float64(m.Applied.Rss-m.Before.Rss) / n
	m.PerPatchAnonKiB = float64(m.Applied.RssAnon-m.Before.RssAnon) / n
	m.PerPatchShmemKiB = float64(m.Applied.RssShmem-m.Before.RssShmem) / n
	m.BenchPeakRSSKiB = selfPeakRSS()
	return m, nil
}

// selfPeakRSS is this process's peak resident set in KiB (getrusage(2)).
func selfPeakRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Maxrss
}

// defaultJobs is the scale benchmark's concurrency: the CLI's own default
// (fleet.Options.Jobs 0: one per CPU), so the rows show what `hotpatch
// apply PATCH` does. More jobs than CPUs overlap the waits on the targets
// but, on a machine without idle CPUs, add contention: the pauses' p99
// grows with the number of tracers competing (measure with --jobs).
func defaultJobs() int { return runtime.NumCPU() }
