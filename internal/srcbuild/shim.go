package srcbuild

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// The compiler shim. Each build runs with a directory of small shell scripts
// first on PATH and in CC/CXX, one per compiler name. A shim records its
// invocation (working directory and arguments) in a file of its own under
// $HOTPATCH_SHIM_LOG (one file per call, so that parallel make jobs never
// interleave), then runs the real compiler with the project's arguments
// untouched plus:
//
//   - when compiling: -ffunction-sections -fdata-sections. They put each
//     function and variable in a section of its own, which the object diff
//     needs to load changed functions apart from the rest. They change where
//     the linker places functions, never the instructions GCC emits for a
//     function: code generation happens before sections are assigned. The
//     one visible effect inside a function is that a call or jump to a static
//     function of the same file is no longer resolved by the assembler but
//     left to a relocation (whose bytes the run-pre comparison masks); a
//     short jump the assembler could have relaxed between two functions
//     sharing .text becomes a long one. The build-time run-pre check
//     (verifyOriginal) would report such a function by name.
//   - when linking: -Wl,--emit-relocs, which keeps the relocations in the
//     linked output (extra non-allocated .rela.* sections). The code and its
//     addresses are those of the ordinary link; only the file grows. The
//     linked-output comparison (LTO builds, whose objects hold no code) reads
//     them.
//   - with -flto, nothing but -Wl,--emit-relocs on links. The code is
//     generated at the link, from options that include the link's own, and
//     -ffunction-sections there does change it at the margin: the assembler
//     sizes a branch once per section, so with every function in a section
//     of its own a jump of exactly -128 bytes that the shared .text made long
//     comes out short (seen in zlib's gz_error). The linked-output comparison
//     needs no sections per function.
//
// Queries (--version, -dumpversion, -print-*) run the compiler unchanged.
//
// Rust: cargo runs rustc through $RUSTC_WRAPPER, which the build gets (unless
// the environment sets one) as a script adding -C save-temps: rustc then keeps
// the object files of its codegen units (target/*/deps/*.rcgu.o) where it
// otherwise deletes them after linking, and the link (rustc calls cc, the
// shim) names them. rustc already puts every function in its own section.
// save-temps only keeps intermediate files; the code is the same (and the
// build-time run-pre check proves it).
const rustcWrapper = `#!/bin/sh
# hotpatch rustc wrapper (generated): keep the codegen units' objects.
case " $* " in
*" -vV "*|*" --version "*|*" --print"*|*" - "*) exec "$@" ;;
esac
exec "$@" -C save-temps
`

// compilerNames are the names the shim answers to.
var compilerNames = []string{"gcc", "g++", "cc", "c++", "clang", "clang++"}

const shimScript = `#!/bin/sh
# hotpatch compiler shim (generated): records this call, then runs %[1]s.
if [ -n "$HOTPATCH_SHIM_LOG" ]; then
	f=$(mktemp "$HOTPATCH_SHIM_LOG/cc.XXXXXXXXXX") && printf '%%s\0' "$PWD" %[2]s "$@" >"$f"
fi
mode=link
lto=
for a in "$@"; do
	case "$a" in
	-flto|-flto=*) lto=1 ;;
	-fno-lto) lto= ;;
	-c|-S) mode=compile ;;
	-E|-M|-MM) mode=other ;;
	--version|-v|--help|-dumpversion|-dumpfullversion|-dumpmachine|-dumpspecs|-print-*|--print-*) exec %[1]s "$@" ;;
	esac
done
case $mode$lto in
compile1) exec %[1]s "$@" ;;
link1) exec %[1]s "$@" -Wl,--emit-relocs ;;
compile) exec %[1]s "$@" -ffunction-sections -fdata-sections ;;
link) exec %[1]s "$@" -ffunction-sections -fdata-sections -Wl,--emit-relocs ;;
esac
exec %[1]s "$@"
`

