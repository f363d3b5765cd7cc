package engine

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hotpatch/hotpatch/internal/testutil"
)

var readyFlags = []string{"-fpatchable-function-entry=7,5"}

// TestPatchReadyFlips flips a two-function patch on and off a 64-thread
// target built patch-ready: only the first apply may stop a thread (the one
// that maps the region); every result the threads see is old or new.
func TestPatchReadyFlips(t *testing.T) {
	for _, v := range []struct {
		name  string
		flags []string
	}{{"plain", nil}, {"endbr64", []string{"-fcf-protection"}}} {
		t.Run(v.name, func(t *testing.T) {
			dir := setup(t)
			bin := compileTarget(t, dir, "ready.c", append(readyFlags, v.flags...)...)
			p := buildPatch(t, bin, compileObj(t, dir, "ready_new.c", v.flags...))
			// The 64 threads spin without pause; at nice 19 they still
			// hammer the functions but leave the test its share of 2 CPUs.
			tg := testutil.Start(t, "nice", "-n", "19", bin)
			tg.WaitLine(t, 5*time.Second, func(l string) bool { return strings.HasPrefix(l, "ready ") })

			// Watch every thread's state while flipping: after the first
			// apply none may ever be stopped ('t').
			var stopped atomic.Int64
			var watching atomic.Bool
			done := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-done:
						return
					default:
					}
					if watching.Load() {
						if st, err := testutil.ThreadStates(tg.Pid); err == nil {
							for _, s := range st {
								if s == "t" {
									stopped.Add(1)
								}
							}
						}
					}
					time.Sleep(2 * time.Millisecond)
				}
			}()
			flips := 10000
			if v.name != "plain" {
				flips = 2000
			}
			if testing.Short() {
				flips /= 10
			}
			start := time.Now()
			for i := 0; i < flips/2; i++ {
				rep, err := Apply(tg.Pid, p, Options{})
				if err != nil {
					t.Fatalf("flip %d apply: %v", i, err)
				}
				for _, f := range rep.Functions {
					if f.Path != "patch-ready" {
						t.Fatalf("flip %d: %s took path %q", i, f.Name, f.Path)
					}
				}
				if i == 0 {
					t.Logf("first apply (maps the region): one thread stopped for %v, all threads %v", rep.AllocPause, rep.Pause)
					watching.Store(true)
				} else if rep.Pause != 0 {
					t.Fatalf("flip %d: apply paused the process for %v", i, rep.Pause)
				}
				rrep, err := Revert(tg.Pid, p.ID, Options{})
				if err != nil {
					t.Fatalf("flip %d revert: %v", i, err)
				}
				if rrep.Pause != 0 {
					t.Fatalf("flip %d: revert paused for %v", i, rrep.Pause)
				}
			}
			close(done)
			wg.Wait()
			t.Logf("%d flips in %v", flips, time.Since(start))
			if n := stopped.Load(); n != 0 {
				t.Errorf("threads seen stopped %d times after the first apply", n)
			}
			if exited, err := tg.Exited(); exited {
				t.Fatalf("target died: %v; %s", err, tg.Stderr())
			}
			if s := tg.Stderr(); s != "" {
				t.Fatalf("target reported: %s", s)
			}
			// Leave it applied and check the new code runs.
			if _, err := Apply(tg.Pid, p, Options{}); err != nil {
				t.Fatal(err)
			}
			tg.Drain()
			tg.WaitLine(t, 2*time.Second, func(l string) bool { return l == "1001 3 -1" })
			st, _ := Status(tg.Pid)
			if len(st.Patches) != 1 || !st.Patches[0].Redirects[0].Padded() {
				t.Fatalf("status: %+v", st)
			}
			// recover frees nothing while applied; after a revert it frees the
			// retained region after its stack check.
			if _, err := Revert(tg.Pid, p.ID, Options{}); err != nil {
				t.Fatal(err)
			}
			// A thread may still be finishing a call into the patch (the
			// revert is entry-consistent): recover keeps the region then.
			var rec *RecoverReport
			var err error
			for try := 0; try < 50; try++ {
				rec, err = Recover(tg.Pid, Options{})
				if err != nil || len(rec.Actions) != 1 || rec.Actions[0].Action != "kept" {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil || len(rec.Actions) != 1 || rec.Actions[0].Action != "freed" {
				t.Fatalf("recover: %+v %v", rec, err)
			}
			tg.Drain()
			tg.WaitLine(t, 2*time.Second, func(l string) bool { return l == "1 2 -1" })
		})
	}
}

