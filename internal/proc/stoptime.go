//go:build linux

package proc

import (
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// What the target felt: every thread's stop is timed from the moment we
// asked it to stop (its own PTRACE_INTERRUPT; for a thread that came
// stopped, the moment we saw it) to the moment the request that lets it run
// again (PTRACE_CONT, PTRACE_LISTEN or PTRACE_DETACH) woke it, i.e. the
// moment that request returned, less the time the ptrace thread then waited
// for a CPU. The thread cannot have stopped before we asked, nor run again
// before it was woken, so the figure is not below the time the thread
// really stood still; what it may add is the few microseconds between the
// interrupt and the stop, and between the wake-up and our reading of the
// clock. Injected system calls and function calls run inside that interval
// (the thread executes our code, not its own), so they count as stopped
// time, as they do for the program.
//
// Why the wait is taken off: the request wakes the thread, and the woken
// thread often preempts the ptrace thread on its CPU before the request
// returns to us (wake-up preemption), for as long as the woken thread's time
// slice or the machine's load keeps us off the CPU: milliseconds, in which
// a busy thread runs its own code. Measured on this VM (1 spinning thread,
// load 1–5): the resume request "took" 0.5–4.9 ms, of which all but ~50 µs
// was this thread's run_delay, while the target's own largest loop gap was
// 0.3–1 ms. The ptrace thread does not sleep in these requests, so its wall
// time from the wake-up to its clock reading is its CPU time plus its
// run_delay (the second field of /proc/thread-self/schedstat, the time
// spent runnable waiting for a CPU; Documentation/scheduler/sched-stats.rst).
// run_delay is read just before and just after the request, and its growth
// is taken off. The one case it reads low: the ptrace thread preempted in
// the microsecond between its first reading and the wake-up (a timer tick
// or a wake-up of another task on its CPU landing in that window); then the
// figure lacks that wait. Without schedstat (CONFIG_SCHED_INFO off) nothing
// is taken off and the figure may include the wait, as before.
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
// go; waited is the ptrace thread's run_delay read just before the request
// that let it go) and keeps the longest figure.
func (p *Process) noteResumed(t *thread, waited waitReading) {
	now := p.wokenAt(waited)
	if p.lastWake.Before(now) {
		p.lastWake = now
	}
	if t.stopSince.IsZero() {
		return
	}
	storeMax(&p.stallNs, now.Sub(t.stopSince))
	still := t.stopSince
	if !t.stillSince.IsZero() {
		still = t.stillSince
	}
	p.meter.released(t.tid, t.regs, still, now)
	t.stopSince, t.stillSince = time.Time{}, time.Time{}
}

// wokenAt returns when the request just made woke its thread: now, less
// the time the ptrace thread has waited for a CPU since before the request
// (see above).
func (p *Process) wokenAt(before waitReading) time.Time {
	after := p.waitClock.read()
	now := time.Now()
	if before.ok && after.ok && after.d > before.d {
		now = now.Add(-(after.d - before.d))
	}
	return now
}

// endPause returns when the window ending now ended: when its last thread
// was woken, or now if none was let go.
func (p *Process) endPause() time.Time {
	end := p.lastWake
	p.lastWake = time.Time{}
	if end.IsZero() {
		return time.Now()
	}
	return end
}

// waitClock reads the ptrace thread's run_delay (see above). Owned by the
// ptrace thread, which opens it for itself (/proc/thread-self is the
// calling thread's).
type waitClock struct {
	fd  int // -1: not available
	buf [128]byte
}

// waitReading is one reading of a waitClock; ok false if it failed.
type waitReading struct {
	d  time.Duration
	ok bool
}

func openWaitClock() *waitClock {
	fd, err := unix.Open("/proc/thread-self/schedstat", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		fd = -1
	}
	return &waitClock{fd: fd}
}

func (c *waitClock) close() {
	if c != nil && c.fd >= 0 {
		unix.Close(c.fd)
		c.fd = -1
	}
}

// read returns the run_delay: the second decimal field of
// "sum_exec_runtime run_delay pcount\n".
func (c *waitClock) read() waitReading {
	if c == nil || c.fd < 0 {
		return waitReading{}
	}
	n, err := unix.Pread(c.fd, c.buf[:], 0)
	if err != nil || n <= 0 {
		return waitReading{}
	}
	d, ok := schedstatDelay(c.buf[:n])
	return waitReading{d, ok}
}

// schedstatDelay parses the second field of a schedstat line.
func schedstatDelay(b []byte) (time.Duration, bool) {
	i := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	if i == 0 || i >= len(b) || b[i] != ' ' {
		return 0, false
	}
	i++
	var v int64
	j := i
	for ; j < len(b) && b[j] >= '0' && b[j] <= '9'; j++ {
		if v > (1<<63-1)/10-1 {
			return 0, false
		}
		v = v*10 + int64(b[j]-'0')
	}
	if j == i || (j < len(b) && b[j] != ' ' && b[j] != '\n') {
		return 0, false
	}
	return time.Duration(v), true
}

// notePause keeps the longest stop window.
func (p *Process) notePause(d time.Duration) {
	storeMax(&p.pauseNs, d)
	storeMax(&p.meter.pause, d)
}
