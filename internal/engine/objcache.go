package engine

import (
	"sync"

	"github.com/hotpatch/hotpatch/internal/linker"
	"github.com/hotpatch/hotpatch/internal/patchfile"
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
