package build

import (
	"bytes"
	"debug/elf"
	"fmt"
	"sort"

	"github.com/hotpatch/hotpatch/internal/patchfile"
)

// mergeAliases makes one manifest function of the replaced functions that
// share an address in the target (aliases, `__attribute__((alias))`): one
// address takes one redirect, so two entries for it would write two jumps
// over the same bytes, and revert and status would believe the first.
//
// The merged functions must have one definition in the patch (the same
// section and offset of the same object): the patch then sends the address
// to one place whatever name a caller used. The name kept is the one whose
// section is named after it (`.text.impl` for impl with
// -ffunction-sections), else the first by name; the others are listed in
// the build report's Aliases (the manifest has no field for them: apply
// finds a function's other names in the target's symbols). A patch that gives them different code is refused: a redirect
// can send the address to only one of them.
func mergeAliases(man *patchfile.Manifest, rep *Report, members []patchfile.NamedData) error {
	byAddr := map[uint64][]int{}
	for i, f := range man.Functions {
		if !f.New {
			byAddr[f.Addr] = append(byAddr[f.Addr], i)
		}
	}
	drop := map[int]bool{}
	aliasOf := map[int][]string{} // kept index -> the other names
	for addr, idx := range byAddr {
		if len(idx) < 2 {
			continue
		}
		keep, err := chooseAlias(man.Functions, idx, members)
		if err != nil {
			return fmt.Errorf("%w: at %#x: %v", ErrUnsafeTarget, addr, err)
		}
		for _, i := range idx {
			if i != keep {
				drop[i] = true
				aliasOf[keep] = append(aliasOf[keep], man.Functions[i].Name)
			}
		}
		sort.Strings(aliasOf[keep])
	}
	if len(drop) == 0 {
		return nil
	}
	var fns []patchfile.Function
	kept := map[uint64]int{}
	for i, f := range man.Functions {
		if !drop[i] {
			if !f.New {
				kept[f.Addr] = i
			}
			fns = append(fns, f)
		}
	}
	var replaced []Func
	seen := map[uint64]bool{}
	for _, f := range rep.Replaced {
		if seen[f.Addr] {
			continue
		}
		seen[f.Addr] = true
		if i, ok := kept[f.Addr]; ok && len(aliasOf[i]) > 0 {
			k := man.Functions[i]
			f.Name, f.File, f.Object, f.Aliases = k.Name, k.File, k.Object, aliasOf[i]
		}
		replaced = append(replaced, f)
	}
	man.Functions = fns
	rep.Replaced = replaced
	return nil
}

// chooseAlias returns the index (into fns) of the name to keep among idx,
// after checking they all have one definition in the patch.
func chooseAlias(fns []patchfile.Function, idx []int, members []patchfile.NamedData) (int, error) {
	type def struct {
		object  string
		section elf.SectionIndex
		value   uint64
		secName string
	}
	defs := make([]def, len(idx))
	for k, i := range idx {
		f := fns[i]
		d, err := objectDef(members, f.Object, f.Name)
		if err != nil {
			return 0, err
		}
		defs[k] = def{f.Object, d.Section, d.Value, d.secName}
		if k > 0 && (defs[k].object != defs[0].object || defs[k].section != defs[0].section || defs[k].value != defs[0].value) {
			return 0, fmt.Errorf("%s and %s are one function of the target (aliases at one address), but the patch gives them different code: "+
				"a redirect can send that address to only one of them; define %s as an alias of %s in the fix too (__attribute__((alias)))",
				fns[idx[0]].Name, f.Name, f.Name, fns[idx[0]].Name)
		}
	}
	best := -1
	for k, i := range idx {
		if defs[k].secName == ".text."+fns[i].Name {
			best = i
			break
		}
	}
	if best < 0 {
		best = idx[0]
		for _, i := range idx {
			if fns[i].Name < fns[best].Name {
				best = i
			}
		}
	}
	return best, nil
}

type objDef struct {
	elf.Symbol
	secName string
}

// objectDef finds the defining symbol name in member object.
func objectDef(members []patchfile.NamedData, object, name string) (objDef, error) {
	for _, m := range members {
		if m.Name != object {
			continue
		}
		ef, err := elf.NewFile(bytes.NewReader(m.Data))
		if err != nil {
			return objDef{}, fmt.Errorf("object %s: %w", object, err)
		}
		syms, err := ef.Symbols()
		if err != nil {
			return objDef{}, fmt.Errorf("object %s: %w", object, err)
		}
		for _, s := range syms {
			if s.Name == name && s.Section != elf.SHN_UNDEF && elf.ST_TYPE(s.Info) == elf.STT_FUNC {
				d := objDef{Symbol: s}
				if int(s.Section) < len(ef.Sections) {
					d.secName = ef.Sections[s.Section].Name
				}
				return d, nil
			}
		}
		return objDef{}, fmt.Errorf("object %s does not define %s", object, name)
	}
	return objDef{}, fmt.Errorf("no member %s", object)
}
