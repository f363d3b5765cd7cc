package build

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hotpatch/hotpatch/internal/arch"
	"github.com/hotpatch/hotpatch/internal/debuginfo"
	"github.com/hotpatch/hotpatch/internal/diff"
	"github.com/hotpatch/hotpatch/internal/elfsym"
	"github.com/hotpatch/hotpatch/internal/linker"
)

// Build-time checks of the object modes against the target: that the
// target is not a link-time-optimised build (whose code no object compiled
// alone can match), and, in diff mode, the run-pre check of OLD.o against
// the target's file, done before any process is involved.

var (
	// ErrLTOTarget: the target was built with link-time optimisation.
	ErrLTOTarget = errors.New("target built with link-time optimisation")
	// ErrNotReproduced: OLD.o is not the code the target runs.
	ErrNotReproduced = errors.New("old object is not the target's code")
)

// srcHint is the way out of both refusals.
const srcHint = "build from the source tree instead: hotpatch build --src DIR --fix FIX.patch --target TARGET -o PATCH -- BUILD COMMAND " +
	"rebuilds it with the project's own flags, proves the rebuilt code is the target's and, for -flto builds, compares the linked outputs"

// checkLTO refuses a target whose DWARF producer says -flto (or is GCC's
// LTO front end, "GNU GIMPLE"), or whose symbols carry the names GCC gives
// statics promoted across LTO partitions (".lto_priv.").
func (t *target) checkLTO() error {
	why := ""
	if cus, err := t.dwarf().CompileUnits(); err == nil {
		for _, cu := range cus {
			if strings.HasPrefix(cu.Producer, "GNU GIMPLE") || strings.Contains(" "+cu.Producer+" ", " -flto") {
				why = fmt.Sprintf("its DWARF producer is %q", cu.Producer)
				break
			}
		}
	}
	for _, sec := range t.ef.ELF().Sections {
		if why == "" && strings.HasPrefix(sec.Name, ".gnu.lto_") {
			why = fmt.Sprintf("it has the LTO section %s", sec.Name)
		}
	}
	if why == "" {
		for _, s := range t.syms.All() {
			if strings.Contains(s.Name, ".lto_priv.") {
				why = fmt.Sprintf("its symbol %s is a static GCC renamed across LTO partitions", s.Name)
				break
			}
		}
	}
	if why == "" {
		return nil
	}
	return fmt.Errorf("%w: %s was built with -flto (%s): its code was generated at the link, across files, so no object compiled alone matches it and a function's callers in other files may depend on its code; %s",
		ErrLTOTarget, t.path, why, srcHint)
}

// checkRunPre is the run-pre check of one OLD.o at build time: every
// function the patch replaces and every function of OLD.o the patch calls
// must be in the target with OLD.o's bytes (relocated fields masked, the
// linker's relaxations accepted). A target without symbols for any of
// OLD.o's functions, or with only its exported ones, leaves those it does
// not name to run-pre matching (locate.go).
func checkRunPre(t *target, oldPath string, oldData []byte, res *diff.Result) error {
	funcs, file, err := diff.Functions(oldData)
	if err != nil {
		return fmt.Errorf("%s: %w", oldPath, err)
	}
	needed := map[string]string{}
	for _, f := range res.Redirected() {
		needed[f.Name] = "replaces"
	}
	old := map[string]bool{}
	for _, f := range funcs {
		old[f.Name] = true
	}
	refs, err := objectRefs(res.Object)
	if err != nil {
		return err
	}
	for _, r := range refs {
		if !r.defined && old[r.name] && needed[r.name] == "" {
			needed[r.name] = "calls"
		}
	}
	var bad, missing []string
	found, otherBad := 0, 0
	for _, f := range funcs {
		s, ok, err := FindFunc(t.syms, linker.ObjSymbol{Name: f.Name, Local: f.Local}, file)
		if err != nil || !ok {
			// Without symbols beyond the exported ones, run-pre
			// matching (locate.go) locates a function by its code or
			// refuses it by name.
			if needed[f.Name] != "" && t.dbg.Source != debuginfo.SourceNone {
				missing = append(missing, fmt.Sprintf("%s (the patch %s it)", f.Name, needed[f.Name]))
			}
			continue
		}
		found++
		why := Differs(t.ef, t.arch, s.Value, s.Size, f, "in the object")
		switch {
		case why == "":
		case needed[f.Name] != "":
			bad = append(bad, fmt.Sprintf("%s (%s)", f.Name, why))
		default:
			otherBad++
		}
	}
	if found == 0 || len(bad)+len(missing) == 0 {
		return nil
	}
	sort.Strings(bad)
	sort.Strings(missing)
	var parts []string
	if len(bad) > 0 {
		parts = append(parts, "functions that differ: "+strings.Join(bad, ", "))
	}
	if len(missing) > 0 {
		parts = append(parts, "functions missing in the target: "+strings.Join(missing, ", "))
	}
	if otherBad > 0 {
		parts = append(parts, fmt.Sprintf("and %d more of its %d functions differ", otherBad, len(funcs)))
	}
	return fmt.Errorf("%w: %s was not compiled as %s was (other compiler flags, sources or compiler?): %s%s; %s",
		ErrNotReproduced, oldPath, t.path, strings.Join(parts, "; "), t.producerOf(file), srcHint)
}

