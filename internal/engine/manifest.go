package engine

import (
	"fmt"
	"sort"

	"github.com/hotpatch/hotpatch/internal/arch"
	"github.com/hotpatch/hotpatch/internal/elfsym"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/record"
)

// maxBoundaryDecode bounds the bytes decoded from an enclosing function's
// start to prove an address is an instruction boundary.
const maxBoundaryDecode = 1 << 20

// checkFunctions verifies every address the manifest gives for a replaced
// function against the target file mod, before anything touches the
// process: a manifest is the patch author's claim (an unsigned patch's is
// anyone's), and a jump written at an address that is not a function's
// first instruction corrupts whatever instruction it lands in.
//
//   - the address is the value of a function symbol of mod, and the size
//     lies within that symbol's;
//   - it is an instruction boundary of every function symbol enclosing it
//     (decoded from that symbol's start, internal/arch), which catches a
//     symbol placed inside another function;
//   - no two functions overlap, except aliases: entries at one address,
//     which make one redirect (see dedupeAliases).
func checkFunctions(mod *module, a arch.Arch, fns []patchfile.Function) error {
	syms := mod.syms.Functions() // sorted by Value
	type span struct {
		lo, hi uint64
		name   string
	}
	var spans []span
	for _, f := range fns {
		if f.New {
			continue
		}
		if err := checkFunctionStart(mod, a, syms, f); err != nil {
			return err
		}
		spans = append(spans, span{f.Addr, f.Addr + f.Size, f.Name})
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].lo < spans[j].lo })
	for i := 1; i < len(spans); i++ {
		p, s := spans[i-1], spans[i]
		if s.lo != p.lo && s.lo < p.hi {
			return fmt.Errorf("%w: functions %s [%#x, %#x) and %s [%#x, %#x) overlap in the manifest", ErrBadAddress, p.name, p.lo, p.hi, s.name, s.lo, s.hi)
		}
	}
	return nil
}

func checkFunctionStart(mod *module, a arch.Arch, syms []elfsym.Symbol, f patchfile.Function) error {
	i := sort.Search(len(syms), func(i int) bool { return syms[i].Value >= f.Addr })
	starts := false
	for j := i; j < len(syms) && syms[j].Value == f.Addr; j++ {
		// An .eh_frame boundary standing in for a symbol of a stripped
		// file (elfsym.Symbol.Boundary) is not one: a function located
		// there must say how (f.Match) and carry its bytes, below.
		if syms[j].Defined() && !syms[j].Boundary && f.Size <= syms[j].Size {
			starts = true
		}
	}
	if !starts && f.Match != "" && len(f.Orig) > 0 && mod.fdeStarts(f.Addr, f.Size) {
		// Located by the build (run-pre matching, or the debug file this
		// host does not have): an .eh_frame function boundary, whose code
		// the run-pre check compares with f.Orig before anything is
		// written.
		starts = true
	}
	if !starts {
		what := "no function symbol starts there"
		if f.Match != "" {
			what = "neither a function symbol nor an .eh_frame function boundary starts there"
		}
		if s, ok := mod.syms.Containing(f.Addr); ok {
			what = fmt.Sprintf("it lies %#x bytes into %s", f.Addr-s.Value, s.Name)
			switch {
			case s.Value == f.Addr && s.Boundary:
				what = fmt.Sprintf("only an .eh_frame function boundary starts there, and the manifest does not say it located the function there (match) with its %d bytes", f.Size)
			case s.Value == f.Addr:
				what = fmt.Sprintf("%s starts there but is %d bytes, not %d", s.Name, s.Size, f.Size)
			}
		}
		return fmt.Errorf("%w: function %s: the manifest's address %#x (size %d) is not the start of a function of %s: %s",
			ErrBadAddress, f.Name, f.Addr, f.Size, mod.Path, what)
	}
	// Every function symbol enclosing the address must decode to an
	// instruction that starts exactly there.
	for j := i - 1; j >= 0; j-- {
		s := syms[j]
		if s.Value >= f.Addr || f.Addr-s.Value >= s.Size || !s.Defined() {
			continue
		}
		n := f.Addr - s.Value
		if n > maxBoundaryDecode {
			continue
		}
		code, err := mod.f.ReadVirt(s.Value, int(n))
		if err != nil {
			return fmt.Errorf("function %s: read %s at %#x: %w", f.Name, mod.Path, s.Value, err)
		}
		if _, err := a.Analyze(code, s.Value+mod.Bias); err != nil {
			return fmt.Errorf("%w: function %s: the manifest's address %#x is not an instruction boundary of %s (decoded from %#x: %v)",
				ErrBadAddress, f.Name, f.Addr, s.Name, s.Value, err)
		}
	}
	return nil
}

// alias is a manifest function at the address of an earlier one.
type alias struct {
	name string
	obj  int
}

// dedupeAliases drops the manifest functions at an address an earlier one
// already has (aliases: two names of one function), returning what it kept
// in order and, per kept index, the names it dropped. One address is one
// redirect: two would write two jumps over the same bytes, and the record of
// the first would no longer describe what is there. link checks that every
// alias has the same destination.
func dedupeAliases(fns []patchfile.Function) (kept []patchfile.Function, aliases map[int][]patchfile.Function) {
	at := map[uint64]int{}
	for _, f := range fns {
		if f.New {
			kept = append(kept, f)
			continue
		}
		if k, ok := at[f.Addr]; ok {
			if aliases == nil {
				aliases = map[int][]patchfile.Function{}
			}
			aliases[k] = append(aliases[k], f)
			continue
		}
		at[f.Addr] = len(kept)
		kept = append(kept, f)
	}
	return kept, aliases
}

// aliasNames returns the names of the other function symbols of mod that
// start where f does.
func aliasNames(mod *module, f patchfile.Function) []string {
	var out []string
	seen := map[string]bool{f.Name: true}
	for _, s := range mod.syms.Functions() {
		if s.Value == f.Addr && s.Defined() && !s.Boundary && !seen[s.Name] {
			seen[s.Name] = true
			out = append(out, s.Name)
		}
	}
	sort.Strings(out)
	return out
}

// checkWrites refuses redirects whose writes overlap: a jump that runs into
// the padding after its function must not meet the next function's entry or
// the long jump above it, or the second write would corrupt the first.
func checkWrites(rds []record.Redirect) error {
	type w struct {
		lo, hi uint64
		name   string
	}
	var ws []w
	for _, rd := range rds {
		ws = append(ws, w{rd.Addr, rd.Addr + uint64(len(rd.Jump)), rd.Func})
		if rd.Padded() {
			ws = append(ws, w{rd.PadAddr, rd.PadAddr + uint64(len(rd.PadJump)), rd.Func + " (padding)"})
		}
		if rd.HasSlot() {
			ws = append(ws, w{rd.SlotAddr, rd.SlotAddr + uint64(len(rd.SlotJump)), rd.Func + " (slot in padding)"})
		}
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].lo < ws[j].lo })
	for i := 1; i < len(ws); i++ {
		if ws[i].lo < ws[i-1].hi {
			return fmt.Errorf("%w: the jumps of %s [%#x, %#x) and %s [%#x, %#x) would overlap",
				ErrBadAddress, ws[i-1].name, ws[i-1].lo, ws[i-1].hi, ws[i].name, ws[i].lo, ws[i].hi)
		}
	}
	return nil
}
