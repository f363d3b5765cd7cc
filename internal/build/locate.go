package build

import (
	"bytes"
	"debug/elf"
	"fmt"
	"sort"

	"github.com/hotpatch/hotpatch/internal/diff"
	"github.com/hotpatch/hotpatch/internal/elfsym"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/runpre"
	"github.com/hotpatch/hotpatch/internal/unwind"
)

// Run-pre matching for targets without symbols (package runpre): in diff
// mode OLD.o says what every function's code is, so a function the target
// has no symbol for is located by its code, and the data the patch binds to
// through the references of the matched code.

// match is the run-pre matching of one OLD.o against the target, done on
// first need.
type match struct {
	t     *target
	old   []byte
	funcs []diff.Func
	m     *runpre.Match
	err   error
	done  bool
}

func (mt *match) get() (*runpre.Match, error) {
	if mt.done {
		return mt.m, mt.err
	}
	mt.done = true
	ranges, err := mt.t.functionRanges()
	if err != nil {
		mt.err = fmt.Errorf("run-pre matching: %w", err)
		return nil, mt.err
	}
	if mt.funcs, _, err = diff.Functions(mt.old); err != nil {
		mt.err = fmt.Errorf("run-pre matching: %w", err)
		return nil, mt.err
	}
	mt.m, mt.err = runpre.Locate(runpre.Target{File: mt.t.ef, Syms: mt.t.syms, Ranges: ranges, Arch: mt.t.arch}, mt.funcs)
	return mt.m, mt.err
}

// function locates a function of OLD.o: its address and size.
func (mt *match) function(name string) (uint64, uint64, error) {
	m, err := mt.get()
	if err != nil {
		return 0, 0, err
	}
	a, err := m.Func(name)
	if err != nil {
		return 0, 0, err
	}
	for _, f := range mt.funcs {
		if f.Name == name {
			return a, f.Size, nil
		}
	}
	return 0, 0, fmt.Errorf("%w: %s", runpre.ErrNoMatch, name)
}

// functionRanges returns the target's .eh_frame function boundaries.
func (t *target) functionRanges() ([]unwind.Range, error) {
	if t.ranges == nil {
		r, err := unwind.FunctionRanges(t.ef.ELF())
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", t.path, err)
		}
		if len(r) == 0 {
			return nil, fmt.Errorf("target %s has neither symbols nor .eh_frame function boundaries to match code against", t.path)
		}
		t.ranges = r
	}
	return t.ranges, nil
}

// hasSymbol reports whether the target has a symbol for name (a function
// when fn, else data; of source file file when it is local).
func (t *target) hasSymbol(name, file string, local, fn bool) bool {
	_, ok := lookupSym(t.syms, name, file, local, fn)
	return ok
}

// lookupSym finds the one defined symbol of table for name: a static of
// file when local (or a unique static), else a global; a function when fn,
// else a data object (thread-local ones excluded: they are reached through
// TLS offsets, not addresses).
func lookupSym(table *elfsym.Table, name, file string, local, fn bool) (elfsym.Symbol, bool) {
	if table == nil {
		return elfsym.Symbol{}, false
	}
	var ss []elfsym.Symbol
	if local && file != "" {
		ss = table.LookupLocal(name, file)
	}
	if len(ss) == 0 {
		ss = table.Lookup(name)
	}
	uniq := map[uint64]elfsym.Symbol{}
	// A global of the object may be a local of the target: the linker turns
	// hidden globals into locals (DW.ref.rust_eh_personality, zlib's
	// ZLIB_INTERNAL functions), and the engine resolves a name no global has
	// to the patched file's unique static of that name; so does this, when
	// no global has the name.
	for _, locals := range []bool{local, true} {
		for _, s := range ss {
			kindOK := s.IsFunc() == fn && (fn || s.Type == elf.STT_OBJECT)
			if s.Defined() && s.Value != 0 && kindOK && (locals || s.Bind != elf.STB_LOCAL) {
				uniq[s.Value] = s
			}
		}
		if len(uniq) > 0 {
			break
		}
	}
	if len(uniq) != 1 {
		return elfsym.Symbol{}, false
	}
	for _, s := range uniq {
		return s, true
	}
	return elfsym.Symbol{}, false
}

// debugMatch is the Match of a replaced function found through the
// target's debug file but not in the file's own symbols: the host that
// applies the patch may not have the debug file, so the manifest says where
// it is (and carries its bytes, which apply checks).
func (t *target) debugMatch(s elfsym.Symbol, orig []byte) string {
	if t.own == nil || uint64(len(orig)) != s.Size || s.Size == 0 {
		return ""
	}
	if o, ok := lookupSym(t.own, s.Name, s.File, s.Bind == elf.STB_LOCAL, true); ok && o.Value == s.Value {
		return ""
	}
	return patchfile.MatchDebugFile
}

