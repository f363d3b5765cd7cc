package engine

import (
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hotpatch/hotpatch/internal/arch"
	"github.com/hotpatch/hotpatch/internal/debuginfo"
	"github.com/hotpatch/hotpatch/internal/elfsym"
	"github.com/hotpatch/hotpatch/internal/linker"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/procmaps"
	"github.com/hotpatch/hotpatch/internal/unwind"
)

// debugSearch is where loadSyms looks for separate debug files; the zero
// value searches the host (internal/debuginfo). Symbol addresses of a debug
// file are link-time addresses of the running file: applied to its load bias
// like the file's own.
var debugSearch debuginfo.Options

// fileCache keeps parsed ELF files by device and inode, so that patching many
// processes of one executable parses it once. A mapped file is immutable while
// mapped: replacing it on disk gives a new inode.
var fileCache sync.Map // key string -> *loadedFile

type loadedFile struct {
	once    sync.Once
	f       *elfsym.File
	buildID string
	err     error
	ident   string // size and modification time of the file (symcache.go)

	onlyDynOnce sync.Once
	onlyDyn     bool // see onlyDynamic

	// The symbol table is read on first use (loadSyms): a fresh `hotpatch
	// apply` needs the patched file's and usually the C library's, not those
	// of every library the process maps.
	symsOnce sync.Once
	syms     *elfsym.Table
	symsErr  error
	symsRead atomic.Bool // symsOnce has run
	symsFrom string      // the file that gave syms (internal/debuginfo)

	relocs  []elfsym.DynReloc
	relErr  error
	relOnce sync.Once

	rangesOnce sync.Once
	ranges     []unwind.Range // .eh_frame function boundaries (fdeStarts)

	readyOnce sync.Once
	ready     map[uint64]bool // __patchable_function_entries, see ready.go
}

func (l *loadedFile) dynRelocs() ([]elfsym.DynReloc, error) {
	l.relOnce.Do(func() { l.relocs, l.relErr = l.f.DynRelocs() })
	return l.relocs, l.relErr
}

// module is one mapped file of the target with its parsed ELF.
type module struct {
	*procmaps.Module
	*loadedFile
}

// target is hotpatch's view of one process: its mappings and modules, read
// once before any thread is stopped.
type target struct {
	pid  int
	maps []procmaps.Mapping
	mods []*module // executable first, then libraries in load order
	mem  procmaps.MemReader
	arch arch.Arch // of the patched module
}

func readTarget(pid int) (*target, error) { return readTargetFrom(pid, nil) }

// readTargetFrom is readTarget from maps the caller has just read (nil: read
// them now): Apply reads them under the process lock for the records, and
// reading them again at once would tell nothing new (a process may change
// its mappings at any time; every step that depends on them checks again).
func readTargetFrom(pid int, maps []procmaps.Mapping) (*target, error) {
	if maps == nil {
		var err error
		if maps, err = procmaps.Read(pid); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("%w: process %d does not exist", proc.ErrNoProcess, pid)
			}
			return nil, fmt.Errorf("read maps of %d: %w", pid, err)
		}
	}
	t := &target{pid: pid, maps: maps}
	t.mem = func(addr uint64, b []byte) error { return proc.ReadMem(pid, addr, b) }
	mods, err := procmaps.Modules(pid, maps, t.mem)
	if err != nil {
		return nil, fmt.Errorf("modules of %d: %w", pid, err)
	}
	for _, m := range mods {
		t.mods = append(t.mods, &module{Module: m})
	}
	return t, nil
}

// readTargetArch is readTarget with t.arch set from the executable's
// machine (left nil when it is unknown), for the paths that have no patch
// to take it from: revert and the freeing of regions.
func readTargetArch(pid int) (*target, error) { return readTargetArchFrom(pid, nil) }

// readTargetArchFrom is readTargetArch from maps the caller has just read
// (nil: read them now; see readTargetFrom).
func readTargetArchFrom(pid int, maps []procmaps.Mapping) (*target, error) {
	t, err := readTargetFrom(pid, maps)
	if err != nil {
		return nil, err
	}
	for _, m := range t.mods {
		if m.IsExe && t.load(m) == nil {
			t.arch, _ = arch.ForMachine(m.f.Machine())
		}
	}
	return t, nil
}

