//go:build linux && amd64

package proc

import (
	"bytes"
	"fmt"
	"os"
	"testing"
)

// gadgetsOf attaches to pid and returns the gadgets its session found.
func gadgetsOf(t *testing.T, pid int) gadgets {
	t.Helper()
	p, err := Attach(pid, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Detach()
	var g gadgets
	p.do(func() error {
		g = p.gad
		return nil
	})
	if !p.gadgetsHold(g) {
		t.Fatalf("process %d: gadgets %+v do not hold their instructions", pid, g)
	}
	return g
}

// TestGadgetCacheRevalidated: the gadgets one process's scan found are
// offered to every process mapping the same files, but a process whose
// bytes differ there (its code was written to) never gets them: it scans
// its own memory.
func TestGadgetCacheRevalidated(t *testing.T) {
	requirePtrace(t)
	a := start(t, "threads", "1")
	a.readUntil(t, "ready")
	b := start(t, "threads", "1")
	b.readUntil(t, "ready")
	ga := gadgetsOf(t, a.pid())
	if ga.restorer == 0 {
		t.Skip("no __restore_rt found in the test program")
	}
	gb := gadgetsOf(t, b.pid()) // from the cache, validated
	if gb.restorer == 0 || gb.syscall == 0 || gb.syscallRet == 0 {
		t.Fatalf("second process: gadgets %+v", gb)
	}

	// Break b's copy of the restorer (its text pages are private: a's and
	// the file stay as they are), then attach to b again.
	mem, err := os.OpenFile(fmt.Sprintf("/proc/%d/mem", b.pid()), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	orig := make([]byte, len(restorerInsn))
	if _, err := mem.ReadAt(orig, int64(gb.restorer)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(orig, restorerInsn) {
		t.Fatalf("restorer of b holds % x", orig)
	}
	broken := append([]byte(nil), orig...)
	broken[0] = 0xcc
	if _, err := mem.WriteAt(broken, int64(gb.restorer)); err != nil {
		t.Fatal(err)
	}
	defer mem.WriteAt(orig, int64(gb.restorer))
	g2 := gadgetsOf(t, b.pid()) // gadgetsOf checks they hold
	if g2.restorer == gb.restorer {
		t.Fatalf("the cached restorer %#x was used although its bytes changed", gb.restorer)
	}
	if g3 := gadgetsOf(t, a.pid()); g3 != ga {
		t.Fatalf("first process: gadgets %+v, then %+v", ga, g3)
	}
}

// TestGadgetKeyMemfd: memfd mappings (hotpatch's patch regions among them)
// are never cache keys: their inode is one process's and their contents
// change; files and the [vdso] are.
func TestGadgetKeyMemfd(t *testing.T) {
	for _, tc := range []struct {
		m    mapping
		want bool
	}{
		{mapping{0x1000, 0x3000, "r-xp", "/usr/lib/libc.so.6", "00028000 08:01 1234"}, true},
		{mapping{0x1000, 0x3000, "r-xp", "[vdso]", ""}, true},
		{mapping{0x1000, 0x3000, "r-xp", "/memfd:hotpatch:fix (deleted)", "00001000 00:01 99"}, false},
		{mapping{0x1000, 0x3000, "rwxp", "", ""}, false},
	} {
		if got := gadgetKey(tc.m) != ""; got != tc.want {
			t.Errorf("gadgetKey(%+v) = %q", tc.m, gadgetKey(tc.m))
		}
	}
}
