// Command hotpatch-bench measures hotpatch on this machine and tortures it.
//
//	hotpatch-bench [--json] [--only gap,pause,latency,scale,overhead,memory] [flags]
//	hotpatch-bench torture [--cycles 10000] [--threads 64] [--json]
//
// The first form measures the largest gap a target's own threads see in
// their loops during one apply and one revert (gap), how long a target's
// threads are stopped per apply and revert (pause), the wall time of one `hotpatch apply` (latency), the
// time to patch many processes (scale), the cost of calling a patched
// function (overhead), and the memory a patch costs (memory), and prints a
// table. The second applies and reverts a patch thousands of times to a
// 64-thread target that checks every result, and reports wrong results,
// crashes and pause percentiles.
//
// It compiles its C targets (embedded in the binary) with gcc into a
// temporary directory, and needs to ptrace them (root or CAP_SYS_PTRACE).
// See docs/benchmarks.md for the numbers and what they mean.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func main() {
	if err := newRoot(os.Stdout, os.Stderr).Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "hotpatch-bench: %v\n", err)
		os.Exit(1)
	}
}

// Results is everything one benchmark run measured (the --json document).
type Results struct {
	Machine  Machine    `json:"machine"`
	Gap      []GapRow   `json:"gap,omitempty"`
	Pause    []PauseRow `json:"pause,omitempty"`
	Latency  *Latency   `json:"latency,omitempty"`
	Scale    []ScaleRow `json:"scale,omitempty"`
	Overhead *Overhead  `json:"overhead,omitempty"`
	Memory   *Memory    `json:"memory,omitempty"`
	Duration string     `json:"duration"`
}

// Machine identifies where the numbers come from.
type Machine struct {
	CPU    string `json:"cpu"`
	CPUs   int    `json:"cpus"`
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
	GCC    string `json:"gcc"`
	Load   string `json:"loadavg_at_start"`
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.Load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	if b, err := exec.Command("gcc", "-dumpfullversion").Output(); err == nil {
		m.GCC = strings.TrimSpace(string(b))
	}
	return m
}

