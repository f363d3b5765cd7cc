//go:build linux && amd64

package proc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hotpatch/hotpatch/internal/statecache"
)

// freshRun forgets what this process learnt about gadgets, as a new
// hotpatch command starts, and returns the gadgets of a session on pid
// with dir as the state directory and how many mappings it read.
func freshRun(t *testing.T, pid int, dir statecache.Dir) (gadgets, int64) {
	t.Helper()
	gadgetCache.mu.Lock()
	gadgetCache.m = nil
	gadgetCache.mu.Unlock()
	gadgetStore.mu.Lock()
	gadgetStore.loaded = nil
	gadgetStore.mu.Unlock()
	n := gadgetScans.Load()
	p, err := Attach(pid, Options{CacheDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Detach()
	var g gadgets
	p.do(func() error { g = p.gad; return nil })
	if !p.gadgetsHold(g) || g.missing() {
		t.Fatalf("gadgets %+v do not hold their instructions", g)
	}
	return g, gadgetScans.Load() - n
}

// TestGadgetStore: a run keeps what its scan found in the state directory,
// and the next run reads no memory to find the gadgets; an entry that is
// wrong (offsets that do not hold, another kernel's, not an entry at all)
// costs a scan, never a wrong gadget.
func TestGadgetStore(t *testing.T) {
	requirePtrace(t)
	tg := start(t, "threads", "1")
	tg.readUntil(t, "ready")
	dir := statecache.Dir(filepath.Join(t.TempDir(), "state"))

	scanned, n := freshRun(t, tg.pid(), dir)
	if n == 0 {
		t.Fatal("the first run read no mapping")
	}
	b, ok := dir.Load(gadgetStoreName)
	if !ok {
		t.Fatal("no gadget entry in the state directory after the first run")
	}
	if _, err := parseGadgetStore(b, kernelID()); err != nil {
		t.Fatalf("entry %q: %v", b, err)
	}
	if g, n := freshRun(t, tg.pid(), dir); g != scanned || n != 0 {
		t.Errorf("second run: %+v after reading %d mappings; want %+v, none read", g, n, scanned)
	}

	// Offsets moved by one: they do not hold in the process, so it scans.
	var moved []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.SplitN(l, " ", 5); len(f) == 5 && f[0] != "kernel" {
			for i := 1; i <= 3; i++ {
				if f[i] != "-1" {
					f[i] += "1"
				}
			}
			l = strings.Join(f, " ")
		}
		moved = append(moved, l)
	}
	dir.Store(gadgetStoreName, []byte(strings.Join(moved, "\n")))
	if g, n := freshRun(t, tg.pid(), dir); g != scanned || n == 0 {
		t.Errorf("wrong offsets: %+v after reading %d mappings; want %+v from a scan", g, n, scanned)
	}
	// Another kernel's entry, and a file that is no entry: ignored.
	dir.Store(gadgetStoreName, []byte(strings.Replace(string(b), "kernel ", "kernel other ", 1)))
	if g, n := freshRun(t, tg.pid(), dir); g != scanned || n == 0 {
		t.Errorf("another kernel's entry: %+v after reading %d mappings", g, n)
	}
	os.WriteFile(filepath.Join(string(dir), gadgetStoreName), b, 0o600) // no framing
	if g, n := freshRun(t, tg.pid(), dir); g != scanned || n == 0 {
		t.Errorf("unframed entry: %+v after reading %d mappings", g, n)
	}
}

func FuzzParseGadgetStore(f *testing.F) {
	f.Add([]byte("kernel k\n111 2343 414066 110672 file 00026000 fe:00 326269 1a2000 r-xp\n010 -1 5 -1 vdso 2000\n"))
	f.Add([]byte("kernel k\n1 2 3\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseGadgetStore(data, "k")
		if err != nil {
			return
		}
		again, err := parseGadgetStore(formatGadgetStore(m, "k"), "k")
		if err != nil || len(again) != len(m) {
			t.Fatalf("%d entries do not survive formatting: %v", len(m), err)
		}
	})
}
