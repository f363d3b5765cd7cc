package engine

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/procmaps"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// procSnapshot is what a dry run must not change in a process: its mappings,
// the bytes of every executable mapping, and its open descriptors (a
// memfd_create run in the target and not mapped would show only there).
type procSnapshot struct {
	maps string
	code []byte
	fds  string
}

func takeProcSnapshot(t *testing.T, pid int) procSnapshot {
	t.Helper()
	maps, err := procmaps.Read(pid)
	if err != nil {
		t.Fatal(err)
	}
	mem, err := os.Open("/proc/" + strconv.Itoa(pid) + "/mem")
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	var s procSnapshot
	var lines []string
	for _, m := range maps {
		if m.Path == "[stack]" || m.Path == "[heap]" || m.Path == "" {
			continue // grow or appear as the process runs
		}
		lines = append(lines, strconv.FormatUint(m.Start, 16)+" "+m.Path)
		if !m.Executable() || strings.HasPrefix(m.Path, "[v") { // [vdso], [vsyscall]
			continue
		}
		b := make([]byte, m.End-m.Start)
		if _, err := mem.ReadAt(b, int64(m.Start)); err != nil {
			t.Fatalf("read %s at %#x: %v", m.Path, m.Start, err)
		}
		s.code = append(s.code, b...)
	}
	s.maps = strings.Join(lines, "\n")
	fds, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		l, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/fd/" + fd.Name())
		s.fds += fd.Name() + " " + l + "\n"
	}
	return s
}

func (s procSnapshot) same(t *testing.T, pid int, when string) {
	t.Helper()
	now := takeProcSnapshot(t, pid)
	if now.maps != s.maps {
		t.Errorf("%s: the mappings changed:\nbefore:\n%s\nafter:\n%s", when, s.maps, now.maps)
	}
	if !bytes.Equal(now.code, s.code) {
		t.Errorf("%s: the code of the process changed", when)
	}
	if now.fds != s.fds {
		t.Errorf("%s: the open descriptors changed:\nbefore:\n%s\nafter:\n%s", when, s.fds, now.fds)
	}
	assertRunning(t, pid)
}

// TestDryRunChangesNothing: a dry apply and a dry revert stop the process
// for the real checks, report what they would do, and leave its mappings,
// its code and its records as they were.
func TestDryRunChangesNothing(t *testing.T) {
	tg, p := startWithPatch(t, "basic.c", "basic_new.c")
	tg.WaitLine(t, 5*time.Second, ratio(2))
	before := takeProcSnapshot(t, tg.Pid)

	rep, err := Apply(tg.Pid, p, Options{DryRun: true})
	if err != nil {
		t.Fatalf("dry apply: %v", err)
	}
	if !rep.DryRun || rep.AlreadyApplied || len(rep.Functions) != 1 || rep.Functions[0].Name != "compute" ||
		rep.Functions[0].Path != "stop" || rep.Pause <= 0 || rep.Attempts < 1 || rep.Region != 0 {
		t.Fatalf("dry apply report: %+v", rep)
	}
	before.same(t, tg.Pid, "dry apply")
	if st, err := Status(tg.Pid); err != nil || len(st.Patches) != 0 {
		t.Fatalf("status after the dry apply: %+v %v", st, err)
	}
	freshRatio(t, tg, time.Second, 2) // the old code still runs

	// A dry revert of a patch that is not applied fails as the real one.
	if _, err := Revert(tg.Pid, p.ID, Options{DryRun: true}); !errors.Is(err, ErrNotApplied) {
		t.Fatalf("dry revert of an unapplied patch: %v, want ErrNotApplied", err)
	}

	if _, err := Apply(tg.Pid, p, Options{}); err != nil {
		t.Fatalf("apply: %v", err)
	}
	freshRatio(t, tg, time.Second, 3)
	again, err := Apply(tg.Pid, p, Options{DryRun: true})
	if err != nil || !again.AlreadyApplied || !again.DryRun {
		t.Fatalf("dry apply of an applied patch: %+v %v", again, err)
	}
	applied := takeProcSnapshot(t, tg.Pid)
	rr, err := Revert(tg.Pid, p.ID, Options{DryRun: true})
	if err != nil {
		t.Fatalf("dry revert: %v", err)
	}
	if !rr.DryRun || len(rr.Functions) != 1 || rr.Functions[0] != "compute" || !rr.Freed || rr.Pause <= 0 {
		t.Fatalf("dry revert report: %+v", rr)
	}
	applied.same(t, tg.Pid, "dry revert")
	if st, err := Status(tg.Pid); err != nil || len(st.Patches) != 1 || st.Patches[0].StateName != "applied" {
		t.Fatalf("status after the dry revert: %+v %v", st, err)
	}
	freshRatio(t, tg, time.Second, 3) // the new code still runs
	if _, err := Revert(tg.Pid, p.ID, Options{}); err != nil {
		t.Fatalf("revert: %v", err)
	}
	freshRatio(t, tg, time.Second, 2)
}