type runFlags struct {
	json       bool
	only       []string
	runs       int
	threads    []int
	loads      []string
	realtime   bool
	latRuns    int
	procs      []int
	libProcs   []int
	workers    int
	rounds     int
	hotpatch   string
	keep       bool
	tmpParent  string
	gapRuns    int
	gapThreads []int
	gapSleepUs int
	gapRT      bool
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	var f runFlags
	root := &cobra.Command{
		Use:   "hotpatch-bench",
		Short: "Measure hotpatch's pause, latency, scale, overhead and memory on this machine",
		Long: `Measure hotpatch on this machine and print a table (--json: one JSON document).

  gap       the largest loop gap the target's own threads see (they read
            CLOCK_MONOTONIC every loop) during one apply and one revert, for
            targets of 1, 10 and 100 threads, busy and idle, next to the
            engine's stall_ns, pause_ns and wall time and an idle baseline window
  pause     how long the target's threads are stopped per apply and per revert
            (first stop to last resume), for targets of 1, 8, 64 and 256 threads
            that spin (busy) or sleep in the kernel (idle); median and p99
  latency   wall time of one 'hotpatch apply --pid' subprocess, start to exit
  scale     host-wide apply, revert and dry run over 10, 100 and 1000 processes
            of one executable (--procs) and 500 of one shared library (--lib-procs)
  overhead  calls/s of a patched function vs the natively fixed binary
  memory    the target's extra resident memory per patch; hotpatch's peak RSS

Progress goes to stderr. Needs gcc, go (for latency, unless --hotpatch) and
ptrace (root or CAP_SYS_PTRACE).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAll(f, stdout, stderr)
		},
	}
	fl := root.Flags()
	fl.BoolVar(&f.json, "json", false, "print one JSON document instead of the table")
	fl.StringSliceVar(&f.only, "only", []string{"gap", "pause", "latency", "scale", "overhead", "memory"}, "measurements to run")
	fl.IntVar(&f.gapRuns, "gap-runs", 11, "gap: apply/revert cycles per target")
	fl.IntSliceVar(&f.gapThreads, "gap-threads", []int{1, 10, 100}, "gap: thread counts of the targets")
	fl.IntVar(&f.gapSleepUs, "gap-sleep-us", 1000, "gap: idle threads' nanosleep per loop, µs")
	fl.BoolVar(&f.gapRT, "gap-realtime", false, "gap: also measure with engine Options.Realtime (SCHED_FIFO tracer in the stop)")
	fl.IntVar(&f.runs, "runs", 50, "apply/revert cycles per pause configuration")
	fl.IntSliceVar(&f.threads, "threads", []int{1, 8, 64, 256}, "thread counts of the pause targets")
	fl.StringSliceVar(&f.loads, "load", []string{"busy", "idle"}, "pause targets' threads: busy (spin) and/or idle (sleep)")
	fl.BoolVar(&f.realtime, "realtime", true, "also measure pause with engine Options.Realtime (SCHED_FIFO tracer)")
	fl.IntVar(&f.latRuns, "latency-runs", 20, "hotpatch apply/revert subprocess runs")
	fl.IntSliceVar(&f.procs, "procs", []int{10, 100, 1000}, "scale: counts of processes of one executable")
	fl.IntSliceVar(&f.libProcs, "lib-procs", []int{500}, "scale: counts of processes sharing one library")
	fl.IntVar(&f.workers, "jobs", defaultJobs(), "scale: processes patched at once (fleet.Options.Jobs)")
	fl.IntVar(&f.rounds, "rounds", 5, "overhead: turns of the patched and the fixed binary")
	fl.StringVar(&f.hotpatch, "hotpatch", "", "hotpatch binary for latency (default: go build it into the work directory)")
	fl.BoolVar(&f.keep, "keep", false, "keep the work directory (targets, patches)")
	fl.StringVar(&f.tmpParent, "tmpdir", "", "where to create the work directory (default: $TMPDIR)")
	root.AddCommand(newTorture(stdout, stderr))
	return root
}

func runAll(f runFlags, stdout, stderr io.Writer) error {
	t0 := time.Now()
	w, err := newWorkdir(f.tmpParent)
	if err != nil {
		return err
	}
	if f.keep {
		fmt.Fprintf(stderr, "work directory: %s\n", w.dir)
	} else {
		defer w.remove()
	}
	b, err := newBench(w, stderr)
	if err != nil {
		return err
	}
	res := &Results{Machine: machine()}
	want := map[string]bool{}
	for _, o := range f.only {
		want[strings.TrimSpace(o)] = true
	}
	if want["gap"] {
		rts := []bool{false}
		if f.gapRT {
			rts = append(rts, true)
		}
		for _, load := range f.loads {
			for _, rt := range rts {
				for _, n := range f.gapThreads {
					row, err := b.gap(n, load, f.gapSleepUs, f.gapRuns, rt)
					if err != nil {
						row.Error = err.Error()
						b.logf("gap %3d threads %-4s: %v", n, load, err)
					}
					b.logf("gap %3d threads %-4s: apply gap median %v max %v (pause %v), revert gap median %v max %v, baseline median %v",
						n, load, row.ApplyGap.Median, row.ApplyGap.Max, row.ApplyPause.Median, row.RevertGap.Median, row.RevertGap.Max, row.BaselineGap.Median)
					res.Gap = append(res.Gap, row)
				}
			}
		}
	}
	if want["pause"] {
		rts := []bool{false}
		if f.realtime {
			rts = append(rts, true)
		}
		for _, load := range f.loads {
			for _, rt := range rts {
				for _, n := range f.threads {
					row, err := b.pause(n, load, rt, f.runs)
					if err != nil {
						row.Error = err.Error()
						b.logf("pause %3d threads %-4s realtime=%-5v: %v", n, load, rt, err)
					}
					b.logf("pause %3d threads %-4s realtime=%-5v apply median %v p99 %v, revert median %v p99 %v",
						n, load, rt, row.Apply.Median, row.Apply.P99, row.Revert.Median, row.Revert.P99)
					res.Pause = append(res.Pause, row)
				}
			}
		}
	}
	if want["latency"] {
		b.hotpatch = f.hotpatch
		if b.hotpatch == "" {
			if b.hotpatch, err = b.buildHotpatch(); err != nil {
				return err
			}
		}
		l, err := b.latency(f.latRuns)
		if err != nil {
			return fmt.Errorf("latency: %w", err)
		}
		b.logf("latency: hotpatch apply median %v p99 %v", l.Apply.Median, l.Apply.P99)
		res.Latency = &l
	}
	if want["scale"] {
		for _, kn := range []struct {
			kind  string
			procs []int
		}{{"executable", f.procs}, {"library", f.libProcs}} {
			for _, n := range kn.procs {
				if n <= 0 {
					continue // --lib-procs 0: no library row
				}
				row, err := b.scale(kn.kind, n, f.workers)
				if err != nil {
					return fmt.Errorf("scale, %d processes of one %s: %w", n, kn.kind, err)
				}
				b.logf("scale: %d processes of one %s applied in %v, reverted in %v", n, kn.kind, row.Apply, row.Revert)
				res.Scale = append(res.Scale, row)
			}
		}
	}
	if want["overhead"] {
		o, err := b.overhead(f.rounds, 5, 200*time.Millisecond)
		if err != nil {
			return fmt.Errorf("overhead: %w", err)
		}
		b.logf("overhead: patched/fixed %.4f (best), %.4f (median)", o.RatioBest, o.RatioMedian)
		res.Overhead = &o
	}
	if want["memory"] {
		m, err := b.memory()
		if err != nil {
			return fmt.Errorf("memory: %w", err)
		}
		b.logf("memory: %.1f KiB per patch", m.PerPatchRSSKiB)
		res.Memory = &m
	}
	res.Duration = time.Since(t0).Round(time.Second).String()
	if f.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	printTable(stdout, res)
	return nil
}

func newTorture(stdout, stderr io.Writer) *cobra.Command {
	cfg := TortureConfig{Threads: 64, Sleepers: 8, Cycles: 10000, CheckEvery: 100, Timeout: 10 * time.Second}
	var asJSON bool
	var tmpParent string
	c := &cobra.Command{
		Use:   "torture",
		Short: "Apply and revert a patch thousands of times to a 64-thread target that checks every result",
		Long: `Apply and revert a three-function patch --cycles times to a target whose threads
call the patched functions in tight loops (some sleep in nanosleep between
calls) and check every result. Reports cycles, wrong results (must be 0),
failed system calls in the target (must be 0), crashes (must be 0) and pause
percentiles; exits 1 if anything was wrong.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := newWorkdir(tmpParent)
			if err != nil {
				return err
			}
			defer w.remove()
			cfg.Log = stderr
			r, err := torture(w, cfg)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(r); err != nil {
					return err
				}
			} else {
				printTorture(stdout, r)
			}
			if !r.OK() {
				return ErrTorture
			}
			return nil
		},
	}
	fl := c.Flags()
	fl.IntVar(&cfg.Cycles, "cycles", cfg.Cycles, "apply/revert cycles")
	fl.IntVar(&cfg.Threads, "threads", cfg.Threads, "threads of the target")
	fl.IntVar(&cfg.Sleepers, "sleepers", cfg.Sleepers, "threads that sleep between calls instead of spinning")
	fl.IntVar(&cfg.CheckEvery, "check-every", cfg.CheckEvery, "check that the patch took effect every N cycles (0: never)")
	fl.IntVar(&cfg.Nice, "nice", 0, "niceness of the target")
	fl.BoolVar(&cfg.Realtime, "realtime", false, "engine Options.Realtime")
	fl.StringVar(&cfg.Consistency, "consistency", "", "engine Options.Consistency: stack or entry (default: the engine's)")
	fl.DurationVar(&cfg.Budget, "budget", 0, "stop after this long even if fewer cycles ran (0: no limit)")
	fl.BoolVar(&asJSON, "json", false, "print one JSON document")
	fl.StringVar(&tmpParent, "tmpdir", "", "where to create the work directory")
	return c
}

