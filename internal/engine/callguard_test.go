package engine

import (
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// TestCallGuardRefusesLockHolders: a thread blocked inside a
// dl_iterate_phdr callback holds the loader lock, which the unwinder's
// registration functions may take; the guard refuses it (naming the
// function) and lets the thread running user code run the call.
func TestCallGuardRefusesLockHolders(t *testing.T) {
	testutil.NeedGCC(t)
	testutil.NeedPtrace(t)
	bin := testutil.Compile(t, filepath.Join(t.TempDir(), "lockholder"), "testdata/lockholder.c", "-O1", "-g", "-pthread")
	tg := testutil.Start(t, bin)
	var holder int
	tg.WaitLine(t, 5*time.Second, func(l string) bool {
		if v, ok := strings.CutPrefix(l, "holder "); ok {
			holder, _ = strconv.Atoi(v)
		}
		return l == "ready"
	})
	time.Sleep(20 * time.Millisecond) // into read(2)
	tgt, err := readTargetArch(tg.Pid)
	if err != nil {
		t.Fatal(err)
	}
	g := newCallGuard(tgt, nil)
	pr, err := proc.Attach(tg.Pid, proc.Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Detach()
	if err := pr.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, th := range pr.Threads() {
		err := g.safe(th)
		switch {
		case th.TID == holder && (err == nil || !strings.Contains(err.Error(), "dl_iterate_phdr")):
			t.Errorf("holder thread %d: %v, want refused inside dl_iterate_phdr", th.TID, err)
		case th.TID != holder && err != nil:
			t.Errorf("spinning thread %d refused: %v", th.TID, err)
		}
	}
	// A call refused on every thread fails cleanly and names why.
	getpid := findFunc(t, tgt, "getpid")
	err = pr.CallVoid(getpid, func(th proc.Thread) error {
		if err := g.safe(th); err != nil {
			return err
		}
		return errors.New("refused by the test")
	})
	if !errors.Is(err, proc.ErrNoSafeThread) || !strings.Contains(err.Error(), "dl_iterate_phdr") {
		t.Errorf("CallVoid: %v", err)
	}
	if err := pr.CallVoid(getpid, g.safe); err != nil {
		t.Errorf("CallVoid on the safe thread: %v", err)
	}
}

func findFunc(t *testing.T, tgt *target, name string) uint64 {
	t.Helper()
	for _, m := range tgt.mods {
		if tgt.loadSyms(m) != nil {
			continue
		}
		for _, s := range m.syms.Lookup(name) {
			if s.IsFunc() && s.Defined() {
				return s.Value + m.Bias
			}
		}
	}
	t.Fatalf("no %s", name)
	return 0
}
