package build

import (
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"hash"
	"os"

	"github.com/hotpatch/hotpatch/internal/diff"
	"github.com/hotpatch/hotpatch/internal/linker"
	"github.com/hotpatch/hotpatch/internal/patchfile"
)

// DataItem is one data object or string literal in a diff-mode report.
type DataItem struct {
	Name   string      `json:"name"`
	Kind   string      `json:"kind"` // variable, constant or string
	Status diff.Status `json:"status"`
	Size   uint64      `json:"size"`
	Object string      `json:"object"`
}

// Build builds a patch: in diff mode when opt.Old is set, by name otherwise.
func Build(opt Options) (*patchfile.Patch, *Report, error) {
	if len(opt.Old) > 0 {
		return Diff(opt)
	}
	return ByName(opt)
}

// Diff builds a patch from the fix itself: opt.Old[i] and opt.New[i] are the
// same translation unit compiled (with the target's compiler and flags plus
// -ffunction-sections -fdata-sections) before and after the fix. Only the
// functions whose code or relocations differ go into the patch (see package
// diff); unchanged functions and existing variables stay the target's. Every
// replaced function carries OLD.o's bytes, relocated fields masked, for the
// engine's run-pre check.
//
// Unlike by-name mode, no -fipa-ra check is needed: a caller in the same file
// that relied on the old callee's register usage is recompiled in NEW.o
// against the new callee, so its code changes and it is patched too; a
// caller whose code is unchanged made the same assumptions about the new
// callee. (Callers in other files cannot see the callee's register usage
// without LTO.)
func Diff(opt Options) (*patchfile.Patch, *Report, error) {
	if len(opt.Old) != len(opt.New) {
		return nil, nil, fmt.Errorf("diff mode needs one old object per new object: %d --old, %d --new", len(opt.Old), len(opt.New))
	}
	tg, err := openTarget(opt)
	if err != nil {
		return nil, nil, err
	}
	defer tg.close()
	if !opt.Linked {
		if err := tg.checkLTO(); err != nil {
			return nil, nil, err
		}
	}
	b := &diffBuild{opt: opt, tg: tg, rep: tg.report(), man: tg.manifest(opt), h: sha256.New(), names: map[string]bool{}}
	b.h.Write(tg.bid)
	for i, newPath := range opt.New {
		if err := b.pair(opt.Old[i], newPath); err != nil {
			return nil, nil, err
		}
	}
	return b.finish()
}

// diffBuild is one diff-mode build: the patch as far as it is made.
type diffBuild struct {
	opt     Options
	tg      *target
	rep     *Report
	man     patchfile.Manifest
	members []patchfile.NamedData
	h       hash.Hash // of the target's build-id and the members: the default patch ID
	names   map[string]bool
}

// readPair reads OLD.o and NEW.o of one translation unit and, unless the
// build is of a linked file, refuses LTO objects.
func readPair(oldPath, newPath string, linked bool) (oldData, newData []byte, err error) {
	oldData, err = os.ReadFile(oldPath)
	if err != nil {
		return nil, nil, fmt.Errorf("read old object: %w", err)
	}
	newData, err = os.ReadFile(newPath)
	if err != nil {
		return nil, nil, fmt.Errorf("read new object: %w", err)
	}
	for _, o := range []struct {
		path string
		data []byte
	}{{oldPath, oldData}, {newPath, newData}} {
		if err := checkLTOObject(o.path, o.data); err != nil && !linked {
			return nil, nil, err
		}
	}
	return oldData, newData, nil
}

