// Package build makes patch files.
//
// By-name mode (this file): every function defined in the new object(s)
// replaces the function of the same name in the target file; functions the
// target does not have are added. Build checks, against the target file,
// everything that can be checked without a process: the functions exist, the
// target has a build-id, and redirecting a function cannot break callers that
// GCC optimised on the assumption that they call exactly the old code (see
// checkIPARA).
package build

import (
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hotpatch/hotpatch/internal/arch"
	_ "github.com/hotpatch/hotpatch/internal/arch/amd64" // register x86-64
	"github.com/hotpatch/hotpatch/internal/debuginfo"
	"github.com/hotpatch/hotpatch/internal/elfsym"
	"github.com/hotpatch/hotpatch/internal/linker"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/unwind"
)

// ErrUnsafeTarget: the target was built in a way that makes redirecting a
// function unsafe (see checkIPARA).
var ErrUnsafeTarget = errors.New("target not safe to patch")

// ErrNotFound: a function to replace is not in the target, or is ambiguous.
var ErrNotFound = errors.New("function not found in target")

// Options for a by-name build.
type Options struct {
	Target string   // executable or shared library
	New    []string // relocatable objects holding the new functions
	// Old, when set, selects diff mode (see Diff): Old[i] is the build of
	// New[i]'s translation unit before the fix.
	Old         []string
	ID          string // patch id; derived from the contents when empty
	Description string
	// Debug says where the target's separate debug file may be (File is
	// build --debug-file); the zero value searches the host the way gdb
	// does (internal/debuginfo).
	Debug debuginfo.Options
	// Force is the reason to build a by-name patch whose -fipa-ra hazard
	// could not be checked (a stripped target without .eh_frame); it is
	// recorded in the report (Report.Forced).
	Force string
	// Linked: the objects were made from linked outputs (build --src's
	// route for -flto builds), so an LTO target is what they are compared
	// with, not a reason to refuse.
	Linked bool
}

// Func is one function in the report.
type Func struct {
	Name string `json:"name"`
	// Aliases are the other names of the same function (same address in
	// the target) that the patch replaces with it.
	Aliases []string `json:"aliases,omitempty"`
	File    string   `json:"file,omitempty"`
	Object  string   `json:"object"`
	Addr    uint64   `json:"addr,omitempty"`
	Size    uint64   `json:"size,omitempty"`
	// Match is "run-pre" for a function the target has no symbol for,
	// located by its code (see locate.go).
	Match string `json:"match,omitempty"`
}

// Report says what a patch will do.
type Report struct {
	ID      string `json:"id"`
	Target  string `json:"target"`
	BuildID string `json:"build_id"`
	// Symbols is the file the target's symbols were read from and
	// SymbolsSource how it was found (internal/debuginfo: "file",
	// "build-id", "debuglink", "debuginfod", "explicit", or "none" for
	// .dynsym only).
	Symbols       string `json:"symbols_from"`
	SymbolsSource string `json:"symbols_source"`
	Replaced      []Func `json:"replaced"`
	Added         []Func `json:"added"`
	// Diff mode only: functions left to the target, and the data objects and
	// string literals of the objects with their status.
	Unchanged []Func     `json:"unchanged,omitempty"`
	Data      []DataItem `json:"data,omitempty"`
	// Located: target functions and variables the patch refers to that the
	// target has no symbol for, located by run-pre matching.
	Located []Func `json:"located,omitempty"`
	// Forced is the reason given (build --force) for building although
	// the -fipa-ra hazard could not be checked.
	Forced string `json:"forced,omitempty"`
}