// recordRefs adds to the manifest every target function and variable the
// patch object obj refers to (undefined symbols of its loaded sections,
// and the variables of the target it binds to: vars in diff mode, every
// data object it defines in by-name mode) that apply could not find in the
// file's own symbols: from the debug file when the build had one, else (diff
// mode, mt set) located by run-pre matching; in diff mode a function or
// variable of OLD.o that cannot be located is refused.
func recordRefs(t *target, mt *match, obj []byte, srcFile string, vars map[string]diff.Data, man *patchfile.Manifest, rep *Report) error {
	refs, err := objectRefs(obj)
	if err != nil {
		return err
	}
	oldFuncs := map[string]bool{}
	if mt != nil {
		if fs, _, err := diff.Functions(mt.old); err == nil {
			for _, f := range fs {
				oldFuncs[f.Name] = true
			}
		}
	}
	have := map[[2]string]bool{}
	for _, s := range man.Symbols {
		have[[2]string{s.Name, s.File}] = true
	}
	add := func(s patchfile.Symbol) {
		if !have[[2]string{s.Name, s.File}] {
			have[[2]string{s.Name, s.File}] = true
			man.Symbols = append(man.Symbols, s)
			rep.Located = append(rep.Located, Func{Name: s.Name, File: s.File, Addr: s.Addr, Size: s.Size, Match: s.Match})
		}
	}
	for _, r := range refs {
		file := ""
		if r.local {
			file = srcFile
		}
		if r.defined && vars != nil && vars[r.name].Name == "" {
			continue // diff mode: a new variable, or a constant, the patch's own
		}
		// What apply would find by itself needs no entry.
		if t.own == nil && t.hasSymbol(r.name, file, r.local, !r.defined) ||
			t.own != nil && hasAny(t.own, r.name, file, r.local, r.defined) {
			continue
		}
		if t.own != nil {
			if s, ok := debugSym(t.syms, r.name, file, r.local, r.defined); ok {
				kind := patchfile.SymbolVariable
				if s.IsFunc() {
					kind = patchfile.SymbolFunction
				}
				add(patchfile.Symbol{Name: r.name, File: file, Addr: s.Value, Size: s.Size, Kind: kind, Match: patchfile.MatchDebugFile})
				continue
			}
		}
		if mt == nil {
			continue
		}
		switch {
		case !r.defined && oldFuncs[r.name]:
			a, size, err := mt.function(r.name)
			if err != nil {
				return fmt.Errorf("%w: the patch calls %s, which the target has no symbol for: %w", ErrNotFound, r.name, err)
			}
			add(patchfile.Symbol{Name: r.name, File: file, Addr: a, Size: size, Kind: patchfile.SymbolFunction, Match: patchfile.MatchRunPre})
		case r.defined:
			m, err := mt.get()
			if err != nil {
				return fmt.Errorf("%w: variable %s: %w", ErrNotFound, r.name, err)
			}
			a, ok := m.Data[r.name]
			if !ok {
				return fmt.Errorf("%w: the patch uses the target's variable %s, which the target has no symbol for and no uniquely matched function of OLD.o refers to: give hotpatch the target's debug file (build --debug-file)", ErrNotFound, r.name)
			}
			add(patchfile.Symbol{Name: r.name, File: file, Addr: a, Size: vars[r.name].Size, Kind: patchfile.SymbolVariable, Match: patchfile.MatchRunPre})
		}
	}
	return nil
}

// hasAny reports whether table has name: data when wantData, else a
// function or data object.
func hasAny(table *elfsym.Table, name, file string, local, wantData bool) bool {
	if _, ok := lookupSym(table, name, file, local, false); ok {
		return true
	}
	_, ok := lookupSym(table, name, file, local, true)
	return ok && !wantData
}

// debugSym is hasAny's symbol in the debug file's table.
func debugSym(table *elfsym.Table, name, file string, local, wantData bool) (elfsym.Symbol, bool) {
	if s, ok := lookupSym(table, name, file, local, false); ok {
		return s, true
	}
	if wantData {
		return elfsym.Symbol{}, false
	}
	return lookupSym(table, name, file, local, true)
}

type objRef struct {
	name           string
	local, defined bool
}

// objectRefs returns the symbols the loaded sections of a patch object
// refer to (undefined ones: what the engine resolves in the target) and
// its defined data objects (which the engine binds to the target's
// copies), sorted by name.
func objectRefs(obj []byte) (out []objRef, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("patch object: malformed: %v", r)
		}
	}()
	f, err := elf.NewFile(bytes.NewReader(obj))
	if err != nil {
		return nil, fmt.Errorf("patch object: %w", err)
	}
	syms, err := f.Symbols()
	if err != nil {
		return nil, fmt.Errorf("patch object: %w", err)
	}
	seen := map[string]bool{}
	addSym := func(s elf.Symbol) {
		k := s.Name
		if k == "" || seen[k] {
			return
		}
		seen[k] = true
		out = append(out, objRef{name: s.Name, local: elf.ST_BIND(s.Info) == elf.STB_LOCAL, defined: s.Section != elf.SHN_UNDEF})
	}
	for _, s := range syms {
		if s.Section != elf.SHN_UNDEF && elf.ST_TYPE(s.Info) == elf.STT_OBJECT {
			addSym(s)
		}
	}
	for _, sec := range f.Sections {
		if sec.Type != elf.SHT_RELA || int(sec.Info) >= len(f.Sections) || f.Sections[sec.Info].Flags&elf.SHF_ALLOC == 0 {
			continue
		}
		data, err := sec.Data()
		if err != nil {
			return nil, fmt.Errorf("patch object: %s: %w", sec.Name, err)
		}
		for i := 0; i+24 <= len(data); i += 24 {
			idx := f.ByteOrder.Uint64(data[i+8:]) >> 32
			if idx == 0 || idx > uint64(len(syms)) {
				continue
			}
			if s := syms[idx-1]; s.Section == elf.SHN_UNDEF {
				addSym(s)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}
