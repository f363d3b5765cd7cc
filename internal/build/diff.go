package build

import (
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
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
	bid, syms, rep, man := tg.bid, tg.syms, tg.report(), tg.manifest(opt)
	var members []patchfile.NamedData
	h := sha256.New()
	h.Write(bid)
	names := map[string]bool{}
	for i, newPath := range opt.New {
		oldPath := opt.Old[i]
		oldData, err := os.ReadFile(oldPath)
		if err != nil {
			return nil, nil, fmt.Errorf("read old object: %w", err)
		}
		newData, err := os.ReadFile(newPath)
		if err != nil {
			return nil, nil, fmt.Errorf("read new object: %w", err)
		}
		for _, o := range []struct {
			path string
			data []byte
		}{{oldPath, oldData}, {newPath, newData}} {
			if err := checkLTOObject(o.path, o.data); err != nil && !opt.Linked {
				return nil, nil, err
			}
		}
		res, err := diff.Compare(oldData, newData)
		if err != nil {
			return nil, nil, fmt.Errorf("compare %s with %s: %w", oldPath, newPath, err)
		}
		_, member, err := tg.object(newPath, res.Object, names)
		if err != nil {
			return nil, nil, err
		}
		red, add := res.Redirected(), res.Added()
		if len(red) == 0 && len(add) == 0 {
			// Nothing of this file changes: report it, carry nothing.
			for _, f := range res.Funcs {
				if f.Status == diff.Unchanged && f.Part == "" {
					rep.Unchanged = append(rep.Unchanged, Func{Name: f.Name, Object: member, Size: f.Size})
				}
			}
			continue
		}
		if err := checkRunPre(tg, oldPath, oldData, res); err != nil {
			return nil, nil, err
		}
		members = append(members, patchfile.NamedData{Name: member, Kind: "object", Data: res.Object})
		h.Write(res.Object)
		mt := &match{t: tg, old: oldData}
		for _, f := range red {
			old, found, err := findFunc(syms, linker.ObjSymbol{Name: f.Name, Local: f.Local}, res.SourceFile)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", newPath, err)
			}
			spec := patchfile.Function{Name: f.Name, Object: member, Addr: old.Value, Size: old.Size, Orig: f.Orig, OrigMask: f.OrigMask}
			if old.Bind == elf.STB_LOCAL {
				spec.Local, spec.File = true, old.File
			}
			if found {
				spec.Match = tg.debugMatch(old, spec.Orig)
			} else {
				// No symbol: locate the function by its code.
				a, size, err := mt.function(f.Name)
				if err != nil {
					return nil, nil, fmt.Errorf("%w: %s changed in %s, but %s has no symbol for it and run-pre matching could not locate it: %w",
						ErrNotFound, f.Name, newPath, opt.Target, err)
				}
				spec.Addr, spec.Size, spec.Match = a, size, patchfile.MatchRunPre
				if f.Local {
					spec.Local, spec.File = true, res.SourceFile
				}
			}
			man.Functions = append(man.Functions, spec)
			rep.Replaced = append(rep.Replaced, Func{Name: f.Name, File: spec.File, Object: member, Addr: spec.Addr, Size: spec.Size, Match: spec.Match})
		}
		vars := map[string]diff.Data{}
		for _, d := range res.Data {
			if d.Kind == "variable" && d.Status != diff.New {
				vars[d.Name] = d
			}
		}
		if err := recordRefs(tg, mt, res.Object, res.SourceFile, vars, &man, rep); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", newPath, err)
		}
		for _, f := range add {
			man.Functions = append(man.Functions, patchfile.Function{Name: f.Name, Object: member, New: true})
			rep.Added = append(rep.Added, Func{Name: f.Name, Object: member, Size: f.Size})
		}
		for _, f := range res.Funcs {
			if f.Status == diff.Unchanged && f.Part == "" {
				rep.Unchanged = append(rep.Unchanged, Func{Name: f.Name, Object: member, Size: f.Size})
			}
		}
		for _, d := range res.Data {
			rep.Data = append(rep.Data, DataItem{Name: d.Name, Kind: d.Kind, Status: d.Status, Size: d.Size, Object: member})
		}
	}
	if len(man.Functions) == 0 {
		return nil, nil, fmt.Errorf("%w: no function differs between %v and %v: nothing to patch", ErrNotFound, opt.Old, opt.New)
	}
	if len(rep.Replaced) == 0 {
		return nil, nil, fmt.Errorf("%w: the fix only adds functions (%s) and changes no existing one, so nothing would ever call them",
			ErrNotFound, rep.Added[0].Name)
	}
	if err := mergeAliases(&man, rep, members); err != nil {
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
