package engine

import (
	"math"
	"strings"
	"sync"

	"github.com/hotpatch/hotpatch/internal/linker"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/record"
)

// A host-wide apply links one patch into every process that maps its
// target: the objects are parsed once per patch, not once per process (a
// twentieth of a fleet apply's CPU time went to parsing the same ELF
// objects again). A parsed linker.Object is never changed after
// ParseObject (linking keeps its state in linker.Prepared), so the
// workers of a fleet share it.

type objKey struct {
	p    *patchfile.Patch
	name string
}

type objEntry struct {
	once sync.Once
	o    *linker.Object
	err  error
}

// maxObjEntries bounds the cache of a long-lived caller (a patch holds a
// handful of objects; past this, it starts over).
const maxObjEntries = 64

var objCache struct {
	mu sync.Mutex
	m  map[objKey]*objEntry
}

// parsedObject returns member name of p parsed (linker.ParseObject), from
// the cache when this patch's member was parsed before.
func parsedObject(p *patchfile.Patch, name string) (*linker.Object, error) {
	k := objKey{p, name}
	objCache.mu.Lock()
	if objCache.m == nil || len(objCache.m) >= maxObjEntries {
		objCache.m = map[objKey]*objEntry{}
	}
	e := objCache.m[k]
	if e == nil {
		e = &objEntry{}
		objCache.m[k] = e
	}
	objCache.mu.Unlock()
	e.once.Do(func() { e.o, e.err = linker.ParseObject(p.Member(name)) })
	return e.o, e.err
}

// The record header's reserved size depends only on the patch, the target's
// path and the redirected functions' names (every number and byte string is
// sized at its worst case), so it is encoded once per patch and path, not
// once per process (3% of a fleet apply's CPU time).

type hdrKey struct {
	p     *patchfile.Patch
	path  string
	names string // the functions' names, NUL-separated
}

var hdrCache struct {
	mu sync.Mutex
	m  map[hdrKey]uint64
}

// headerSize returns the bytes reserved (whole pages) for the record header
// of patch p applied to the file at path redirecting the functions names.
func headerSize(p *patchfile.Patch, path string, names []string) (uint64, error) {
	k := hdrKey{p, path, strings.Join(names, "\x00")}
	hdrCache.mu.Lock()
	size, ok := hdrCache.m[k]
	hdrCache.mu.Unlock()
	if ok {
		return size, nil
	}
	dry := &record.Record{ID: p.ID, Description: p.Description, Target: path, BuildID: p.Target.BuildID,
		AppliedAt: math.MaxInt64, Base: math.MaxUint64, Size: math.MaxUint64, TextStart: math.MaxUint64, TextEnd: math.MaxUint64}
	for _, name := range names {
		dry.Redirects = append(dry.Redirects, record.Redirect{Func: name, Addr: math.MaxUint64, Entry: math.MaxUint64,
			New: math.MaxUint64, Orig: make([]byte, 16), Jump: make([]byte, 16), Kind: strings.Repeat("x", 64),
			SlotAddr: math.MaxUint64, SlotOrig: make([]byte, 16), SlotJump: make([]byte, 16)})
	}
	hdr, err := record.Encode(dry, record.StateApplied)
	if err != nil {
		return 0, err
	}
	size = roundUp(uint64(len(hdr)), pageSize)
	hdrCache.mu.Lock()
	if hdrCache.m == nil || len(hdrCache.m) >= maxObjEntries {
		hdrCache.m = map[hdrKey]uint64{}
	}
	hdrCache.m[k] = size
	hdrCache.mu.Unlock()
	return size, nil
}
