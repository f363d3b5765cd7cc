//go:build linux

package proc

import (
	"sync"
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
//
// Two stops in a row can be one for the program: on a busy machine a thread
// let go by one window may not have run a single instruction of its own
// before the next window (or the next session of the same operation) stops
// it again. The Meter chains them: a thread stopped in user mode (not in a
// system call) whose registers are exactly those it was let go with has not
// run since, so its stall runs from the first of the stops. (A thread
// blocked in a system call has the same registers each time whether or not
// it ran; it is never chained: each stop counts alone.)

// Meter collects the longest stall and the longest stop window over every
// Process that shares it (Options.Meter). The zero value is ready; it is
// safe for concurrent use.
type Meter struct {
	stall, pause atomic.Int64

	mu   sync.Mutex
	last map[int]letGo // by tid: the thread's last release
}

// letGo is how a thread was let go: its registers, and since when it had
// stood still.
type letGo struct {
	regs  Regs
	since time.Time
}

// stillSince returns since when a thread found stopped with registers r,
// whose stop began at begun, has stood still: begun, or the start of its
// previous stop if it has not run since (see above).
func (m *Meter) stillSince(tid int, r Regs, begun time.Time) time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok := m.last[tid]; ok && !r.inSyscall() && l.regs == r && l.since.Before(begun) {
		return l.since
	}
	return begun
}

// released records a thread let go with registers r after standing still
// since since, and keeps the longest stall.
func (m *Meter) released(tid int, r Regs, since time.Time, now time.Time) {
	storeMax(&m.stall, now.Sub(since))
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.last == nil {
		m.last = map[int]letGo{}
	}
	m.last[tid] = letGo{r, since}
}

// Stall is the longest time any one thread was stopped, over every window
// of every Process sharing m, stops it did not run between counted as one.
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
		t.stillSince = time.Time{}
	}
}

// noteStopped is called with the registers of a thread just stopped: it
// finds out whether the thread has run since its previous stop.
func (p *Process) noteStopped(t *thread) {
	if !t.stopSince.IsZero() {
		t.stillSince = p.meter.stillSince(t.tid, t.regs, t.stopSince)
	}
}

// noteResumed stops the thread's stop clock (the thread has just been let
// go) and keeps the longest figure.
func (p *Process) noteResumed(t *thread) {
	if t.stopSince.IsZero() {
		return
	}
	now := time.Now()
	storeMax(&p.stallNs, now.Sub(t.stopSince))
	still := t.stopSince
	if !t.stillSince.IsZero() {
		still = t.stillSince
	}
	p.meter.released(t.tid, t.regs, still, now)
	t.stopSince, t.stillSince = time.Time{}, time.Time{}
}

// notePause keeps the longest stop window.
func (p *Process) notePause(d time.Duration) {
	storeMax(&p.pauseNs, d)
	storeMax(&p.meter.pause, d)
}
