package build

import (
	"debug/elf"
	"fmt"
	"strings"

	"github.com/hotpatch/hotpatch/internal/arch"
	"github.com/hotpatch/hotpatch/internal/debuginfo"
	"github.com/hotpatch/hotpatch/internal/elfsym"
)

// checkIPARA refuses a patch that GCC's interprocedural register allocation
// (-fipa-ra, on at -O2 and above) would make unsafe.
//
// With -fipa-ra, when GCC compiles a caller after a callee of the same
// translation unit, it uses the set of registers that callee really clobbers
// and may keep live values in the other call-clobbered registers across the
// call. A replacement compiled separately knows nothing of that promise and
// may clobber them: the caller then computes with garbage. (kpatch requires
// -flive-patching=inline-clone, which implies -fno-ipa-ra, for this and
// related reasons.)
//
// A replaced function is safe when any of these holds:
//   - its compile unit's DW_AT_producer shows -fno-ipa-ra, -flive-patching or
//     an optimisation level below -O2;
//   - it makes a call (or tail call) through the PLT or through a pointer: GCC
//     then records the full ABI clobber set for it (collect_fn_hard_reg_usage
//     adds the call-clobbered registers of every call it cannot see into), so
//     no caller assumed anything;
//   - none of its direct callers is in its translation unit (known from the
//     DWARF compile units, or, without DWARF, from the STT_FILE grouping of
//     local symbols; a global caller of unknown origin counts as same-unit).
//
// Otherwise the patch is refused with the callers named and the fix given.
//
// Callers are looked for among all functions of the target: its function
// symbols and, for a target whose symbols are only the exported ones
// (stripped, no debug file), its .eh_frame function boundaries too, so
// that static callers are seen. A target with neither cannot be checked:
// the patch is refused unless force gives the reason to go ahead (see
// callerFuncs).
func checkIPARA(t *target, replaced []Func, force string) (forced string, err error) {
	cus, _ := t.dwarf().CompileUnits()
	c := &iparaCheck{cus: cus, ef: t.ef}
	funcs, checkable := callerFuncs(t, t.syms)
	if !checkable {
		return c.uncheckable(t, replaced, force)
	}
	c.decodeAll(t, funcs)
	for _, r := range replaced {
		if err := c.check(r); err != nil {
			return "", err
		}
	}
	return "", nil
}

// iparaCheck is what checkIPARA knows of the target: its file (for its
// PLT), its compile units and every function decoded.
type iparaCheck struct {
	ef  *elfsym.File
	cus []elfsym.CompileUnit
	all []decodedFunc
}

// decodedFunc is one function of the target with its calls.
type decodedFunc struct {
	sym  elfsym.Symbol
	info arch.FuncInfo
}

// cuOf returns the index of the compile unit whose ranges hold addr, -1 if none.
func (c *iparaCheck) cuOf(addr uint64) int {
	for i, cu := range c.cus {
		for _, r := range cu.Ranges {
			if addr >= r[0] && addr < r[1] {
				return i
			}
		}
	}
	return -1
}

// safe reports whether the compile unit of the function at addr was built
// with -fipa-ra off.
func (c *iparaCheck) safe(addr uint64) bool {
	cu := c.cuOf(addr)
	return cu >= 0 && safeProducer(c.cus[cu].Producer)
}

// uncheckable decides for a target whose callers cannot be seen: only
// functions of safely built compile units pass, the others need force.
func (c *iparaCheck) uncheckable(t *target, replaced []Func, force string) (forced string, err error) {
	var unsafe []string
	for _, r := range replaced {
		if !c.safe(r.Addr) {
			unsafe = append(unsafe, r.Name)
		}
	}
	if len(unsafe) == 0 {
		return "", nil
	}
	if force == "" {
		return "", fmt.Errorf("%w: could not check the -fipa-ra hazard for %s: %s has only its exported symbols (stripped, no debug file found) and no .eh_frame function boundaries, so callers of %s in its own translation unit cannot be seen. Give hotpatch the debug file (--debug-file), or pass --force REASON if you know the target was built with -fno-ipa-ra or -flive-patching",
			ErrUnsafeTarget, strings.Join(unsafe, ", "), t.path, strings.Join(unsafe, ", "))
	}
	return force, nil
}

