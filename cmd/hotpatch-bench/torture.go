package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hotpatch/hotpatch/internal/engine"
)

// TortureConfig configures a torture run.
type TortureConfig struct {
	Threads  int // threads of the target, the reporting main thread included
	Sleepers int // workers that sleep in nanosleep between calls (the rest spin)
	Cycles   int // apply/revert cycles
	// CheckEvery: every CheckEvery cycles, wait until the target shows the
	// patch took effect (new results after apply, none after revert).
	CheckEvery int
	Nice       int // niceness of the target (0: normal priority)
	Realtime   bool
	// Consistency is engine.Options.Consistency ("": the engine's default).
	Consistency string
	Timeout     time.Duration // engine.Options.Timeout
	// Budget, when positive, stops starting new cycles once it has passed
	// since the target started (a time bound for tests on busy machines).
	Budget time.Duration
	Log    io.Writer // progress, may be nil
}

// TortureResult is what a torture run found.
type TortureResult struct {
	Threads  int `json:"threads"`
	Cycles   int `json:"cycles"`   // completed apply+revert cycles
	Failures int `json:"failures"` // apply or revert calls that returned an error (transient ones excepted)
	// Transient counts operations refused with the target left as it was and
	// worth retrying (see transient): a timeout on a loaded machine, no safe
	// moment within the engine's timeout. Not a failure, but reported.
	Transient int `json:"transient"`
	// Wrong results the target saw (a call returned neither the old nor the
	// new function's value), and failed system calls (nanosleep returning
	// an error: a stop must be invisible to a sleeping thread).
	Wrong  uint64 `json:"wrong_results"`
	SysErr uint64 `json:"syscall_errors"`
	// Crashes: the target died (1) or not (0).
	Crashes int `json:"crashes"`
	// Calls the target made in all, with the old and the new functions.
	Calls      uint64  `json:"calls"`
	OldCalls   uint64  `json:"old_calls"`
	NewCalls   uint64  `json:"new_calls"`
	Checks     int     `json:"effect_checks"`
	Retries    int     `json:"retries"`
	Apply      Summary `json:"apply_pause"`
	Revert     Summary `json:"revert_pause"`
	Leftovers  string  `json:"leftovers,omitempty"` // regions or patches left in the target at the end
	FirstError string  `json:"first_error,omitempty"`
	Stderr     string  `json:"target_stderr,omitempty"`
	Duration   time.Duration
}

// OK reports whether the run found nothing wrong.
func (r *TortureResult) OK() bool {
	return r.Failures == 0 && r.Wrong == 0 && r.SysErr == 0 && r.Crashes == 0 && r.Leftovers == "" && r.FirstError == ""
}

// ErrTorture: the torture run found a problem (see the result).
var ErrTorture = errors.New("torture run failed")

