package proc

import (
	"strconv"
	"strings"
	"sync"
)

// Patching the thousand processes of one executable attaches to each of
// them at least twice, and each session looks for its gadgets (inject.go):
// reading megabytes of the C library through process_vm_readv to find
// `mov $15, %rax; syscall` was a third of a fleet apply's CPU time. Where a
// gadget lies in a mapping depends only on what the mapping shows: the same
// range of the same file (device, inode, offset, length), or the kernel's
// one [vdso] image. gadgetCache remembers, per such mapping, where each
// gadget was found (or that it is not there). Nothing is trusted from it:
// the addresses it yields are read back in the process before they are used
// (gadgetsHold), and any mismatch makes that process scan its own memory.

const (
	numGadgets    = 3
	gadgetChunk   = 1 << 20
	gadgetOverlap = 16 // longer than any pattern: a match across two chunks is seen
)

// gadgetPatterns lists the patterns in the order of gadgets' fields.
func gadgetPatterns() [numGadgets][]byte {
	return [numGadgets][]byte{syscallInsn, syscallRetInsn, restorerInsn}
}

// gadgetKey names what mapping m shows, "" if that is not known to be the
// same in another process: anonymous executable memory (a JIT's), and
// memfd files (memfd_create(2)), whose inode is one process's own and whose
// contents it may write at any time: hotpatch's own patch regions are
// memfds, one per process and patch, and keying them filled the cache (and
// rewrote its state entry) once per process of a fleet.
func gadgetKey(m mapping) string {
	size := strconv.FormatUint(m.End-m.Start, 16)
	switch {
	case strings.HasPrefix(m.Path, "/memfd:") || strings.HasSuffix(m.Path, " (deleted)"):
		// A memfd (our own patch regions) or a deleted file: its inode
		// never comes back, remembering it only crowds the cache out.
		return ""
	case m.File != "":
		return "file " + m.File + " " + size + " " + m.Perms
	case m.Path == "[vdso]":
		return "vdso " + size
	}
	return ""
}

// gadgetEntry: per gadget, whether it was searched for in the mapping and
// its offset there (-1: absent).
type gadgetEntry struct {
	known [numGadgets]bool
	offs  [numGadgets]int64
}

// covers reports whether e knows about every wanted gadget.
func (e gadgetEntry) covers(want [numGadgets]bool) bool {
	for i, w := range want {
		if w && !e.known[i] {
			return false
		}
	}
	return true
}

// fits reports whether every gadget e places lies wholly inside a mapping
// of size bytes. gadgetsHold reads a gadget's bytes back, but not where they
// are: an offset past the mapping (an entry of the state directory's cache
// is a file, anything may be in it) could name the same bytes in memory
// that is not executable, and an injected call jumping there would fault.
func (e gadgetEntry) fits(size uint64) bool {
	for i, pat := range gadgetPatterns() {
		if e.known[i] && e.offs[i] >= 0 && uint64(e.offs[i])+uint64(len(pat)) > size {
			return false
		}
	}
	return true
}

type gadgetMap struct {
	mu sync.Mutex
	m  map[string]gadgetEntry
}

// maxGadgetEntries bounds the cache (a long-lived caller patching a host
// whose files change); past it, the cache starts over.
const maxGadgetEntries = 4096

var gadgetCache gadgetMap

func (c *gadgetMap) get(key string) (gadgetEntry, bool) {
	if key == "" {
		return gadgetEntry{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	return e, ok
}

// put records the outcome of a search for the wanted gadgets.
func (c *gadgetMap) put(key string, want [numGadgets]bool, offs [numGadgets]int64) {
	if key == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxGadgetEntries {
		c.m = map[string]gadgetEntry{}
	}
	e := c.m[key]
	for i, w := range want {
		if w {
			e.known[i], e.offs[i] = true, offs[i]
		}
	}
	c.m[key] = e
	gadgetStore.dirty.Store(true) // gadgetstore.go
}