// TestDryRunRefuses: a dry run refuses what the real apply would refuse,
// with the same error, after the same retries; the process is unchanged.
func TestDryRunRefuses(t *testing.T) {
	dir := setup(t)
	bin := compileTarget(t, dir, "busy.c")
	p := buildPatch(t, bin, compileObj(t, dir, "busy_new.c"))
	tg := testutil.Start(t, bin, "30")
	tg.WaitLine(t, 5*time.Second, func(l string) bool { return l == "ready" })
	before := takeProcSnapshot(t, tg.Pid)
	_, err := Apply(tg.Pid, p, Options{DryRun: true, Timeout: 300 * time.Millisecond})
	if !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "busy is active on thread") {
		t.Fatalf("dry apply with a thread inside busy(): %v, want ErrUnsafe naming busy", err)
	}
	before.same(t, tg.Pid, "refused dry apply")
	// The entry model would succeed.
	rep, err := Apply(tg.Pid, p, Options{DryRun: true, Consistency: ConsistencyEntry})
	if err != nil || !rep.DryRun || rep.Consistency != ConsistencyEntry {
		t.Fatalf("dry apply, entry model: %+v %v", rep, err)
	}
	before.same(t, tg.Pid, "dry apply, entry model")
}

// TestDryRunSeccomp: a target whose seccomp filter blocks memfd_create is
// refused by the dry run as by the real apply (ErrSeccompBlocked, naming
// the call), on the stop path and the patch-ready path, with no SIGSYS
// delivered and nothing mapped; an unfiltered call pattern (mdwe: only
// executable mappings are refused) is judged the same way as the real run.
func TestDryRunSeccomp(t *testing.T) {
	dir := setup(t)
	for _, b := range seccompBuilds {
		t.Run(b.name, func(t *testing.T) {
			bin := compileTarget(t, dir, "seccomp.c", b.flags...)
			p := buildPatch(t, bin, compileObj(t, dir, "basic_new.c"))
			tg := startSeccomp(t, bin, "trap-memfd")
			_, err := Apply(tg.Pid, p, Options{DryRun: true})
			if !errors.Is(err, ErrSeccompBlocked) || !strings.Contains(err.Error(), "memfd_create") {
				t.Fatalf("dry run: %v, want ErrSeccompBlocked naming memfd_create", err)
			}
			_, real := Apply(tg.Pid, p, Options{})
			if !errors.Is(real, ErrSeccompBlocked) {
				t.Fatalf("real apply: %v, want ErrSeccompBlocked like the dry run", real)
			}
			c := waitSC(t, tg, "after", func(c scCounts) bool { return c.new == 0 })
			if c.sigsys != 0 {
				t.Errorf("%d SIGSYS delivered", c.sigsys)
			}
			noRegion(t, tg.Pid)

			ok := startSeccomp(t, bin, "kill-munmap")
			rep, err := Apply(ok.Pid, p, Options{DryRun: true})
			if err != nil || !rep.DryRun || len(rep.Functions) != 1 || rep.Functions[0].Path != b.path {
				t.Fatalf("dry run, munmap blocked (mapping allowed): %+v %v", rep, err)
			}
			noRegion(t, ok.Pid)
			waitSC(t, ok, "after the dry run", func(c scCounts) bool { return c.new == 0 && c.old > 0 })
		})
	}
}
