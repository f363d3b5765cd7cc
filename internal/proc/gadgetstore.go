//go:build linux

package proc

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/hotpatch/hotpatch/internal/statecache"
)

// gadgetCache (gadgetcache.go) lives as long as the hotpatch process: every
// CLI run started with it empty and scanned about a megabyte of the
// target's libc in its first session. With Options.CacheDir it is kept
// between runs too, in the state directory's entry "gadgets" (statecache:
// checksummed, never a symbolic link, the user's own): loaded before the
// first search of a run, written back when a search taught it something.
// What it holds is as untrusted as ever: an address taken from it is read
// back in the process before use (gadgetsHold), and any mismatch makes the
// process scan its own memory. The entry is dropped as a whole when the
// kernel differs from the one that wrote it (the [vdso] is the kernel's).

const gadgetStoreName = "gadgets"

// maxStoredGadgets bounds the entries written (a host's distinct libc
// mappings are a handful; containers add a few each).
const maxStoredGadgets = 256

// gadgetScans counts the mappings read to find gadgets (for tests).
var gadgetScans atomic.Int64

var gadgetStore struct {
	mu     sync.Mutex
	loaded map[statecache.Dir]bool
	dirty  atomic.Bool // gadgetCache learnt something since the last write
}

// loadGadgetStore fills gadgetCache from dir once per run.
func loadGadgetStore(dir statecache.Dir) {
	if dir == "" {
		return
	}
	gadgetStore.mu.Lock()
	done := gadgetStore.loaded[dir]
	if gadgetStore.loaded == nil {
		gadgetStore.loaded = map[statecache.Dir]bool{}
	}
	gadgetStore.loaded[dir] = true
	gadgetStore.mu.Unlock()
	if done {
		return
	}
	b, ok := dir.Load(gadgetStoreName)
	if !ok {
		return
	}
	entries, err := parseGadgetStore(b, kernelID())
	if err != nil {
		return
	}
	for key, e := range entries {
		gadgetCache.put(key, e.known, e.offs)
	}
	gadgetStore.dirty.Store(false) // nothing new: it is what the file holds
}

// saveGadgetStore writes gadgetCache to dir if it learnt something, merged
// with what the entry holds now (another hotpatch may have written it since
// it was loaded). Past maxStoredGadgets, the mappings of the process in
// hand (maps) are kept first.
func saveGadgetStore(dir statecache.Dir, maps []mapping) {
	if dir == "" {
		return
	}
	gadgetStore.mu.Lock() // one writer at a time in this process
	defer gadgetStore.mu.Unlock()
	if !gadgetStore.dirty.Swap(false) {
		return
	}
	kernel := kernelID()
	merged := map[string]gadgetEntry{}
	if b, ok := dir.Load(gadgetStoreName); ok {
		if old, err := parseGadgetStore(b, kernel); err == nil {
			merged = old
		}
	}
	gadgetCache.mu.Lock()
	for k, e := range gadgetCache.m {
		merged[k] = e
	}
	gadgetCache.mu.Unlock()
	if len(merged) > maxStoredGadgets {
		keep := map[string]gadgetEntry{}
		for _, m := range maps {
			if e, ok := merged[gadgetKey(m)]; ok {
				keep[gadgetKey(m)] = e
			}
		}
		for k, e := range merged {
			if len(keep) >= maxStoredGadgets {
				break
			}
			keep[k] = e
		}
		merged = keep
	}
	if b := formatGadgetStore(merged, kernel); b != nil {
		dir.Store(gadgetStoreName, b)
	}
}

// kernelID names the running kernel (uname -r and -v).
func kernelID() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return strings.ReplaceAll(unix.ByteSliceToString(u.Release[:])+" "+unix.ByteSliceToString(u.Version[:]), "\n", " ")
}

// formatGadgetStore writes "kernel ID" and then one entry a line:
// "KNOWN OFF0 OFF1 OFF2 KEY" (KNOWN: one 0/1 per gadget; OFF: -1 absent).
// nil when there are too many entries to keep.
func formatGadgetStore(m map[string]gadgetEntry, kernel string) []byte {
	if len(m) > maxStoredGadgets || kernel == "" {
		return nil
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "kernel %s\n", kernel)
	for key, e := range m {
		for i := range e.known {
			b.WriteByte("01"[btoi(e.known[i])])
		}
		for _, o := range e.offs {
			fmt.Fprintf(&b, " %d", o)
		}
		fmt.Fprintf(&b, " %s\n", key)
	}
	return b.Bytes()
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// parseGadgetStore reads formatGadgetStore's output (untrusted: a file),
// refusing an entry written under another kernel.
func parseGadgetStore(data []byte, kernel string) (m map[string]gadgetEntry, err error) {
	defer func() {
		if r := recover(); r != nil {
			m, err = nil, fmt.Errorf("parse gadget store: panic: %v", r)
		}
	}()
	lines := strings.Split(string(data), "\n")
	if len(lines) == 0 || lines[0] != "kernel "+kernel || kernel == "" {
		return nil, fmt.Errorf("gadget store: written under another kernel")
	}
	m = map[string]gadgetEntry{}
	for n, line := range lines[1:] {
		if line == "" {
			continue
		}
		f := strings.SplitN(line, " ", numGadgets+2)
		if len(f) != numGadgets+2 || len(f[0]) != numGadgets {
			return nil, fmt.Errorf("gadget store line %d: bad fields", n+2)
		}
		var e gadgetEntry
		for i := range e.known {
			switch f[0][i] {
			case '0':
			case '1':
				e.known[i] = true
			default:
				return nil, fmt.Errorf("gadget store line %d: bad mask %q", n+2, f[0])
			}
			o, err := strconv.ParseInt(f[1+i], 10, 64)
			if err != nil || o < -1 {
				return nil, fmt.Errorf("gadget store line %d: bad offset %q", n+2, f[1+i])
			}
			e.offs[i] = o
		}
		key := f[numGadgets+1]
		if !strings.HasPrefix(key, "file ") && !strings.HasPrefix(key, "vdso ") {
			return nil, fmt.Errorf("gadget store line %d: bad key %q", n+2, key)
		}
		m[key] = e
		if len(m) > maxStoredGadgets {
			return nil, fmt.Errorf("gadget store: more than %d entries", maxStoredGadgets)
		}
	}
	return m, nil
}