// load parses a module's file (once per file on this host).
func (t *target) load(m *module) error {
	if m.loadedFile != nil {
		return m.err
	}
	key := fmt.Sprintf("%s:%d", m.Dev, m.Inode)
	v, _ := fileCache.LoadOrStore(key, &loadedFile{})
	lf := v.(*loadedFile)
	lf.once.Do(func() {
		fh, err := m.Open(t.pid)
		if err != nil {
			lf.err = err
			return
		}
		ef, err := elfsym.Open(fh)
		if err != nil {
			fh.Close()
			lf.err = fmt.Errorf("%s: %w", m.Path, err)
			return
		}
		lf.f = ef
		if id, err := ef.BuildID(); err == nil {
			lf.buildID = hex.EncodeToString(id)
		}
		lf.ident = fileIdent(fh)
	})
	m.loadedFile = lf
	return lf.err
}

// loadSyms loads a module (load) and its symbol table.
func (t *target) loadSyms(m *module) error {
	if err := t.load(m); err != nil {
		return err
	}
	lf := m.loadedFile
	lf.symsOnce.Do(func() {
		var fd *debuginfo.Found
		lf.syms, fd, lf.symsErr = debuginfo.Symbols(m.Path, lf.f, debugSearch)
		if lf.symsErr != nil {
			lf.symsErr = fmt.Errorf("symbols of %s: %w", m.Path, lf.symsErr)
		} else {
			// The table holds what it needs; the running file's bytes are
			// read from lf.f, the debug file's sections are SHT_NOBITS.
			lf.symsFrom = fd.Path
			fd.Close()
			if fd.Source == debuginfo.SourceNone {
				// .dynsym only: the functions it does not name still
				// bound their neighbours' padding, which the redirect
				// planner must not take for free bytes (readSurroundings).
				lf.syms = lf.syms.WithBoundaries(lf.boundaries())
			}
		}
		lf.symsRead.Store(true)
	})
	return lf.symsErr
}

// lookup returns the defined symbols of module m named name (see
// elfsym.Table.Lookup). A library whose whole table has not been read is
// searched through its .dynsym hash table (elfsym.File.LookupDynamic): what
// the dynamic linker sees of it, its exported symbols, found in microseconds,
// where building the C library's whole table costs milliseconds. The
// executable and the patched module (read whole by findBuildID) are searched
// whole: a patch may use their non-exported globals and statics.
func (t *target) lookup(m *module, name string) ([]elfsym.Symbol, error) {
	if err := t.load(m); err != nil {
		return nil, err
	}
	if (!m.IsExe || t.onlyDynamic(m)) && !m.symsLoaded() {
		ss, ok, err := m.f.LookupDynamic(name)
		if err == nil {
			// Not exported is not there for anyone but the library itself:
			// the link editor makes every symbol a shared object does not
			// export (hidden, or local in a version script) STB_LOCAL in
			// its .symtab, so the whole table, which costs milliseconds
			// per library (findFrameFuncs asks every library for
			// __register_frame), would add only locals, which no caller
			// of lookup for another module may use.
			if !ok {
				return nil, nil
			}
			return ss, nil
		}
	}
	if err := t.loadSyms(m); err != nil {
		return nil, err
	}
	return m.syms.Lookup(name), nil
}

// onlyDynamic reports whether module m's whole symbol table would be its
// .dynsym and nothing more: a stripped file (no .symtab) for which the debug
// file search finds nothing. A stripped executable's exports (Debian's
// redis-server has 4,300) are then looked up through its hash table instead
// of building the table (milliseconds) to find one name (revert's
// __register_frame).
func (t *target) onlyDynamic(m *module) bool {
	lf := m.loadedFile
	lf.onlyDynOnce.Do(func() {
		if lf.f.HasSymtab() {
			return
		}
		fd, err := debuginfo.Find(m.Path, lf.f, debugSearch)
		if err != nil {
			return
		}
		lf.onlyDyn = fd.Source == debuginfo.SourceNone
		fd.Close()
	})
	return lf.onlyDyn
}