func us(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/1e3)
	default:
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	}
}

func printTable(w io.Writer, r *Results) {
	m := r.Machine
	fmt.Fprintf(w, "machine: %s, %d CPUs, Linux %s, %s, gcc %s, load %s\n\n", m.CPU, m.CPUs, m.Kernel, m.Go, m.GCC, m.Load)
	if len(r.Gap) > 0 {
		printGap(w, r.Gap)
	}
	if len(r.Pause) > 0 {
		fmt.Fprintf(w, "PAUSE (threads stopped, first stop to last resume; %d runs each)\n", r.Pause[0].Apply.N)
		fmt.Fprintf(w, "%-8s %-5s %-9s %11s %11s %11s %11s %11s %8s %8s\n", "threads", "load", "realtime",
			"apply p50", "apply p99", "revert p50", "revert p99", "apply wall", "retries", "refused")
		for _, p := range r.Pause {
			fmt.Fprintf(w, "%-8d %-5s %-9v %11s %11s %11s %11s %11s %8d %8d\n", p.Threads, p.Load, p.Realtime,
				us(p.Apply.Median), us(p.Apply.P99), us(p.Revert.Median), us(p.Revert.P99), us(p.ApplyElapsed), p.Retries, p.Failures)
			if p.Error != "" {
				fmt.Fprintf(w, "         ^ not measured: %s\n", p.Error)
			}
		}
		fmt.Fprintln(w)
	}
	if l := r.Latency; l != nil {
		fmt.Fprintf(w, "LATENCY (one-function patch, 1-thread target; %d runs)\n", l.Apply.N)
		fmt.Fprintf(w, "  hotpatch apply --pid   p50 %s  p99 %s\n", us(l.Apply.Median), us(l.Apply.P99))
		fmt.Fprintf(w, "  hotpatch revert --pid  p50 %s  p99 %s\n", us(l.Revert.Median), us(l.Revert.P99))
		fmt.Fprintf(w, "  engine.Apply in-process p50 %s  p99 %s\n", us(l.EngineApply.Median), us(l.EngineApply.P99))
		fmt.Fprintf(w, "  hotpatch peak RSS      %d KiB\n", l.PeakRSSKiB)
		for _, ph := range []struct {
			what string
			ps   []PhaseSummary
		}{{"apply", l.ApplyPhases}, {"revert", l.RevertPhases}} {
			fmt.Fprintf(w, "  where hotpatch %s spends it (p50 of each step):\n", ph.what)
			for _, p := range ph.ps {
				fmt.Fprintf(w, "    %-72s %10s\n", p.Name, us(p.Median))
			}
		}
		fmt.Fprintln(w)
	}
	if len(r.Scale) > 0 {
		fmt.Fprintf(w, "SCALE (host-wide apply/revert of 1-thread idle processes mapping one file, internal/fleet with %d jobs)\n", r.Scale[0].Jobs)
		fmt.Fprintf(w, "%-10s %6s %11s %11s %11s %11s %11s %11s %11s %11s %11s %11s %11s\n", "file", "procs", "dry run", "apply all",
			"apply/proc", "apply cpu", "revert all", "revert/proc", "revert cpu", "stall p50", "stall p99", "rv p50", "rv p99")
		for _, s := range r.Scale {
			fmt.Fprintf(w, "%-10s %6d %11s %11s %11s %11s %11s %11s %11s %11s %11s %11s %11s\n", s.Kind, s.Procs, us(s.DryRun), us(s.Apply),
				us(s.ApplyPerProcess), us(s.ApplyCPU), us(s.Revert), us(s.RevertPerProcess), us(s.RevertCPU),
				us(s.StallPerProcess.Median), us(s.StallPerProcess.P99), us(s.RevertStallPerProcess.Median), us(s.RevertStallPerProcess.P99))
		}
		fmt.Fprintln(w, "  (cpu: hotpatch's own CPU time per process; stall: the longest time one thread of a process was stopped, what it felt; rv: the revert's stalls; pauses in --json)")
		fmt.Fprintln(w)
	}
	if o := r.Overhead; o != nil {
		fmt.Fprintf(w, "OVERHEAD (calls/s of the function in a tight loop, %v windows)\n", o.Window)
		fmt.Fprintf(w, "  unpatched (defective)  best %.4g\n", o.UnpatchedBest)
		fmt.Fprintf(w, "  patched live           best %.4g  median %.4g\n", o.PatchedBest, o.PatchedMedian)
		fmt.Fprintf(w, "  built from fixed src   best %.4g  median %.4g\n", o.FixedBest, o.FixedMedian)
		fmt.Fprintf(w, "  patched / fixed        best %.3f  median %.3f\n\n", o.RatioBest, o.RatioMedian)
	}
	if m := r.Memory; m != nil {
		fmt.Fprintf(w, "MEMORY (%d one-function patches applied to one process)\n", m.Patches)
		fmt.Fprintf(w, "  target RSS per patch   %.1f KiB (anon %.1f, shmem %.1f)\n", m.PerPatchRSSKiB, m.PerPatchAnonKiB, m.PerPatchShmemKiB)
		fmt.Fprintf(w, "  target RSS             before %d KiB, %d applied %d KiB, all reverted %d KiB\n",
			m.Before.Rss, m.Patches, m.Applied.Rss, m.Reverted.Rss)
		if r.Latency != nil {
			fmt.Fprintf(w, "  hotpatch peak RSS      %d KiB (apply/revert subprocess)\n", r.Latency.PeakRSSKiB)
		}
		fmt.Fprintf(w, "  hotpatch-bench peak    %d KiB (engine in-process, all measurements)\n\n", m.BenchPeakRSSKiB)
	}
	fmt.Fprintf(w, "total time %s\n", r.Duration)
}

