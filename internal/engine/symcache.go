package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/hotpatch/hotpatch/internal/debuginfo"
	"github.com/hotpatch/hotpatch/internal/statecache"
)

// The call guard (callguard.go) needs, for every module the process maps,
// the functions during which a thread may hold the malloc, loader or
// unwinder lock. Finding them means building the module's whole symbol
// table: tens of milliseconds for a large program and its libraries (redis
// with libssl and libcrypto), at every apply and revert of a patch with
// unwind tables. The answer depends only on the module's file, the debug
// file its symbols come from and this version of takesCalleeLock, so it is
// kept per file in the state directory (internal/statecache), under a name
// derived from all of these: the build-id, the size and modification time
// of the file as the process maps it, the path, size and modification time
// of the debug file the search finds now (debuginfo.Find, which verifies
// it), and lockFuncsVersion. An entry repeats that identity on its first
// line and is used only if it matches exactly; anything else (no entry, a
// damaged one, another identity) builds the table as before and rewrites
// the entry. Files without a build-id are never cached.

// lockFuncsVersion changes whenever takesCalleeLock does.
const lockFuncsVersion = "locks 1"

// lockFunc is a function of a module, at file-relative addresses.
type lockFunc struct {
	value, size uint64
	name        string
}

// lockFuncs returns module m's functions that may hold a callee lock.
func (t *target) lockFuncs(m *module) ([]lockFunc, error) {
	if err := t.load(m); err != nil {
		return nil, err
	}
	// A table already built (the executable's, the patched file's) is
	// searched at once.
	id, dir, name := "", cacheDir(), ""
	if !m.symsLoaded() {
		id = t.lockFuncsIdent(m)
	}
	if id != "" && dir != "" {
		sum := sha256.Sum256([]byte(id))
		name = "locks-" + hex.EncodeToString(sum[:12])
		if b, ok := statecache.Dir(dir).Load(name); ok {
			if fns, err := parseLockFuncs(b, id); err == nil {
				return fns, nil
			}
		}
	}
	if err := t.loadSyms(m); err != nil {
		return nil, err
	}
	var fns []lockFunc
	for _, s := range m.syms.Functions() {
		if s.Size > 0 && takesCalleeLock(s.Name) {
			fns = append(fns, lockFunc{s.Value, s.Size, s.Name})
		}
	}
	if name != "" {
		statecache.Dir(dir).Store(name, formatLockFuncs(fns, id))
	}
	return fns, nil
}

// lockFuncsIdent is the identity a cache entry must carry (see above), ""
// when the module cannot be cached.
func (t *target) lockFuncsIdent(m *module) string {
	lf := m.loadedFile
	if lf.buildID == "" || lf.ident == "" {
		return ""
	}
	fd, err := debuginfo.Find(m.Path, lf.f, debugSearch)
	if err != nil {
		return ""
	}
	defer fd.Close()
	dbg := "none"
	if fd.Source != debuginfo.SourceNone && fd.Path != "" {
		f, err := os.Open(fd.Path)
		if err != nil {
			return ""
		}
		dbg = fd.Path + " " + fileIdent(f)
		f.Close()
	}
	return fmt.Sprintf("%s %s %s %s %q", lockFuncsVersion, lf.buildID, lf.ident, dbg, m.Path)
}

// fileIdent is "SIZE MTIME_NS" of an open file, "" if it cannot be told.
func fileIdent(f *os.File) string {
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return ""
	}
	return fmt.Sprintf("%d %d", st.Size(), st.ModTime().UnixNano())
}

// formatLockFuncs writes the identity, then one function a line: "VALUE
// SIZE NAME" (hex).
func formatLockFuncs(fns []lockFunc, id string) []byte {
	var b strings.Builder
	b.WriteString(id)
	b.WriteByte('\n')
	for _, f := range fns {
		fmt.Fprintf(&b, "%x %x %s\n", f.value, f.size, f.name)
	}
	return []byte(b.String())
}

// parseLockFuncs reads formatLockFuncs' output (untrusted: a file), which
// must carry identity id.
func parseLockFuncs(data []byte, id string) (fns []lockFunc, err error) {
	defer recoverPanic(&err, "parse cached lock functions")
	lines := strings.Split(string(data), "\n")
	if len(lines) < 2 || lines[0] != id || lines[len(lines)-1] != "" {
		return nil, fmt.Errorf("cached lock functions: another file's, or cut short")
	}
	for n, l := range lines[1 : len(lines)-1] {
		f := strings.SplitN(l, " ", 3)
		if len(f) != 3 || f[2] == "" {
			return nil, fmt.Errorf("cached lock functions line %d: bad fields", n+2)
		}
		v, err1 := strconv.ParseUint(f[0], 16, 64)
		sz, err2 := strconv.ParseUint(f[1], 16, 64)
		if err1 != nil || err2 != nil || sz == 0 || v+sz < v || !takesCalleeLock(f[2]) {
			return nil, fmt.Errorf("cached lock functions line %d: bad function", n+2)
		}
		fns = append(fns, lockFunc{v, sz, f[2]})
	}
	return fns, nil
}