// symsLoaded reports whether the whole symbol table has been read.
func (l *loadedFile) symsLoaded() bool { return l.symsRead.Load() }

// findBuildID returns the module whose build-id is id.
func (t *target) findBuildID(id string) (*module, error) {
	var seen []string
	for _, m := range t.mods {
		if err := t.load(m); err != nil {
			continue
		}
		if m.buildID == id {
			if err := t.loadSyms(m); err != nil {
				return nil, err
			}
			return m, nil
		}
		if m.IsExe {
			seen = append(seen, fmt.Sprintf("%s (build-id %s)", m.Path, m.buildID))
		}
	}
	return nil, fmt.Errorf("%w: no file mapped by process %d has build-id %s (its executable is %s)",
		ErrNoTarget, t.pid, id, strings.Join(seen, ", "))
}

// resolver resolves the symbols of one patch object against the target.
type resolver struct {
	t       *target
	patched *module
	// located are the target symbols the build located by run-pre
	// matching (patchfile.Manifest.Symbols), for a patched file without
	// symbols of its own; checked before use (checkLocated).
	located []patchfile.Symbol
}

var _ linker.Resolver = (*resolver)(nil)

func (r *resolver) Resolve(ref linker.SymbolRef) (linker.Resolution, error) {
	name := ref.Name
	if ref.Defined {
		// A data object the patch defines: bind it to the target's existing
		// copy when the patched file has one, so the new code sees the live
		// value (a fresh copy would silently fork the program's state).
		s, ok, err := r.findLocalOrGlobal(name, ref.File, ref.Local, true)
		if err != nil {
			return linker.Resolution{}, err
		}
		if !ok {
			return r.locatedRes(ref, patchfile.SymbolVariable)
		}
		if s.Size != ref.Size {
			return linker.Resolution{}, fmt.Errorf("%w: variable %s is %d bytes in the patch but %d bytes in the running program: a live variable cannot change size",
				ErrResolve, name, ref.Size, s.Size)
		}
		if ref.TLS != (s.Type == elf.STT_TLS) {
			return linker.Resolution{}, fmt.Errorf("%w: variable %s is thread-local in one of the patch and the running program but not in the other", ErrResolve, name)
		}
		return r.resolution(r.patched, s)
	}
	// 1. A static of the patched file from the same source file.
	if ref.File != "" {
		if ss := r.patched.syms.LookupLocal(name, ref.File); len(ss) == 1 {
			return r.resolution(r.patched, ss[0])
		}
	}
	// A function or variable the build located in the patched file (no
	// symbol there).
	if res, err := r.locatedRes(ref, ""); err != nil || res.Found {
		return res, err
	}
	// 2. Globals: the executable first, then libraries in load order.
	for _, m := range r.t.mods {
		ss, err := r.t.lookup(m, name)
		if err != nil {
			continue
		}
		for _, s := range ss {
			if s.Bind == elf.STB_LOCAL || s.Section == elf.SHN_UNDEF {
				continue
			}
			return r.resolution(m, s)
		}
	}
	// 3. A static of the patched file whose name is unique.
	s, ok, err := r.findLocalOrGlobal(name, "", true, false)
	if err != nil {
		return linker.Resolution{}, err
	}
	if ok {
		return r.resolution(r.patched, s)
	}
	return linker.Resolution{}, nil
}