func printGap(w io.Writer, rows []GapRow) {
	fmt.Fprintf(w, "GAP (largest loop gap any thread of the target saw, measured by the target; %d runs each)\n", rows[0].ApplyGap.N)
	fmt.Fprintf(w, "%-8s %-5s %-9s %-7s %9s %9s %9s  %9s %9s %9s  %9s %9s %9s  %9s\n", "threads", "load", "realtime", "op",
		"gap p50", "gap p90", "gap max", "base p50", "base p90", "base max", "stall p50", "pause p50", "alloc p50", "wall p50")
	for _, g := range rows {
		for _, op := range []struct {
			name        string
			gap         Summary
			stall       Summary
			pause, wall Summary
			alloc       Summary
		}{{"apply", g.ApplyGap, g.ApplyStall, g.ApplyPause, g.ApplyWall, g.ApplyAllocPause}, {"revert", g.RevertGap, g.RevertStall, g.RevertPause, g.RevertWall, Summary{}}} {
			fmt.Fprintf(w, "%-8d %-5s %-9v %-7s %9s %9s %9s  %9s %9s %9s  %9s %9s %9s  %9s\n", g.Threads, g.Load, g.Realtime, op.name,
				us(op.gap.Median), us(op.gap.P90), us(op.gap.Max), us(g.BaselineGap.Median), us(g.BaselineGap.P90), us(g.BaselineGap.Max),
				us(op.stall.Median), us(op.pause.Median), us(op.alloc.Median), us(op.wall.Median))
		}
		if g.Error != "" {
			fmt.Fprintf(w, "         ^ not measured: %s\n", g.Error)
		}
	}
	fmt.Fprintln(w)
}