// torture compiles torture.c and its fix in w, starts the target, and runs
// cfg.Cycles apply/revert cycles on it through the engine API.
func torture(w *workdir, cfg TortureConfig) (*TortureResult, error) {
	t0 := time.Now()
	res := &TortureResult{Threads: cfg.Threads}
	bin, err := w.target("torture", "torture.c")
	if err != nil {
		return nil, err
	}
	obj, err := w.object("torture_fix.o", "torture_fix.c")
	if err != nil {
		return nil, err
	}
	patch, err := w.patch(bin, obj, "torture-fix", "torture_fix.hp")
	if err != nil {
		return nil, err
	}
	var env []string
	if cfg.Nice != 0 {
		env = append(env, "HOTPATCH_BENCH_NICE="+strconv.Itoa(cfg.Nice))
	}
	p, err := start(env, bin, strconv.Itoa(cfg.Threads), strconv.Itoa(cfg.Sleepers))
	if err != nil {
		return nil, err
	}
	defer p.kill()
	if err := p.waitReady(); err != nil {
		return nil, err
	}
	opt := engine.Options{Realtime: cfg.Realtime, Timeout: cfg.Timeout, Consistency: cfg.Consistency}
	began := time.Now()
	var ap, rp []time.Duration
	fail := func(err error) {
		res.Failures++
		if res.FirstError == "" {
			res.FirstError = err.Error()
		}
	}
	logEvery := max(cfg.Cycles/10, 1)
	for i := range cfg.Cycles {
		if p.exited() || (cfg.Budget > 0 && time.Since(began) > cfg.Budget) {
			break
		}
		check := cfg.CheckEvery > 0 && i%cfg.CheckEvery == 0
		ar, err := engine.Apply(p.pid, patch, opt)
		if err != nil && transient(err) {
			// Left as it was: the patch must not be applied.
			res.Transient++
			if st, serr := engine.Status(p.pid); serr == nil && len(st.Patches) != 0 {
				fail(fmt.Errorf("cycle %d: apply failed (%v) but left %d patch records", i, err, len(st.Patches)))
			}
			continue
		}
		if err != nil {
			fail(fmt.Errorf("cycle %d: apply: %w", i, err))
			continue
		}
		ap = append(ap, ar.Pause)
		res.Retries += ar.Attempts - 1
		if check {
			if err := waitEffect(p, true); err != nil {
				fail(fmt.Errorf("cycle %d: after apply: %w", i, err))
			}
		}
		rr, failed, err := revertRetry(p.pid, patch.ID, opt)
		res.Transient += failed
		if err != nil {
			fail(fmt.Errorf("cycle %d: %w", i, err))
			break // the patch may still be applied: the next apply would only say so
		}
		rp = append(rp, rr.Pause)
		res.Retries += rr.Attempts - 1
		if check {
			if err := waitEffect(p, false); err != nil {
				fail(fmt.Errorf("cycle %d: after revert: %w", i, err))
			}
			res.Checks++
		}
		res.Cycles++
		if cfg.Log != nil && (i+1)%logEvery == 0 {
			fmt.Fprintf(cfg.Log, "torture: %d/%d cycles, apply pause median %v\n", i+1, cfg.Cycles, summarize(ap).Median)
		}
	}
	res.Apply, res.Revert = summarize(ap), summarize(rp)
	// The final counters: a line made after the last revert covers every
	// call made before it.
	if s, err := statAfter(p, monoNow()); err == nil {
		res.Calls, res.OldCalls, res.NewCalls, res.Wrong, res.SysErr = s.Calls, s.Old, s.New, s.Wrong, s.SysErr
		if s.Threads != cfg.Threads {
			res.Leftovers = fmt.Sprintf("target has %d threads, started with %d", s.Threads, cfg.Threads)
		}
	} else if p.exited() {
		res.Crashes = 1
	} else {
		fail(fmt.Errorf("final counters: %w", err))
	}
	if !p.exited() {
		if st, err := engine.Status(p.pid); err != nil {
			fail(fmt.Errorf("final status: %w", err))
		} else if len(st.Patches) != 0 {
			res.Leftovers = fmt.Sprintf("%d patch records left in the target", len(st.Patches))
		}
		if maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", p.pid)); err == nil && strings.Contains(string(maps), "hotpatch:") {
			res.Leftovers = strings.TrimSpace(res.Leftovers + " hotpatch region still mapped")
		}
	} else {
		res.Crashes = 1
	}
	res.Stderr = strings.TrimSpace(p.stderr.String())
	res.Duration = time.Since(t0)
	return res, nil
}

// monoNow reads CLOCK_MONOTONIC, the clock the torture target stamps its
// lines with (clock_gettime(2): the same clock system-wide).
func monoNow() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// statAfter returns the first stat line the target made after mono.
func statAfter(p *child, mono int64) (statLine, error) {
	var s statLine
	_, err := p.waitLine(10*time.Second, func(l string) bool {
		var ok bool
		s, ok = parseStat(l)
		return ok && s.Mono > mono
	})
	return s, err
}

// waitEffect checks that the patch is in effect (applied: the new functions'
// results keep coming) or not (their count stops growing, allowing for
// calls that were already inside the new code).
func waitEffect(p *child, applied bool) error {
	prev, err := statAfter(p, monoNow())
	if err != nil {
		return err
	}
	for range 10 {
		s, err := statAfter(p, prev.Mono)
		if err != nil {
			return err
		}
		if applied && s.New > prev.New {
			return nil
		}
		if !applied && s.New == prev.New && s.Old > prev.Old {
			return nil
		}
		prev = s
	}
	if applied {
		return fmt.Errorf("no call reached the new functions (new=%d)", prev.New)
	}
	return fmt.Errorf("calls still reach the new functions (new=%d)", prev.New)
}