// locatedRes resolves ref to a located symbol of the given kind (any when
// kind is ""), if the manifest has one for its name and source file (Found
// false otherwise).
func (r *resolver) locatedRes(ref linker.SymbolRef, kind string) (linker.Resolution, error) {
	for _, s := range r.located {
		if s.Name != ref.Name || (kind != "" && s.Kind != kind) || (s.File != "" && s.File != ref.File) {
			continue
		}
		if ref.TLS {
			// A thread-local variable is reached through a TLS offset,
			// which a located address is not (the build locates none).
			return linker.Resolution{}, fmt.Errorf("%w: %s is thread-local in the patch, but the manifest locates it at an address (%#x)", ErrResolve, s.Name, s.Addr)
		}
		if err := checkLocated(r.patched, s); err != nil {
			return linker.Resolution{}, err
		}
		if kind == patchfile.SymbolVariable && s.Size != ref.Size {
			return linker.Resolution{}, fmt.Errorf("%w: variable %s is %d bytes in the patch but %d bytes as located in the running program", ErrResolve, s.Name, ref.Size, s.Size)
		}
		return linker.Resolution{Found: true, Addr: s.Addr + r.patched.Bias}, nil
	}
	return linker.Resolution{}, nil
}

// checkLocated verifies a located symbol against the patched file, as
// checkFunctions does for replaced functions (the manifest is the patch
// author's claim): a function must start at an .eh_frame function boundary
// of the file and lie within it, a variable within one allocated section.
// That it is the right function or variable is what the build's run-pre
// matching proved; apply's run-pre check proves the replaced functions'
// code again in the process.
func checkLocated(mod *module, s patchfile.Symbol) error {
	switch s.Kind {
	case patchfile.SymbolFunction:
		if !mod.fdeStarts(s.Addr, s.Size) {
			return fmt.Errorf("%w: located function %s: %#x (size %d) is not an .eh_frame function boundary of %s", ErrBadAddress, s.Name, s.Addr, s.Size, mod.Path)
		}
	default:
		end, ok := mod.f.SectionEnd(s.Addr)
		if !ok || s.Size > end-s.Addr {
			return fmt.Errorf("%w: located variable %s: [%#x, +%d) is not within one section of %s", ErrBadAddress, s.Name, s.Addr, s.Size, mod.Path)
		}
	}
	return nil
}

// fdeRanges returns the file's .eh_frame function boundaries, sorted, read
// once (none when .eh_frame does not parse: nothing is then accepted on its
// word).
func (l *loadedFile) fdeRanges() []unwind.Range {
	l.rangesOnce.Do(func() { l.ranges, _ = unwind.FunctionRanges(l.f.ELF()) })
	return l.ranges
}

// boundaries returns the file's .eh_frame function boundaries.
func (l *loadedFile) boundaries() [][2]uint64 {
	ranges := l.fdeRanges()
	out := make([][2]uint64, len(ranges))
	for i, r := range ranges {
		out[i] = [2]uint64{r.Begin, r.End}
	}
	return out
}

// fdeStarts reports whether an .eh_frame FDE of the file starts at addr and
// covers at least size bytes.
func (l *loadedFile) fdeStarts(addr, size uint64) bool {
	ranges := l.fdeRanges()
	i := sort.Search(len(ranges), func(i int) bool { return ranges[i].Begin >= addr })
	for ; i < len(ranges) && ranges[i].Begin == addr; i++ {
		if ranges[i].End-addr >= size {
			return true
		}
	}
	return false
}

// findLocalOrGlobal looks a name up in the patched module only.
func (r *resolver) findLocalOrGlobal(name, file string, local, wantData bool) (elfsym.Symbol, bool, error) {
	keep := func(ss []elfsym.Symbol) []elfsym.Symbol {
		var out []elfsym.Symbol
		for _, s := range ss {
			if s.Section == elf.SHN_UNDEF {
				continue
			}
			if wantData && s.Type != elf.STT_OBJECT && s.Type != elf.STT_TLS {
				continue
			}
			out = append(out, s)
		}
		return out
	}
	if local && file != "" {
		if ss := keep(r.patched.syms.LookupLocal(name, file)); len(ss) == 1 {
			return ss[0], true, nil
		}
	}
	var all []elfsym.Symbol
	for _, s := range keep(r.patched.syms.Lookup(name)) {
		if local || s.Bind != elf.STB_LOCAL {
			all = append(all, s)
		}
	}
	if !local {
		if len(all) > 0 {
			return all[0], true, nil
		}
		return elfsym.Symbol{}, false, nil
	}
	// Collapse the same symbol seen in .symtab and .dynsym.
	uniq := map[uint64]elfsym.Symbol{}
	for _, s := range all {
		uniq[s.Value] = s
	}
	switch len(uniq) {
	case 0:
		return elfsym.Symbol{}, false, nil
	case 1:
		return all[0], true, nil
	}
	var files []string
	for _, s := range all {
		files = append(files, filepath.Base(s.File))
	}
	return elfsym.Symbol{}, false, fmt.Errorf("%w: %s is defined in several source files of %s (%s): compile the patch from the file that defines the one you mean (its STT_FILE name decides)",
		ErrResolve, name, r.patched.Path, strings.Join(files, ", "))
}