// producerOf names the compiler and flags the target's DWARF records for
// source file file, "" without DWARF.
func (t *target) producerOf(file string) string {
	cus, err := t.dwarf().CompileUnits()
	if err != nil {
		return ""
	}
	for _, cu := range cus {
		if cu.Producer != "" && filepath.Base(cu.Name) == filepath.Base(file) {
			return fmt.Sprintf(" (the target's %s was compiled by %q)", filepath.Base(file), cu.Producer)
		}
	}
	return ""
}

// Differs is the run-pre comparison of one function at build time: it says
// how the target's code at addr (size bytes of the file ef, for CPU a)
// differs from f's run-pre bytes (diff.Func.Orig/OrigMask: relocated fields
// masked, the static linker's relaxations accepted, arch.LinkedCode.Relaxed),
// or "" when it is f's code. ours names f's side in the answer: "in the
// object" for diff mode's OLD.o, "rebuilt" for build --src's original build.
func Differs(ef *elfsym.File, a arch.Arch, addr, size uint64, f diff.Func, ours string) string {
	if size != f.Size {
		return fmt.Sprintf("%d bytes in the target, %d %s", size, f.Size, ours)
	}
	cur, err := ef.ReadVirt(addr, int(size))
	if err != nil {
		return fmt.Sprintf("cannot read it in the target: %v", err)
	}
	for i := range cur {
		if f.OrigMask[i] == 0 || cur[i] == f.Orig[i] || a.Relaxed(f.Orig, f.OrigMask, cur, i) {
			continue
		}
		return fmt.Sprintf("byte %d at %#x is %#02x in the target, %#02x %s", i, addr+uint64(i), cur[i], f.Orig[i], ours)
	}
	return ""
}

// checkLTOObject refuses an object that holds GCC's LTO bytecode (compiled
// with -flto): it has no machine code to load or compare.
func checkLTOObject(path string, data []byte) error {
	if sec := LTOSection(data); sec != "" {
		return fmt.Errorf("%w: %s holds GCC's LTO bytecode (compiled with -flto, section %s), not machine code; %s", ErrLTOTarget, path, sec, srcHint)
	}
	return nil
}

// LTOSection returns the name of a GCC LTO bytecode section (.gnu.lto_*) of
// the ELF object data, "" when it has none or is not ELF (the object
// parsers report that). A fat LTO object (-ffat-lto-objects) has one too:
// its code is not what an LTO link runs.
func LTOSection(data []byte) string {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return ""
	}
	for _, s := range f.Sections {
		if strings.HasPrefix(s.Name, ".gnu.lto_") {
			return s.Name
		}
	}
	return ""
}
