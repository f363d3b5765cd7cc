//go:build linux && amd64

package proc

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// startChurn starts testdata/churn.c (a worker, a thread creating
// short-lived threads without pause, a victim thread) and returns it with
// the victim's tid. With zombie, the main thread has called pthread_exit.
func startChurn(t *testing.T, zombie bool) (*target, int) {
	t.Helper()
	var args []string
	if zombie {
		args = []string{"zombie"}
	}
	tg := start(t, "churn", args...)
	tg.readUntil(t, "ready")
	victim, err := strconv.Atoi(tg.vals["victim"])
	if err != nil {
		t.Fatalf("victim tid %q: %v", tg.vals["victim"], err)
	}
	if zombie {
		deadline := time.Now().Add(5 * time.Second)
		for {
			if st, err := taskState(tg.pid(), tg.pid()); err == nil && st == 'Z' {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("leader never became a zombie")
			}
			time.Sleep(time.Millisecond)
		}
	}
	// Let the churn get going: wait until a few hundred threads have lived.
	counters := tg.addr(t, "counters")
	deadline := time.Now().Add(10 * time.Second)
	for readU64s(t, tg.pid(), counters, 2)[1] < 300 {
		if time.Now().After(deadline) {
			t.Fatal("the target creates no threads")
		}
		time.Sleep(time.Millisecond)
	}
	return tg, victim
}