// writeShims creates the shim directory and returns the environment the
// build runs with. path is the PATH to find the real compilers in; cc and
// cxx are the environment's CC and CXX.
//
// CC and CXX point at the shim only when the environment sets them already
// (to the shim of the compiler they name, its other words kept): setting
// them where the user did not can change what the project's configure
// decides (zlib 1.2.12's configure, given CC, forgets it is gcc and builds
// with -O and without -fPIC), and the original build must be the build that
// runs. Without them, the shims first on PATH catch gcc, cc, g++, ... alike.
func writeShims(dir, path, cc, cxx string) (env []string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	names := append([]string(nil), compilerNames...)
	for _, v := range []string{cc, cxx} {
		if f := strings.Fields(v); len(f) > 0 && !strings.Contains(filepath.Base(f[0]), "'") {
			names = append(names, filepath.Base(f[0]))
		}
	}
	found := map[string]string{}
	for _, name := range names {
		if found[name] != "" {
			continue
		}
		real, err := lookPath(name, path)
		if err != nil {
			continue
		}
		script := fmt.Sprintf(shimScript, shQuote(real), shQuote(name))
		if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
			return nil, err
		}
		found[name] = filepath.Join(dir, name)
	}
	if len(found) == 0 {
		return nil, fmt.Errorf("no C or C++ compiler (%s) on PATH", strings.Join(compilerNames, ", "))
	}
	env = append(env, "PATH="+dir+string(os.PathListSeparator)+path)
	if os.Getenv("RUSTC_WRAPPER") == "" {
		w := filepath.Join(dir, "rustc-wrapper")
		if err := os.WriteFile(w, []byte(rustcWrapper), 0o755); err != nil {
			return nil, err
		}
		env = append(env, "RUSTC_WRAPPER="+w)
	}
	for _, v := range [][2]string{{"CC", cc}, {"CXX", cxx}} {
		f := strings.Fields(v[1])
		if len(f) == 0 {
			continue
		}
		if p := found[filepath.Base(f[0])]; p != "" {
			f[0] = p
		}
		env = append(env, v[0]+"="+strings.Join(f, " "))
	}
	return env, nil
}

func lookPath(name, path string) (string, error) {
	for _, d := range filepath.SplitList(path) {
		if d == "" {
			continue
		}
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// invocation is one recorded compiler call.
type invocation struct {
	Dir  string   // working directory
	Tool string   // the name it was called by (gcc, cc, ...)
	Args []string // the project's arguments (without the shim's additions)
	// Compile: -c (objects out of sources); otherwise a link.
	Compile bool
	Outputs []string // absolute paths of the objects (compile) or the linked file
	Inputs  []string // link: absolute paths of the objects and archives linked
	Sources []string // compile: absolute paths of the sources
}

var sourceExt = map[string]bool{".c": true, ".cc": true, ".cpp": true, ".cxx": true, ".C": true, ".c++": true, ".s": true, ".S": true, ".i": true, ".ii": true, ".m": true}

// readLog reads the shim records of one build, in no particular order.
func readLog(dir string) ([]invocation, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []invocation
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		f := bytes.Split(bytes.TrimSuffix(b, []byte{0}), []byte{0})
		if len(f) < 2 {
			continue
		}
		inv := invocation{Dir: string(f[0]), Tool: string(f[1])}
		for _, a := range f[2:] {
			inv.Args = append(inv.Args, string(a))
		}
		if inv.parse() {
			out = append(out, inv)
		}
	}
	sort.Slice(out, func(i, j int) bool { return strings.Join(out[i].Outputs, ",") < strings.Join(out[j].Outputs, ",") })
	return out, nil
}

// optWithArg are GCC options whose value is the next argument.
var optWithArg = map[string]bool{"-o": true, "-I": true, "-D": true, "-U": true, "-include": true, "-imacros": true, "-isystem": true,
	"-iquote": true, "-idirafter": true, "-x": true, "-MF": true, "-MT": true, "-MQ": true, "-L": true, "-l": true, "-Xlinker": true,
	"-T": true, "-u": true, "-z": true, "-aux-info": true, "--param": true, "-Xassembler": true, "-Xpreprocessor": true}

// parse fills in the kind, outputs and inputs of a call; false for calls
// that make nothing hotpatch uses (preprocessing, assembly output, queries).
func (inv *invocation) parse() bool {
	out := ""
	var srcs, ins []string
	mode := "link"
	abs := func(p string) string {
		if filepath.IsAbs(p) {
			return filepath.Clean(p)
		}
		return filepath.Join(inv.Dir, p)
	}
	for i := 0; i < len(inv.Args); i++ {
		a := inv.Args[i]
		switch {
		case a == "-c":
			mode = "compile"
		case a == "-S" || a == "-E" || a == "-M" || a == "-MM":
			mode = "other"
		case a == "-o" && i+1 < len(inv.Args):
			out = inv.Args[i+1]
			i++
		case strings.HasPrefix(a, "-o") && len(a) > 2:
			out = a[2:]
		case optWithArg[a]:
			i++
		case strings.HasPrefix(a, "-"):
		case sourceExt[filepath.Ext(a)]:
			srcs = append(srcs, abs(a))
		default:
			ins = append(ins, abs(a)) // objects, archives, libraries
		}
	}
	switch mode {
	case "compile":
		inv.Compile = true
		inv.Sources = srcs
		if out != "" {
			inv.Outputs = []string{abs(out)}
		} else {
			for _, s := range srcs {
				b := filepath.Base(s)
				inv.Outputs = append(inv.Outputs, filepath.Join(inv.Dir, strings.TrimSuffix(b, filepath.Ext(b))+".o"))
			}
		}
		return len(inv.Outputs) > 0
	case "link":
		if out == "" {
			out = "a.out"
		}
		inv.Outputs = []string{abs(out)}
		inv.Inputs = append(ins, srcs...)
		return len(inv.Inputs) > 0
	}
	return false
}