// ByName builds a patch in by-name mode.
func ByName(opt Options) (*patchfile.Patch, *Report, error) {
	tg, err := openTarget(opt)
	if err != nil {
		return nil, nil, err
	}
	defer tg.close()
	if err := tg.checkLTO(); err != nil {
		return nil, nil, err
	}
	ef, bid, syms, rep, man := tg.ef, tg.bid, tg.syms, tg.report(), tg.manifest(opt)
	var members []patchfile.NamedData
	h := sha256.New()
	h.Write(bid)
	names := map[string]bool{}
	for _, objPath := range opt.New {
		data, err := os.ReadFile(objPath)
		if err != nil {
			return nil, nil, fmt.Errorf("read object: %w", err)
		}
		if err := checkLTOObject(objPath, data); err != nil {
			return nil, nil, err
		}
		o, member, err := tg.object(objPath, data, names)
		if err != nil {
			return nil, nil, err
		}
		members = append(members, patchfile.NamedData{Name: member, Kind: "object", Data: data})
		h.Write(data)
		for _, fn := range o.Functions() {
			old, found, err := FindFunc(syms, fn, o.SourceFile())
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", objPath, err)
			}
			spec := patchfile.Function{Name: fn.Name, Object: member}
			if !found {
				spec.New = true
				man.Functions = append(man.Functions, spec)
				rep.Added = append(rep.Added, Func{Name: fn.Name, Object: member})
				continue
			}
			spec.Addr, spec.Size = old.Value, old.Size
			if old.Bind == elf.STB_LOCAL {
				spec.Local, spec.File = true, old.File
			}
			if code, err := ef.ReadVirt(old.Value, int(old.Size)); err == nil {
				spec.Orig = code
			}
			spec.Match = tg.debugMatch(old, spec.Orig)
			man.Functions = append(man.Functions, spec)
			rep.Replaced = append(rep.Replaced, Func{Name: fn.Name, File: spec.File, Object: member, Addr: old.Value, Size: old.Size, Match: spec.Match})
		}
		if err := recordRefs(tg, nil, data, o.SourceFile(), nil, &man, rep); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", objPath, err)
		}
	}
	if len(rep.Replaced) == 0 {
		return nil, nil, fmt.Errorf("%w: no function of %s is defined in %s", ErrNotFound, strings.Join(opt.New, ", "), opt.Target)
	}
	if err := mergeAliases(&man, rep, members); err != nil {
		return nil, nil, err
	}
	if rep.Forced, err = checkIPARA(tg, rep.Replaced, opt.Force); err != nil {
		return nil, nil, err
	}
	man.ID = opt.ID
	if man.ID == "" {
		man.ID = "hp-" + hex.EncodeToString(h.Sum(nil))[:12]
	}
	rep.ID = man.ID
	p, err := patchfile.New(man, members)
	if err != nil {
		return nil, nil, err
	}
	return p, rep, nil
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// FindFunc finds the target's function that fn replaces (or, for build --src,
// the one an object's function was linked into): a static of srcFile by
// name, else a global; ok false when there is none, an error when several
// addresses or a symbol without a size leave it unknown.
func FindFunc(syms *elfsym.Table, fn linker.ObjSymbol, srcFile string) (elfsym.Symbol, bool, error) {
	isFunc := func(s elfsym.Symbol) bool {
		return (s.Type == elf.STT_FUNC || s.Type == elf.STT_GNU_IFUNC) && s.Section != elf.SHN_UNDEF && s.Value != 0
	}
	var cands []elfsym.Symbol
	if fn.Local && srcFile != "" {
		for _, s := range syms.LookupLocal(fn.Name, srcFile) {
			if isFunc(s) {
				cands = append(cands, s)
			}
		}
	}
	if len(cands) == 0 {
		for _, s := range syms.Lookup(fn.Name) {
			if isFunc(s) {
				cands = append(cands, s)
			}
		}
	}
	uniq := map[uint64]elfsym.Symbol{}
	for _, s := range cands {
		if old, ok := uniq[s.Value]; !ok || (old.Bind == elf.STB_LOCAL && s.Bind != elf.STB_LOCAL) {
			uniq[s.Value] = s
		}
	}
	switch len(uniq) {
	case 0:
		return elfsym.Symbol{}, false, nil
	case 1:
		for _, s := range uniq {
			if s.Size == 0 {
				return s, false, fmt.Errorf("%w: %s has no size in the target's symbol table", ErrNotFound, fn.Name)
			}
			return s, true, nil
		}
	}
	var where []string
	for _, s := range uniq {
		where = append(where, fmt.Sprintf("%#x (%s)", s.Value, filepath.Base(s.File)))
	}
	sort.Strings(where)
	return elfsym.Symbol{}, false, fmt.Errorf("%w: %s is ambiguous in the target: %s; compile the new code from the source file that defines the one you mean",
		ErrNotFound, fn.Name, strings.Join(where, ", "))
}

