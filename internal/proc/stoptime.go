//go:build linux

package proc

import (
	"sync/atomic"
	"time"
)

// What the target felt: every thread's stop is timed from the moment we
// asked it to stop (PTRACE_INTERRUPT; for a thread that came stopped, the
// moment we saw it) to the moment the request that lets it run again
// (PTRACE_CONT, PTRACE_LISTEN or PTRACE_DETACH) has returned. The thread
// cannot have stopped before we asked, nor run again before it was let go,
// so the figure is never below the time the thread really stood still;
// what it may add is the few microseconds between the interrupt and the
// stop. Injected system calls and function calls run inside that interval
// (the thread executes our code, not its own), so they count as stopped
// time, as they do for the program.

// Meter collects the longest stall and the longest stop window over every
// Process that shares it (Options.Meter). The zero value is ready; it is
// safe for concurrent use.
type Meter struct {
	stall, pause atomic.Int64
}

// Stall is the longest time any one thread was stopped, over every window
// of every Process sharing m.
func (m *Meter) Stall() time.Duration { return time.Duration(m.stall.Load()) }

// Pause is the longest stop window (first interrupt to last resume) of any
// Process sharing m.
func (m *Meter) Pause() time.Duration { return time.Duration(m.pause.Load()) }

func storeMax(v *atomic.Int64, d time.Duration) {
	for {
		old := v.Load()
		if int64(d) <= old || v.CompareAndSwap(old, int64(d)) {
			return
		}
	}
}

// markStopping starts the thread's stop clock, unless it runs already.
func (t *thread) markStopping(now time.Time) {
	if t.stopSince.IsZero() {
		t.stopSince = now
	}
}

// noteResumed stops the thread's stop clock (the thread has just been let
// go) and keeps the longest figure.
func (p *Process) noteResumed(t *thread) {
	if t.stopSince.IsZero() {
		return
	}
	d := time.Since(t.stopSince)
	t.stopSince = time.Time{}
	storeMax(&p.stallNs, d)
	if p.opt.Meter != nil {
		storeMax(&p.opt.Meter.stall, d)
	}
}

// notePause keeps the longest stop window.
func (p *Process) notePause(d time.Duration) {
	storeMax(&p.pauseNs, d)
	if p.opt.Meter != nil {
		storeMax(&p.opt.Meter.pause, d)
	}
}