// decodeAll decodes every function once (the first of the symbols at one
// address); what cannot be read or decoded is left out.
func (c *iparaCheck) decodeAll(t *target, funcs []elfsym.Symbol) {
	seen := map[uint64]bool{}
	for _, s := range funcs {
		if seen[s.Value] || s.Size == 0 {
			continue
		}
		seen[s.Value] = true
		code, err := t.ef.ReadVirt(s.Value, int(s.Size))
		if err != nil {
			continue
		}
		info, err := t.arch.Analyze(code, s.Value)
		if err != nil {
			continue
		}
		c.all = append(c.all, decodedFunc{s, info})
	}
}

// check refuses the replaced function r if it is unsafe: built with
// -fipa-ra, no opaque call, and direct callers in its translation unit.
func (c *iparaCheck) check(r Func) error {
	if c.safe(r.Addr) {
		return nil
	}
	var self *decodedFunc
	for i := range c.all {
		if c.all[i].sym.Value == r.Addr {
			self = &c.all[i]
		}
	}
	if self == nil {
		return fmt.Errorf("%w: cannot decode %s to check its callers", ErrUnsafeTarget, r.Name)
	}
	if c.opaque(self) {
		return nil
	}
	if bad := c.sameUnitCallers(r); len(bad) > 0 {
		return fmt.Errorf("%w: %s is called directly by %s in its own translation unit, and the target was built with GCC's interprocedural register allocation (-fipa-ra, the -O2 default): those callers may keep values in registers the old %s never touched, which a separately compiled replacement may clobber. Rebuild the target with -flive-patching=inline-clone (or at least -fno-ipa-ra), and keep -g so hotpatch can see the flags in DW_AT_producer",
			ErrUnsafeTarget, r.Name, strings.Join(bad, ", "), r.Name)
	}
	return nil
}

// opaque reports whether f makes a call or tail call through a pointer or
// the PLT, for which GCC records the full ABI clobber set.
func (c *iparaCheck) opaque(f *decodedFunc) bool {
	if f.info.IndirectCalls > 0 {
		return true
	}
	for _, a := range append(append([]uint64(nil), f.info.Calls...), f.info.TailJumps...) {
		if c.ef.InPLT(a) {
			return true
		}
	}
	return false
}

// sameUnitCallers names the functions that call r directly from r's
// translation unit: by compile unit, else by the STT_FILE of local symbols;
// a caller of unknown origin counts as same-unit.
func (c *iparaCheck) sameUnitCallers(r Func) []string {
	cu := c.cuOf(r.Addr)
	var bad []string
	for _, d := range c.all {
		calls := false
		for _, a := range d.info.Calls {
			if a == r.Addr {
				calls = true
			}
		}
		if !calls || d.sym.Value == r.Addr {
			continue
		}
		same := true
		switch {
		case cu >= 0:
			same = c.cuOf(d.sym.Value) == cu
		case r.File != "" && d.sym.Bind == elf.STB_LOCAL && d.sym.File != "":
			same = d.sym.File == r.File
		}
		if same {
			name := d.sym.Name
			if d.sym.Boundary {
				name = fmt.Sprintf("the function at %#x", d.sym.Value)
			}
			bad = append(bad, name)
		}
	}
	return bad
}

// callerFuncs returns every function of the target that may call a
// replaced one, and whether that is all of them. With a .symtab (the
// file's or its debug file's) the function symbols are; with the exported
// symbols only, the .eh_frame function boundaries that no symbol starts are
// added (elfsym.Table.WithBoundaries; GCC gives every function an FDE); with
// neither, the callers are unknown.
func callerFuncs(t *target, syms *elfsym.Table) ([]elfsym.Symbol, bool) {
	funcs := syms.Functions()
	if t.dbg == nil || t.dbg.Source != debuginfo.SourceNone {
		return funcs, true
	}
	ranges, err := t.functionRanges()
	if err != nil || len(ranges) == 0 {
		return funcs, false
	}
	bounds := make([][2]uint64, len(ranges))
	for i, r := range ranges {
		bounds[i] = [2]uint64{r.Begin, r.End}
	}
	return syms.WithBoundaries(bounds).Functions(), true
}

// safeProducer reports whether a DW_AT_producer string shows a build where
// -fipa-ra is off.
func safeProducer(p string) bool {
	level := "-O0"
	ipara := true
	for _, f := range strings.Fields(p) {
		switch {
		case strings.HasPrefix(f, "-O"):
			level = f
		case f == "-fno-ipa-ra", strings.HasPrefix(f, "-flive-patching"):
			ipara = false
		case f == "-fipa-ra":
			ipara = true
		}
	}
	if !ipara {
		return true
	}
	switch level {
	case "-O0", "-O1", "-O", "-Og":
		return true
	}
	return false
}