// pair compares one translation unit's OLD.o with its NEW.o and adds what
// changed to the patch.
func (b *diffBuild) pair(oldPath, newPath string) error {
	oldData, newData, err := readPair(oldPath, newPath, b.opt.Linked)
	if err != nil {
		return err
	}
	res, err := diff.Compare(oldData, newData)
	if err != nil {
		return fmt.Errorf("compare %s with %s: %w", oldPath, newPath, err)
	}
	_, member, err := b.tg.object(newPath, res.Object, b.names)
	if err != nil {
		return err
	}
	red, add := res.Redirected(), res.Added()
	if len(red) == 0 && len(add) == 0 {
		// Nothing of this file changes: report it, carry nothing.
		b.reportUnchanged(res, member)
		return nil
	}
	if err := checkRunPre(b.tg, oldPath, oldData, res); err != nil {
		return err
	}
	b.members = append(b.members, patchfile.NamedData{Name: member, Kind: "object", Data: res.Object})
	b.h.Write(res.Object)
	mt := &match{t: b.tg, old: oldData}
	for _, f := range red {
		spec, err := b.redirect(mt, f, res.SourceFile, member, newPath)
		if err != nil {
			return err
		}
		b.man.Functions = append(b.man.Functions, spec)
		b.rep.Replaced = append(b.rep.Replaced, Func{Name: f.Name, File: spec.File, Object: member, Addr: spec.Addr, Size: spec.Size, Match: spec.Match})
	}
	vars := map[string]diff.Data{}
	for _, d := range res.Data {
		if d.Kind == "variable" && d.Status != diff.New {
			vars[d.Name] = d
		}
	}
	if err := recordRefs(b.tg, mt, res.Object, res.SourceFile, vars, &b.man, b.rep); err != nil {
		return fmt.Errorf("%s: %w", newPath, err)
	}
	for _, f := range add {
		b.man.Functions = append(b.man.Functions, patchfile.Function{Name: f.Name, Object: member, New: true})
		b.rep.Added = append(b.rep.Added, Func{Name: f.Name, Object: member, Size: f.Size})
	}
	b.reportUnchanged(res, member)
	for _, d := range res.Data {
		b.rep.Data = append(b.rep.Data, DataItem{Name: d.Name, Kind: d.Kind, Status: d.Status, Size: d.Size, Object: member})
	}
	return nil
}

// reportUnchanged reports the unchanged functions (not split parts) of one
// member.
func (b *diffBuild) reportUnchanged(res *diff.Result, member string) {
	for _, f := range res.Funcs {
		if f.Status == diff.Unchanged && f.Part == "" {
			b.rep.Unchanged = append(b.rep.Unchanged, Func{Name: f.Name, Object: member, Size: f.Size})
		}
	}
}

// redirect finds the target's function that the changed function f replaces:
// by its symbol, or, without one, by run-pre matching of its code (mt).
func (b *diffBuild) redirect(mt *match, f diff.Func, srcFile, member, newPath string) (patchfile.Function, error) {
	old, found, err := FindFunc(b.tg.syms, linker.ObjSymbol{Name: f.Name, Local: f.Local}, srcFile)
	if err != nil {
		return patchfile.Function{}, fmt.Errorf("%s: %w", newPath, err)
	}
	spec := patchfile.Function{Name: f.Name, Object: member, Addr: old.Value, Size: old.Size, Orig: f.Orig, OrigMask: f.OrigMask}
	if old.Bind == elf.STB_LOCAL {
		spec.Local, spec.File = true, old.File
	}
	if found {
		spec.Match = b.tg.debugMatch(old, spec.Orig)
		return spec, nil
	}
	// No symbol: locate the function by its code.
	a, size, err := mt.function(f.Name)
	if err != nil {
		return patchfile.Function{}, fmt.Errorf("%w: %s changed in %s, but %s has no symbol for it and run-pre matching could not locate it: %w",
			ErrNotFound, f.Name, newPath, b.opt.Target, err)
	}
	spec.Addr, spec.Size, spec.Match = a, size, patchfile.MatchRunPre
	if f.Local {
		spec.Local, spec.File = true, srcFile
	}
	return spec, nil
}

// finish refuses a patch that would change nothing, merges aliases, names
// the patch and makes it.
func (b *diffBuild) finish() (*patchfile.Patch, *Report, error) {
	man, rep := &b.man, b.rep
	if len(man.Functions) == 0 {
		return nil, nil, fmt.Errorf("%w: no function differs between %v and %v: nothing to patch", ErrNotFound, b.opt.Old, b.opt.New)
	}
	if len(rep.Replaced) == 0 {
		return nil, nil, fmt.Errorf("%w: the fix only adds functions (%s) and changes no existing one, so nothing would ever call them",
			ErrNotFound, rep.Added[0].Name)
	}
	if err := mergeAliases(man, rep, b.members); err != nil {
		return nil, nil, err
	}
	man.ID = b.opt.ID
	if man.ID == "" {
		man.ID = "hp-" + hex.EncodeToString(b.h.Sum(nil))[:12]
	}
	rep.ID = man.ID
	p, err := patchfile.New(*man, b.members)
	if err != nil {
		return nil, nil, err
	}
	return p, rep, nil
}