// makeVictimExit sets the target's victimexit flag and waits until the
// victim thread has exited (a zombie while we trace it, or gone).
func makeVictimExit(t *testing.T, tg *target, victim int) {
	f, err := os.OpenFile(fmt.Sprintf("/proc/%d/task/%d/mem", tg.pid(), victim), os.O_RDWR, 0)
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{1, 0, 0, 0}, int64(tg.addr(t, "victimexit"))); err != nil {
		t.Error(err)
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := taskState(tg.pid(), victim)
		if err != nil || st == 'Z' || st == 'X' {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("victim %d did not exit (state %c)", victim, st)
			return
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// TestChurnStopSyscall stops, runs system calls in and resumes a process
// whose threads come and go without pause, one thread or all, with the main
// thread alive or a zombie. Only the process's own exit may be "exited".
func TestChurnStopSyscall(t *testing.T) {
	requirePtrace(t)
	for _, tc := range []struct {
		name   string
		opt    Options
		zombie bool
	}{
		{"all", Options{}, false},
		{"all-zombie-leader", Options{}, true},
		{"one", Options{OneThread: true}, false},
		{"one-zombie-leader", Options{OneThread: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg, _ := startChurn(t, tc.zombie)
			pid := tg.pid()
			for round := 0; round < 30; round++ {
				p, err := Attach(pid, tc.opt)
				if err != nil {
					t.Fatalf("round %d: Attach: %v", round, err)
				}
				for stop := 0; stop < 2; stop++ {
					if err := p.Stop(); err != nil {
						t.Fatalf("round %d: Stop: %v", round, err)
					}
					ths := p.Threads()
					if tc.opt.OneThread && len(ths) != 1 {
						t.Fatalf("round %d: %d threads stopped, want 1", round, len(ths))
					}
					tid, err := p.Syscall(unix.SYS_GETTID)
					if err != nil {
						t.Fatalf("round %d: gettid: %v", round, err)
					}
					if !hasThread(ths, int(tid)) {
						t.Fatalf("round %d: gettid ran on %d, not a stopped thread", round, tid)
					}
					if got, err := p.Syscall(unix.SYS_GETPID); err != nil || got != uint64(pid) {
						t.Fatalf("round %d: getpid = %d, %v", round, got, err)
					}
					addr, err := p.Mmap(0, 4096, unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, -1, 0)
					if err != nil {
						t.Fatalf("round %d: %v", round, err)
					}
					if err := p.Munmap(addr, 4096); err != nil {
						t.Fatalf("round %d: %v", round, err)
					}
					if err := p.Resume(); err != nil {
						t.Fatalf("round %d: Resume: %v", round, err)
					}
				}
				if err := p.Detach(); err != nil {
					t.Fatalf("round %d: Detach: %v", round, err)
				}
			}
			countersAdvance(t, pid, tg.addr(t, "counters"), 2)
			checkChurnRunning(t, pid)
		})
	}
}

func hasThread(ths []Thread, tid int) bool {
	for _, th := range ths {
		if th.TID == tid {
			return true
		}
	}
	return false
}

// TestOneThreadHeldThreadExitsInStop: the one thread OneThread holds exits
// as Stop starts; Stop must stop another thread instead.
func TestOneThreadHeldThreadExitsInStop(t *testing.T) {
	requirePtrace(t)
	for _, zombie := range []bool{false, true} {
		t.Run(fmt.Sprintf("zombie-leader=%v", zombie), func(t *testing.T) {
			tg, victim := startChurn(t, zombie)
			pid := tg.pid()
			once := false
			p, err := Attach(pid, Options{OneThread: true, preferTID: victim, beforeStop: func() {
				if !once {
					once = true
					makeVictimExit(t, tg, victim)
				}
			}})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Detach()
			if err := p.Stop(); err != nil {
				t.Fatalf("Stop after the held thread exited: %v", err)
			}
			if !once {
				t.Fatal("the held thread was not made to exit")
			}
			ths := p.Threads()
			if len(ths) != 1 || ths[0].TID == victim {
				t.Fatalf("stopped %+v, want one thread other than %d", ths, victim)
			}
			tid, err := p.Syscall(unix.SYS_GETTID)
			if err != nil || int(tid) != ths[0].TID {
				t.Fatalf("gettid = %d, %v; want %d", tid, err, ths[0].TID)
			}
			if err := p.Detach(); err != nil {
				t.Fatal(err)
			}
			countersAdvance(t, pid, tg.addr(t, "counters"), 2)
			checkChurnRunning(t, pid)
		})
	}
}

// TestThreadExitsDuringInjectedCall: the thread an injected call runs on
// exits during the call (the call is exit(2) itself). Its effect being
// unknown, the call fails with ErrThreadExited, not ErrExited: the process
// lives on, detached and running.
func TestThreadExitsDuringInjectedCall(t *testing.T) {
	requirePtrace(t)
	for _, one := range []bool{true, false} {
		t.Run(fmt.Sprintf("one-thread=%v", one), func(t *testing.T) {
			tg, victim := startChurn(t, false)
			pid := tg.pid()
			p, err := Attach(pid, Options{OneThread: one, preferTID: victim})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Detach()
			if err := p.Stop(); err != nil {
				t.Fatal(err)
			}
			p.do(func() error { p.injectTID = victim; return nil })
			_, err = p.Syscall(unix.SYS_EXIT, 0)
			if !errors.Is(err, ErrThreadExited) || errors.Is(err, ErrExited) {
				t.Fatalf("exit(2) injected: %v, want ErrThreadExited", err)
			}
			t.Logf("%v", err)
			if _, err := p.Syscall(unix.SYS_GETPID); !errors.Is(err, ErrDetached) {
				t.Fatalf("after a failed call: %v, want ErrDetached", err)
			}
			if _, err := taskState(pid, victim); err == nil {
				t.Errorf("victim %d still there", victim)
			}
			countersAdvance(t, pid, tg.addr(t, "counters"), 2)
			checkChurnRunning(t, pid)
		})
	}
}

// checkChurnRunning is checkRunning for churn.c, whose leader may be a
// zombie and whose short-lived threads may be caught exiting.
func checkChurnRunning(t *testing.T, pid int) {
	t.Helper()
	for tid, st := range taskStates(t, pid) {
		if st == 't' || st == 'T' {
			t.Errorf("task %d of %d in state %c after detach", tid, pid, st)
		}
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	if st, err := parseStatus(data); err != nil || st.TracerPid != 0 {
		t.Errorf("process %d still traced (%+v, %v)", pid, st, err)
	}
}