// target is the file a patch is built for, parsed.
type target struct {
	path string
	fh   *os.File
	ef   *elfsym.File
	bid  []byte
	syms *elfsym.Table
	arch arch.Arch
	// dbg is where the symbols came from (internal/debuginfo).
	dbg *debuginfo.Found
	// ranges are the .eh_frame function boundaries, read on first need
	// (functionRanges).
	ranges []unwind.Range
	// own is the file's own symbol table when syms came from a debug
	// file: what apply sees on a host without the debug file.
	own *elfsym.Table
}

// openTarget opens and checks the target file of a build: it must be an ELF
// file of a known architecture with a build-id (how patches find processes).
func openTarget(opt Options) (*target, error) {
	fh, err := os.Open(opt.Target)
	if err != nil {
		return nil, fmt.Errorf("open target: %w", err)
	}
	t := &target{path: opt.Target, fh: fh}
	fail := func(err error) (*target, error) { fh.Close(); return nil, err }
	if t.ef, err = elfsym.Open(fh); err != nil {
		return fail(fmt.Errorf("target %s: %w", opt.Target, err))
	}
	if t.bid, err = t.ef.BuildID(); err != nil {
		return fail(fmt.Errorf("target %s: %w (link it with -Wl,--build-id so patches can be matched to processes)", opt.Target, err))
	}
	if t.syms, t.dbg, err = debuginfo.Symbols(opt.Target, t.ef, opt.Debug); err != nil {
		return fail(fmt.Errorf("target %s: %w", opt.Target, err))
	}
	if t.dbg.Debug != nil {
		if t.own, err = t.ef.Symbols(); err != nil {
			return fail(fmt.Errorf("target %s: %w", opt.Target, err))
		}
	}
	if t.arch, err = arch.ForMachine(t.ef.Machine()); err != nil {
		return fail(fmt.Errorf("target %s: %w", opt.Target, err))
	}
	return t, nil
}

func (t *target) close() {
	t.dbg.Close()
	t.fh.Close()
}

// dwarf is the file holding the target's DWARF: its debug file when the
// symbols came from one.
func (t *target) dwarf() *elfsym.File {
	if t.dbg != nil && t.dbg.Debug != nil {
		return t.dbg.Debug
	}
	return t.ef
}

func (t *target) report() *Report {
	return &Report{Target: t.path, BuildID: hex.EncodeToString(t.bid), Symbols: t.dbg.Path, SymbolsSource: string(t.dbg.Source)}
}

func (t *target) manifest(opt Options) patchfile.Manifest {
	return patchfile.Manifest{Description: opt.Description,
		Target: patchfile.Target{Path: absPath(t.path), BuildID: hex.EncodeToString(t.bid), Machine: t.arch.Name()}}
}

// object parses a patch object for this target and names its member in the
// patch (its base name, made unique among names).
func (t *target) object(path string, data []byte, names map[string]bool) (*linker.Object, string, error) {
	o, err := linker.ParseObject(data)
	if err != nil {
		return nil, "", fmt.Errorf("object %s: %w", path, err)
	}
	if o.Arch().Machine() != t.arch.Machine() {
		return nil, "", fmt.Errorf("object %s is for %s but %s is %s", path, o.Arch().Name(), t.path, t.arch.Name())
	}
	member := filepath.Base(path)
	for i := 2; names[member]; i++ {
		member = fmt.Sprintf("%d-%s", i, filepath.Base(path))
	}
	names[member] = true
	return o, member, nil
}