func TestPatchReadyMixed(t *testing.T) {
	dir := setup(t)
	bin := compileTarget(t, dir, "ready.c", readyFlags...)
	p := buildPatch(t, bin, compileObj(t, dir, "ready_mixed_new.c"))
	tg := testutil.Start(t, bin, "8")
	tg.WaitLine(t, 5*time.Second, func(l string) bool { return strings.HasPrefix(l, "ready ") })
	for i := 0; i < 20; i++ {
		rep, err := Apply(tg.Pid, p, Options{})
		if err != nil {
			t.Fatal(err)
		}
		paths := map[string]string{}
		for _, f := range rep.Functions {
			paths[f.Name] = f.Path + "/" + f.Kind
		}
		if !strings.Contains(paths["ra"], "patch-ready entry") || !strings.Contains(paths["plain"], "jmp rel32") {
			t.Fatalf("paths: %v", paths)
		}
		if i == 0 {
			tg.Drain()
			tg.WaitLine(t, 2*time.Second, func(l string) bool { return l == "1001 2 -1001" })
		}
		if _, err := Revert(tg.Pid, p.ID, Options{}); err != nil {
			t.Fatal(err)
		}
	}
	tg.Drain()
	tg.WaitLine(t, 2*time.Second, func(l string) bool { return l == "1 2 -1" })
	if s := tg.Stderr(); s != "" {
		t.Fatal(s)
	}
	_ = fmt.Sprint
}

// TestPatchReadyThreadBetweenEntryNOPs parks a thread exactly between the
// two one-byte NOPs of a patch-ready entry (single-stepped there), applies the patch-ready redirect, and lets the thread
// go: it executes the jump's displacement byte as `stc` and runs the old
// body once, harmlessly; later calls take the new code.
func TestPatchReadyThreadBetweenEntryNOPs(t *testing.T) {
	dir := setup(t)
	bin := compileTarget(t, dir, "ready.c", readyFlags...)
	p := buildPatch(t, bin, compileObj(t, dir, "ready_new.c"))
	tg := testutil.Start(t, bin, "1")
	tg.WaitLine(t, 5*time.Second, func(l string) bool { return strings.HasPrefix(l, "ready ") })

	tr, err := readTarget(tg.Pid)
	if err != nil {
		t.Fatal(err)
	}
	var entry uint64
	for _, m := range tr.mods {
		if m.IsExe && tr.loadSyms(m) == nil {
			for _, s := range m.syms.Lookup("ra") {
				entry = s.Value + m.Bias
			}
		}
	}
	if entry == 0 {
		t.Fatal("ra not found")
	}
	states, _ := testutil.ThreadStates(tg.Pid)
	worker := 0
	for tid := range states {
		if tid != tg.Pid {
			worker = tid
		}
	}
	park := make(chan error)
	release := make(chan struct{})
	released := make(chan error)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		park <- parkAt(worker, entry+1)
		<-release
		// Let the thread run the byte it sits on.
		released <- unix.PtraceDetach(worker)
	}()
	if err := <-park; err != nil {
		t.Fatalf("park the thread at %#x: %v", entry+1, err)
	}
	rep, err := Apply(tg.Pid, p, Options{})
	if err != nil {
		t.Fatalf("apply with a thread between the entry NOPs: %v", err)
	}
	if rep.Functions[0].Path != "patch-ready" {
		t.Fatalf("path %q", rep.Functions[0].Path)
	}
	close(release)
	if err := <-released; err != nil {
		t.Fatal(err)
	}
	tg.Drain()
	tg.WaitLine(t, 2*time.Second, func(l string) bool { return l == "1001 3 -1" })
	time.Sleep(200 * time.Millisecond)
	if exited, err := tg.Exited(); exited {
		t.Fatalf("target died: %v %s", err, tg.Stderr())
	}
	if s := tg.Stderr(); s != "" {
		t.Fatalf("target reported: %s", s)
	}
}

