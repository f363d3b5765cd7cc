package build

import (
	"bytes"
	"debug/elf"
	"fmt"
	"sort"

	"github.com/hotpatch/hotpatch/internal/diff"
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

// hasFunc reports whether the target has a symbol for function name (of
// source file file when it is local).
func (t *target) hasSymbol(name, file string, local, fn bool) bool {
	ss := t.syms.Lookup(name)
	if local && file != "" {
		ss = append(t.syms.LookupLocal(name, file), ss...)
	}
	for _, s := range ss {
		if s.Defined() && s.IsFunc() == fn && (local || s.Bind != elf.STB_LOCAL) {
			return true
		}
	}
	return false
}

// locateRefs adds to the manifest every target function and variable the
// patch object refers to that the target has no symbol for, located by
// run-pre matching, and refuses the patch when one cannot be located.
func locateRefs(t *target, mt *match, res *diff.Result, man *patchfile.Manifest, rep *Report) error {
	oldFuncs := map[string]bool{}
	if fs, _, err := diff.Functions(mt.old); err == nil {
		for _, f := range fs {
			oldFuncs[f.Name] = true
		}
	}
	refs, err := objectRefs(res.Object)
	if err != nil {
		return err
	}
	vars := map[string]diff.Data{}
	for _, d := range res.Data {
		if d.Kind == "variable" && d.Status != diff.New {
			vars[d.Name] = d
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
			rep.Located = append(rep.Located, Func{Name: s.Name, File: s.File, Addr: s.Addr, Size: s.Size})
		}
	}
	for _, r := range refs {
		file := ""
		if r.local {
			file = res.SourceFile
		}
		switch {
		case !r.defined && oldFuncs[r.name]:
			if t.hasSymbol(r.name, file, r.local, true) {
				continue
			}
			a, size, err := mt.function(r.name)
			if err != nil {
				return fmt.Errorf("%w: the patch calls %s, which the target has no symbol for: %w", ErrNotFound, r.name, err)
			}
			add(patchfile.Symbol{Name: r.name, File: file, Addr: a, Size: size, Kind: patchfile.SymbolFunction, Match: patchfile.MatchRunPre})
		case r.defined && vars[r.name].Name != "":
			if t.hasSymbol(r.name, file, r.local, false) {
				continue
			}
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