func printTorture(w io.Writer, r *TortureResult) {
	fmt.Fprintf(w, "TORTURE (%d threads, %v)\n", r.Threads, r.Duration.Round(time.Millisecond))
	fmt.Fprintf(w, "  cycles          %d (apply+revert), %d failed operations, %d transient refusals, %d retries, %d effect checks\n",
		r.Cycles, r.Failures, r.Transient, r.Retries, r.Checks)
	fmt.Fprintf(w, "  calls checked   %d (old %d, new %d)\n", r.Calls, r.OldCalls, r.NewCalls)
	fmt.Fprintf(w, "  wrong results   %d\n", r.Wrong)
	fmt.Fprintf(w, "  syscall errors  %d\n", r.SysErr)
	fmt.Fprintf(w, "  crashes         %d\n", r.Crashes)
	fmt.Fprintf(w, "  apply pause     p50 %s  p90 %s  p99 %s  max %s\n", us(r.Apply.Median), us(r.Apply.P90), us(r.Apply.P99), us(r.Apply.Max))
	fmt.Fprintf(w, "  revert pause    p50 %s  p90 %s  p99 %s  max %s\n", us(r.Revert.Median), us(r.Revert.P90), us(r.Revert.P99), us(r.Revert.Max))
	if r.Leftovers != "" {
		fmt.Fprintf(w, "  LEFTOVERS       %s\n", r.Leftovers)
	}
	if r.FirstError != "" {
		fmt.Fprintf(w, "  first error     %s\n", r.FirstError)
	}
	if r.Stderr != "" {
		fmt.Fprintf(w, "  target stderr   %s\n", r.Stderr)
	}
	if r.OK() {
		fmt.Fprintln(w, "  OK")
	} else {
		fmt.Fprintln(w, "  FAILED")
	}
}
