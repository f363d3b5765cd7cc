package srcbuild

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hotpatch/hotpatch/internal/diff"
	"github.com/hotpatch/hotpatch/internal/unlink"
)

// The linked-output route, for builds with link-time optimisation: their
// objects hold GCC's IR and no machine code, so the code is compared where
// it exists, in the linked outputs of the two builds. The shim links with
// -Wl,--emit-relocs, so each output keeps its relocations; package unlink
// turns an output back into one relocatable object (a section per function
// and data object, relocations against symbols, the linker's relaxations
// honoured as the linker emitted them), which the object comparison and the
// patch linker take like any compiler's object.
//
// Two comparisons are made. The first, of the whole outputs, finds every
// function whose code differs: the fixed functions, and also every caller
// whose code the compiler changed because of them (inlined, cloned, or
// register-allocated against the new callee's clobbers under -fipa-ra); so a
// caller that depended on the old callee is patched too, and a caller whose
// code is the same made the same assumptions about the new callee. The
// second compares objects restricted to those functions and the data they
// reach (the rest become references to the target's copies), and is what the
// patch carries: a patch holds the changed code, not the program.

// linkedFull returns the linked output at path as one object.
func (r *run) linkedFull(path string) ([]object, error) {
	res, err := r.unlink(path, unlink.Options{})
	if err != nil {
		return nil, err
	}
	return []object{{name: r.out.rel + " (linked)", old: res.Object}}, nil
}

func (r *run) unlink(path string, opt unlink.Options) (*unlink.Result, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	opt.Name = filepath.Base(r.out.rel)
	res, err := unlink.Object(data, opt)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: its objects are LTO bytecode (-flto), so its linked code is compared, and that needs the relocations the linker keeps with -Wl,--emit-relocs, which hotpatch's shim adds when the build links through the compiler: %w",
			ErrLTO, path, err)
	}
	return res, nil
}

// linkedChanged compares the two linked outputs and returns the pair of
// restricted objects the patch is made from.
func (r *run) linkedChanged() ([]object, error) {
	fixed, err := r.unlink(r.out.fixed, unlink.Options{})
	if err != nil {
		return nil, err
	}
	full, err := diff.Compare(r.origFull, fixed.Object)
	if err != nil {
		return nil, fmt.Errorf("compare the linked outputs %s: %w", r.out.rel, err)
	}
	funcs := map[string]bool{}
	for _, f := range full.Funcs {
		if f.Status == diff.Changed || f.Status == diff.New {
			funcs[f.Name] = true
			if f.NewName != "" {
				funcs[f.NewName] = true
			}
		}
	}
	name := r.out.rel + " (linked)"
	if len(funcs) == 0 {
		return []object{{name: name, old: r.origFull, new: r.origFull}}, nil
	}
	nr, err := r.unlink(r.out.fixed, unlink.Options{Funcs: funcs})
	if err != nil {
		return nil, err
	}
	var bad []string
	for fn, why := range nr.Unresolved {
		if funcs[fn] {
			bad = append(bad, fmt.Sprintf("%s (%s)", fn, why))
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return nil, fmt.Errorf("%w: in the fixed build's %s, the changed functions %s refer to what cannot be expressed in a patch", ErrLTO, r.out.rel, strings.Join(bad, "; "))
	}
	data := map[string]bool{}
	for _, d := range nr.Data {
		data[d] = true
	}
	or, err := r.unlink(r.out.orig, unlink.Options{Funcs: funcs, Data: data})
	if err != nil {
		return nil, err
	}
	return []object{{name: name, old: or.Object, new: nr.Object}}, nil
}
