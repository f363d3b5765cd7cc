package srcbuild

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hotpatch/hotpatch/internal/arch"
	_ "github.com/hotpatch/hotpatch/internal/arch/amd64" // register x86-64
	"github.com/hotpatch/hotpatch/internal/build"
	"github.com/hotpatch/hotpatch/internal/diff"
	"github.com/hotpatch/hotpatch/internal/elfsym"
	"github.com/hotpatch/hotpatch/internal/linker"
	"github.com/hotpatch/hotpatch/internal/patchfile"
)

// check is the target file, opened for the build-time run-pre check.
type check struct {
	path string
	fh   *os.File
	ef   *elfsym.File
	syms *elfsym.Table
	arch arch.Arch
}

func openCheck(path string) (*check, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open target: %w", err)
	}
	c := &check{path: path, fh: fh}
	if c.ef, err = elfsym.Open(fh); err != nil {
		fh.Close()
		return nil, fmt.Errorf("target %s: %w", path, err)
	}
	if c.syms, err = c.ef.Symbols(); err != nil {
		fh.Close()
		return nil, fmt.Errorf("target %s: %w", path, err)
	}
	if c.arch, err = arch.ForMachine(c.ef.Machine()); err != nil {
		fh.Close()
		return nil, fmt.Errorf("target %s: %w", path, err)
	}
	return c, nil
}

func (c *check) close() { c.fh.Close() }

// verify is the run-pre check at build time, over every function of every
// object the original build linked into the target's counterpart: the
// target's bytes must equal the object's, except where a relocation will
// write (masked) and where the linker relaxed a GOT load (arch.LinkedCode.Relaxed). It
// returns how many functions were proven; a difference is ErrNotReproduced,
// naming the functions and the compiler flags that differ.
func (c *check) verify(objs []object, inv []invocation) (int, error) {
	verified := 0
	var bad []string
	var badFiles []string
	for _, o := range objs {
		funcs, file, err := diff.Functions(o.old)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", o.name, err)
		}
		fileBad := false
		for _, f := range funcs {
			// A function the target has no (unique, sized) symbol for is
			// not proven here; a static of an object made from a linked
			// output (unlink), whose STT_FILE names the output, is found
			// as a global.
			s, ok, err := build.FindFunc(c.syms, linker.ObjSymbol{Name: f.Name, Local: f.Local}, file)
			if err != nil || !ok {
				continue
			}
			if why := build.Differs(c.ef, c.arch, s.Value, s.Size, f, "rebuilt"); why != "" {
				bad = append(bad, fmt.Sprintf("%s (%s: %s)", f.Name, file, why))
				fileBad = true
				continue
			}
			verified++
		}
		if fileBad {
			badFiles = append(badFiles, file)
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		more := ""
		if len(bad) > 8 {
			more = fmt.Sprintf(" and %d more", len(bad)-8)
			bad = bad[:8]
		}
		return verified, fmt.Errorf("%w %s: %s%s differ; %s", ErrNotReproduced, c.path, strings.Join(bad, ", "), more, c.flagDifference(badFiles[0], inv))
	}
	if verified == 0 {
		return 0, fmt.Errorf("%w %s: none of the rebuilt functions is in the target's symbol table (stripped?)", ErrNotReproduced, c.path)
	}
	return verified, nil
}

// useTargetRunPre makes the run-pre bytes of every replaced function the
// target's own, masked as the object's were: verify proved them equal to
// the original build's except where the linker relaxed an instruction, and
// apply must compare the process against what the file really holds.
func (c *check) useTargetRunPre(p *patchfile.Patch) error {
	for i := range p.Functions {
		f := &p.Functions[i]
		if f.New || len(f.OrigMask) == 0 || uint64(len(f.OrigMask)) != f.Size {
			continue
		}
		cur, err := c.ef.ReadVirt(f.Addr, int(f.Size))
		if err != nil {
			return fmt.Errorf("read %s in the target: %w", f.Name, err)
		}
		for k := range cur {
			if f.OrigMask[k] == 0 {
				cur[k] = 0
			}
		}
		f.Orig = cur
	}
	return nil
}

// flagDifference explains a mismatch in file by the compiler options: the
// target's DW_AT_producer (with -g) against the options the original build
// compiled file with (the shim's record).
func (c *check) flagDifference(file string, inv []invocation) string {
	cus, _ := c.ef.CompileUnits()
	rebuilt, ok := compileFlags(file, inv)
	if !ok {
		// An object made from a linked output (LTO) is named after the
		// output: take the first source file that both name.
		for _, cu := range cus {
			if r, found := compileFlags(cu.Name, inv); found && cu.Producer != "" {
				file, rebuilt, ok = cu.Name, r, true
				break
			}
		}
	}
	if !ok {
		return fmt.Sprintf("no compile of %s was recorded", file)
	}
	producer := ""
	for _, cu := range cus {
		if filepath.Base(cu.Name) == filepath.Base(file) && cu.Producer != "" {
			producer = cu.Producer
			break
		}
	}
	if producer == "" {
		return fmt.Sprintf("the target records no compiler flags for %s (no DWARF: build it with -g to see them); the original build compiled it with %s: was the target built with other flags or sources?",
			file, strings.Join(rebuilt, " "))
	}
	var tf []string
	for _, t := range strings.Fields(producer) {
		if codeFlag(t) && t != "-mtune=generic" && t != "-march=x86-64" {
			tf = append(tf, t)
		}
	}
	onlyT, onlyR := setDiff(tf, rebuilt), setDiff(rebuilt, tf)
	if len(onlyT) == 0 && len(onlyR) == 0 {
		return fmt.Sprintf("the compiler flags of %s agree (%s, target producer %q): other sources or another compiler version?", file, strings.Join(rebuilt, " "), producer)
	}
	return fmt.Sprintf("compiler flags of %s differ: the target has %s, the original build %s (target producer %q); build the tree with the target's flags (e.g. CFLAGS) in the build command",
		file, orNone(onlyT), orNone(onlyR), producer)
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "nothing else"
	}
	return strings.Join(s, " ")
}

// codeFlag reports whether a compiler option is one that can change
// generated code (and so is compared): optimisation, code generation and
// machine options, the language standard.
func codeFlag(a string) bool {
	if strings.HasPrefix(a, "-ffunction-sections") || strings.HasPrefix(a, "-fdata-sections") {
		return false
	}
	for _, p := range []string{"-O", "-f", "-m", "-std="} {
		if strings.HasPrefix(a, p) {
			return true
		}
	}
	return false
}

// compileFlags returns the code-generation options the build compiled the
// source file named file (STT_FILE, as given on the command line) with.
func compileFlags(file string, inv []invocation) ([]string, bool) {
	for _, in := range inv {
		if !in.Compile {
			continue
		}
		for _, s := range in.Sources {
			if filepath.Base(s) == filepath.Base(file) {
				var out []string
				for _, a := range in.Args {
					if codeFlag(a) {
						out = append(out, a)
					}
				}
				return out, true
			}
		}
	}
	return nil, false
}

func setDiff(a, b []string) []string {
	in := map[string]bool{}
	for _, x := range b {
		in[x] = true
	}
	var out []string
	for _, x := range a {
		if !in[x] {
			out = append(out, x)
		}
	}
	return out
}