// TestPatchReadyNoStacking: a second patch of a patch-ready function is
// refused (the two would share the entry's short jump), and the first stays
// in effect, revertible.
func TestPatchReadyNoStacking(t *testing.T) {
	dir := setup(t)
	bin := compileTarget(t, dir, "ready.c", readyFlags...)
	p1 := buildPatch(t, bin, compileObj(t, dir, "ready_new.c"))
	p2 := buildPatch(t, bin, compileObj(t, dir, "ready_mixed_new.c"))
	tg := testutil.Start(t, bin, "4")
	tg.WaitLine(t, 5*time.Second, func(l string) bool { return strings.HasPrefix(l, "ready ") })
	if _, err := Apply(tg.Pid, p1, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(tg.Pid, p2, Options{}); !errors.Is(err, ErrStacked) {
		t.Fatalf("stacking on a patch-ready function: got %v, want ErrStacked", err)
	}
	tg.Drain()
	tg.WaitLine(t, 2*time.Second, func(l string) bool { return l == "1001 3 -1" })
	if st, _ := Status(tg.Pid); len(st.Patches) != 1 {
		t.Fatalf("refused apply left something: %+v", st.Patches)
	}
	if _, err := Revert(tg.Pid, p1.ID, Options{}); err != nil {
		t.Fatal(err)
	}
	tg.Drain()
	tg.WaitLine(t, 2*time.Second, func(l string) bool { return l == "1 2 -1" })
}

// TestPatchReadyPhases: the patch-ready path reports its phases like the
// stop path (issue 12 item 5): the first apply maps and writes, the revert
// and the re-apply only flip entries.
func TestPatchReadyPhases(t *testing.T) {
	dir := setup(t)
	bin := compileTarget(t, dir, "ready.c", readyFlags...)
	p := buildPatch(t, bin, compileObj(t, dir, "ready_new.c"))
	tg := testutil.Start(t, bin, "4")
	tg.WaitLine(t, 5*time.Second, func(l string) bool { return strings.HasPrefix(l, "ready ") })
	for i, must := range []string{"write padding and entries", "flip entries"} {
		rep, err := Apply(tg.Pid, p, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Functions[0].Path != "patch-ready" {
			t.Fatalf("apply %d took path %q", i, rep.Functions[0].Path)
		}
		checkPhases(t, fmt.Sprintf("apply %d", i), rep.Phases, rep.Elapsed, must)
		rrep, err := Revert(tg.Pid, p.ID, Options{})
		if err != nil {
			t.Fatal(err)
		}
		checkPhases(t, fmt.Sprintf("revert %d", i), rrep.Phases, rrep.Elapsed, "restore entries")
		// The region stays for a re-apply, and status says so.
		if st, err := StatusFree(tg.Pid, Options{}); err != nil || len(st.Patches) != 1 || st.Patches[0].Kept != keptReady {
			t.Fatalf("status of a patch-ready revert: %+v %v", st, err)
		}
	}
}

// TestRecoverRestoresPadding: after a patch-ready revert and a recover that
// frees the region, or a revert on the stop path, the padding above each
// entry holds the compiler's NOPs again, so the next apply takes the
// patch-ready path (issue 11 item 4: it took the stop path every time).
func TestRecoverRestoresPadding(t *testing.T) {
	dir := setup(t)
	bin := compileTarget(t, dir, "ready.c", readyFlags...)
	p := buildPatch(t, bin, compileObj(t, dir, "ready_new.c"))
	tg := testutil.Start(t, bin, "8")
	tg.WaitLine(t, 5*time.Second, func(l string) bool { return strings.HasPrefix(l, "ready ") })
	applyReadyPath := func(what string) {
		t.Helper()
		rep, err := Apply(tg.Pid, p, Options{})
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		for _, f := range rep.Functions {
			if f.Path != "patch-ready" {
				t.Fatalf("%s: %s took the %s path", what, f.Name, f.Path)
			}
		}
		tg.Drain()
		tg.WaitLine(t, 2*time.Second, func(l string) bool { return l == "1001 3 -1" })
	}
	recoverAll := func() {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			rec, err := Recover(tg.Pid, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if st, _ := Status(tg.Pid); len(st.Patches) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("recover kept the region: %+v", rec)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for i := 0; i < 3; i++ {
		applyReadyPath(fmt.Sprintf("apply %d after a recover", i))
		if _, err := Revert(tg.Pid, p.ID, Options{}); err != nil {
			t.Fatal(err)
		}
		recoverAll()
	}
	// The stop path writes the padding too; its revert restores it.
	if _, err := Apply(tg.Pid, p, Options{NoReady: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := Revert(tg.Pid, p.ID, Options{NoReady: true, Consistency: ConsistencyEntry}); err != nil {
		t.Fatal(err)
	}
	recoverAll()
	applyReadyPath("apply after a stop-path revert")
	if s := tg.Stderr(); s != "" {
		t.Fatal(s)
	}
}