func (r *resolver) resolution(m *module, s elfsym.Symbol) (linker.Resolution, error) {
	switch s.Type {
	case elf.STT_TLS:
		// Both ways to the variable, as far as the process tells: its
		// thread-pointer offset (initial/local-exec code) and its module id
		// (general/local-dynamic code through __tls_get_addr; st_value of a
		// TLS symbol is its offset in the module's block, gABI "Symbol
		// Values"). The linker refuses a relocation whose value is missing.
		res := linker.Resolution{Found: true, DTPOff: int64(s.Value)}
		off, err := r.t.tpoff(m, s)
		res.TPOff, res.NoTPOff = off, err != nil
		res.TLSModule = r.t.tlsModule(m, s.Name)
		if err != nil && res.TLSModule == 0 {
			return linker.Resolution{}, err
		}
		return res, nil
	case elf.STT_GNU_IFUNC:
		addr, err := r.t.ifunc(m, s)
		if err != nil {
			return linker.Resolution{}, err
		}
		return linker.Resolution{Found: true, Addr: addr}, nil
	}
	return linker.Resolution{Found: true, Addr: s.Value + m.Bias}, nil
}

// ifunc returns the implementation of a GNU indirect function that the target
// itself uses, never the resolver: calling the resolver's address would return
// a pointer instead of doing the work. The dynamic linker stored the chosen
// implementation in a GOT slot; find one:
//  1. a JUMP_SLOT/GLOB_DAT relocation for the name in any loaded module whose
//     slot is already bound (points outside that module's own PLT);
//  2. an R_X86_64_IRELATIVE relocation in the defining module whose addend is
//     the resolver (how a library calls its own IFUNCs);
//  3. a lazily bound slot of the executable: its PLT stub still reaches the
//     implementation through the dynamic linker.
func (t *target) ifunc(def *module, s elfsym.Symbol) (uint64, error) {
	readSlot := func(m *module, off uint64) (uint64, bool) {
		var b [8]byte
		if err := t.mem(off+m.Bias, b[:]); err != nil {
			return 0, false
		}
		v := uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
			uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
		return v, v != 0
	}
	var lazy uint64
	for _, m := range t.mods {
		if t.load(m) != nil {
			continue
		}
		rels, err := m.dynRelocs()
		if err != nil {
			continue
		}
		for _, rel := range rels {
			if t.arch.DynRelocKind(rel.Type) != arch.DynSlot || baseName(rel.Sym) != s.Name {
				continue
			}
			v, ok := readSlot(m, rel.Offset)
			if !ok {
				continue
			}
			if m.Contains(v) {
				if lazy == 0 && m.IsExe {
					lazy = v
				}
				continue
			}
			if def.Contains(v) {
				return v, nil
			}
		}
	}
	if rels, err := def.dynRelocs(); err == nil {
		for _, rel := range rels {
			if t.arch.DynRelocKind(rel.Type) == arch.DynIRelative && uint64(rel.Addend) == s.Value {
				if v, ok := readSlot(def, rel.Offset); ok && def.Contains(v) {
					return v, nil
				}
			}
		}
	}
	if lazy != 0 {
		return lazy, nil
	}
	return 0, fmt.Errorf("%w: %s is a GNU indirect function of %s and the process has not resolved it anywhere (no bound GOT slot): call it from the target first, or link the patch to a specific implementation",
		ErrResolve, s.Name, def.Path)
}

