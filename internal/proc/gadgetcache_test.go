//go:build linux && amd64

package proc

import (
	"bytes"
	"fmt"
	"os"
	"strings"
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

// TestGadgetCacheOutOfMapping: a cached offset that lies past its mapping is
// not used, even where the bytes it names are a gadget's: they may be in
// memory that is not executable.
func TestGadgetCacheOutOfMapping(t *testing.T) {
	requirePtrace(t)
	a := start(t, "threads", "1")
	a.readUntil(t, "ready")
	p, err := Attach(a.pid(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	var maps []mapping
	p.do(func() error {
		err := p.readMaps()
		maps = p.maps
		return err
	})
	p.Detach()
	// The first candidate mapping (the [vdso], else the first r-x one) and a
	// `syscall` in readable memory that is not executable.
	var first *mapping
	for i, m := range maps {
		if strings.Contains(m.Perms, "r") && strings.Contains(m.Perms, "x") && (first == nil || m.Path == "[vdso]") && m.Path != "[vsyscall]" {
			first = &maps[i]
		}
	}
	var bad uint64
	for _, m := range maps {
		if bad != 0 || !strings.Contains(m.Perms, "r") || strings.Contains(m.Perms, "x") || m.Start < first.Start || m.End-m.Start > 1<<24 {
			continue
		}
		b := make([]byte, m.End-m.Start)
		if ReadMem(a.pid(), m.Start, b) != nil {
			continue
		}
		if k := bytes.Index(b, syscallInsn); k >= 0 {
			bad = m.Start + uint64(k)
		}
	}
	if first == nil || gadgetKey(*first) == "" || bad == 0 {
		t.Skip("no cacheable executable mapping, or no syscall bytes in non-executable memory above it")
	}
	var e gadgetEntry
	e.known = [numGadgets]bool{true, true, true}
	e.offs = [numGadgets]int64{int64(bad - first.Start), -1, -1} // the others: found further on
	gadgetCache.mu.Lock()
	gadgetCache.m = map[string]gadgetEntry{gadgetKey(*first): e}
	gadgetCache.mu.Unlock()
	defer func() {
		gadgetCache.mu.Lock()
		gadgetCache.m = nil
		gadgetCache.mu.Unlock()
	}()
	if g := gadgetsOf(t, a.pid()); g.syscall == bad {
		t.Fatalf("the cached syscall gadget %#x, outside %s's mapping and not executable, was used", bad, first.Path)
	}
}