// tpoff returns the offset from the thread pointer of a thread-local
// variable (x86-64 TLS variant II: blocks lie below the thread pointer).
//   - In the executable, the static linker's rule applies: the executable's
//     block ends at the thread pointer, so tpoff = st_value - roundup(memsz, align)
//     (Drepper, "ELF Handling For Thread-Local Storage", §4.3).
//   - In a shared library the dynamic linker chose the block's place; learn it
//     from a bound R_X86_64_TPOFF64 GOT slot of that library, whose value is
//     block offset + symbol value + addend.
func (t *target) tpoff(m *module, s elfsym.Symbol) (int64, error) {
	if m.IsExe {
		memsz, align, ok := m.f.TLS()
		if !ok {
			return 0, fmt.Errorf("%w: %s: thread-local %s but no PT_TLS", ErrResolve, m.Path, s.Name)
		}
		if align == 0 {
			align = 1
		}
		size := (memsz + align - 1) / align * align
		return int64(s.Value) - int64(size), nil
	}
	rels, err := m.dynRelocs()
	if err == nil {
		for _, rel := range rels {
			if t.arch.DynRelocKind(rel.Type) != arch.DynTPOff {
				continue
			}
			var v [8]byte
			if t.mem(rel.Offset+m.Bias, v[:]) != nil {
				continue
			}
			got := int64(uint64(v[0]) | uint64(v[1])<<8 | uint64(v[2])<<16 | uint64(v[3])<<24 |
				uint64(v[4])<<32 | uint64(v[5])<<40 | uint64(v[6])<<48 | uint64(v[7])<<56)
			var symVal uint64
			if rel.Sym != "" {
				ss, _ := t.lookup(m, baseName(rel.Sym))
				if len(ss) == 0 {
					continue
				}
				symVal = ss[0].Value
			}
			block := got - int64(symVal) - rel.Addend
			return block + int64(s.Value), nil
		}
	}
	return 0, fmt.Errorf("%w: thread-local %s of %s: the library has no initial-exec TLS slot to learn its TLS offset from", ErrResolve, s.Name, m.Path)
}

// tlsModule returns the TLS module id the dynamic linker gave module m, the
// module that defines thread-local name, 0 when no slot tells. It reads an
// R_X86_64_DTPMOD64 GOT slot (filled at load time, never lazily: glibc
// elf/dynamic-link.h): one of m's own, for m itself (local dynamic, no
// symbol) or for a variable m defines; or one of another module's for name,
// which the dynamic linker bound to m's definition (the resolver chose m by
// the same search order). Slots of m's for another module's variable hold
// that module's id and are skipped.
func (t *target) tlsModule(m *module, name string) uint64 {
	for _, mm := range t.mods {
		if t.load(mm) != nil {
			continue
		}
		rels, err := mm.dynRelocs()
		if err != nil {
			continue
		}
		for _, rel := range rels {
			if t.arch.DynRelocKind(rel.Type) != arch.DynTPMod {
				continue
			}
			sym := baseName(rel.Sym)
			switch {
			case mm == m && sym == "":
			case mm == m && t.definesTLS(m, sym):
			case mm != m && sym == name:
			default:
				continue
			}
			var v [8]byte
			if t.mem(rel.Offset+mm.Bias, v[:]) != nil {
				continue
			}
			if id := binary.LittleEndian.Uint64(v[:]); id != 0 {
				return id
			}
		}
	}
	return 0
}

// definesTLS reports whether module m defines the thread-local variable name.
func (t *target) definesTLS(m *module, name string) bool {
	ss, _ := t.lookup(m, name)
	for _, s := range ss {
		if s.Section != elf.SHN_UNDEF && s.Type == elf.STT_TLS {
			return true
		}
	}
	return false
}

func baseName(sym string) string {
	if i := strings.IndexByte(sym, '@'); i >= 0 {
		return sym[:i]
	}
	return sym
}
