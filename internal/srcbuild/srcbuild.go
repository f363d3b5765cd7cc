// Package srcbuild makes a patch from a source tree and upstream fixes, the
// way kpatch-build and libcare-patch-make do: it builds the pristine tree and
// the fixed tree with the project's own build command, under a compiler shim
// that records every compile and link (shim.go), finds the build output that
// corresponds to the running file, proves that the original build reproduces
// its code (the run-pre check, at build time), and hands the pairs of
// original and fixed objects of every translation unit that changed to diff
// mode (internal/build). It never writes into the source tree.
package srcbuild

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hotpatch/hotpatch/internal/build"
	"github.com/hotpatch/hotpatch/internal/patchfile"
)

// Options of a build from source.
type Options struct {
	Src     string   // pristine source tree of the version that runs
	Fixes   []string // unified diffs, applied in order with patch -p1
	Target  string   // the file that runs
	Command []string // the build command, run from the tree's root
	// Work is the work directory (kept); "" makes a temporary one that
	// Result.Close removes.
	Work string
	// Progress receives one line per stage; nil for none.
	Progress    io.Writer
	ID          string
	Description string
}

// Stage is one step of the build with its duration.
type Stage struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

// Unit is one translation unit whose object differs between the builds.
type Unit struct {
	Name string `json:"name"` // object path relative to the tree (archive(member) for archives)
	Old  string `json:"old"`  // the objects handed to diff mode
	New  string `json:"new"`
}

// Result of a build from source.
type Result struct {
	Patch  *patchfile.Patch `json:"-"`
	Report *build.Report    `json:"-"` // printed at the top level of build --json
	Work   string           `json:"work"`
	// Output is the file of the original build that corresponds to the
	// target; Fixed is the same file of the fixed build (the coldpatch).
	Output string `json:"output"`
	Fixed  string `json:"fixed"`
	// Verified is the number of the target's functions proven to be the
	// rebuilt code (run-pre at build time).
	Verified int    `json:"verified_functions"`
	Units    []Unit `json:"changed_units"`
	// Demangled maps the mangled names of replaced and added functions
	// (C++, Rust) to their readable spelling.
	Demangled map[string]string `json:"demangled,omitempty"`
	Stages    []Stage           `json:"stages"`
	temp      bool
}

// Kept reports whether the work directory stays after Close.
func (r *Result) Kept() bool { return !r.temp }

// Close removes a temporary work directory.
func (r *Result) Close() error {
	if r == nil || !r.temp {
		return nil
	}
	return os.RemoveAll(r.Work)
}

// Sentinel errors.
var (
	// ErrBuildFailed: the build command failed in one of the trees.
	ErrBuildFailed = errors.New("build command failed")
	// ErrNoOutput: no file of the build corresponds to the target.
	ErrNoOutput = errors.New("no build output corresponds to the target")
	// ErrNotReproduced: the original build's code is not the target's.
	ErrNotReproduced = errors.New("the original build does not reproduce the target")
	// ErrLTO: the objects are link-time-optimisation IR, no machine code.
	ErrLTO = errors.New("link-time optimisation build")
)

// stager prints the progress lines.
type stager struct {
	w      io.Writer
	start  time.Time
	t0     time.Time
	name   string
	stages *[]Stage
}

func (s *stager) begin(name, detail string) {
	s.name, s.t0 = name, time.Now()
	if s.w != nil {
		fmt.Fprintf(s.w, "[%6.1fs] %s%s\n", time.Since(s.start).Seconds(), name, detail)
	}
}

func (s *stager) end() {
	*s.stages = append(*s.stages, Stage{Name: s.name, Seconds: time.Since(s.t0).Seconds()})
}

// Build runs the whole build; see the package comment. On failure the work
// directory is kept and the error says where.
func Build(opt Options) (res *Result, err error) {
	r, err := prepare(opt)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w (work directory kept: %s)", err, r.res.Work)
		}
	}()
	if err := r.copyTrees(); err != nil {
		return r.res, err
	}
	origObjs, err := r.buildOriginal()
	if err != nil {
		return r.res, err
	}
	defer r.tc.close()
	fixedObjs, err := r.buildFixed()
	if err != nil {
		return r.res, err
	}
	if r.linked {
		return r.res, r.makePatch(fixedObjs)
	}
	objs := pair(origObjs, fixedObjs)
	if why := acrossUnits(objs); why != "" {
		// The fix adds a translation unit, or a function that another
		// unit's changed code calls: a patch's objects are linked one by one
		// against the target, so one object must hold the new functions and
		// their callers: the linked outputs' (linked.go).
		if r.st.w != nil {
			fmt.Fprintf(r.st.w, "           %s: comparing the linked outputs\n", why)
		}
		full, err := r.linkedFull(r.out.orig)
		if err != nil {
			return r.res, err
		}
		r.linked, r.origFull, objs = true, full[0].old, nil
	}
	return r.res, r.makePatch(objs)
}

// acrossUnits says why the fix needs one patch object for several
// translation units: an object only the fixed build links, or a global
// function new in one object that another changed object refers to; "" if
// the objects can be patched one by one.
func acrossUnits(objs []object) string {
	added := map[string]string{} // new global function -> its object
	var changed []object
	for _, o := range objs {
		if o.old == nil {
			return "the fix adds " + o.name
		}
		if o.new == nil || bytes.Equal(o.old, o.new) {
			continue
		}
		changed = append(changed, o)
		had := globalFuncs(o.old)
		for n := range globalFuncs(o.new) {
			if !had[n] {
				added[n] = o.name
			}
		}
	}
	for _, o := range changed {
		for _, n := range undefined(o.new) {
			if in, ok := added[n]; ok && in != o.name {
				return fmt.Sprintf("%s calls %s, which the fix adds to %s", o.name, n, in)
			}
		}
	}
	return ""
}

// globalFuncs returns the global functions an object defines.
func globalFuncs(b []byte) map[string]bool {
	out := map[string]bool{}
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return out
	}
	syms, _ := f.Symbols()
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && elf.ST_BIND(s.Info) != elf.STB_LOCAL && s.Section != elf.SHN_UNDEF {
			out[s.Name] = true
		}
	}
	return out
}

// undefined returns the names an object refers to and does not define.
func undefined(b []byte) []string {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return nil
	}
	syms, _ := f.Symbols()
	var out []string
	for _, s := range syms {
		if s.Section == elf.SHN_UNDEF && s.Name != "" {
			out = append(out, s.Name)
		}
	}
	return out
}

// run is one build from source in progress.
type run struct {
	opt                     Options
	src                     string
	res                     *Result
	st                      *stager
	tree, orig, fixed, work string
	b                       *builds
	out                     *output
	tc                      *check
	// linked: the objects hold LTO bytecode, so the linked outputs are
	// compared (linked.go); origFull is the original build's output as one
	// object.
	linked   bool
	origFull []byte
}

// prepare checks the options and makes (or checks) the work directory.
func prepare(opt Options) (*run, error) {
	if len(opt.Command) == 0 {
		return nil, fmt.Errorf("no build command (give it after --)")
	}
	src, err := filepath.Abs(opt.Src)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(src); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("source tree %s: not a directory", opt.Src)
	}
	res := &Result{}
	if opt.Work == "" {
		if res.Work, err = os.MkdirTemp("", "hotpatch-build-"); err != nil {
			return nil, err
		}
		res.temp = true
	} else {
		if res.Work, err = filepath.Abs(opt.Work); err != nil {
			return nil, err
		}
		if rel, err := filepath.Rel(src, res.Work); err == nil && !strings.HasPrefix(rel, "..") {
			return nil, fmt.Errorf("work directory %s lies inside the source tree %s", res.Work, src)
		}
		if err := os.MkdirAll(res.Work, 0o755); err != nil {
			return nil, err
		}
	}
	w := res.Work
	r := &run{opt: opt, src: src, res: res, work: w, st: &stager{w: opt.Progress, start: time.Now(), stages: &res.Stages},
		tree: filepath.Join(w, "tree"), orig: filepath.Join(w, "orig"), fixed: filepath.Join(w, "fixed")}
	for _, d := range []string{r.tree, r.orig, r.fixed, filepath.Join(w, "log-orig"), filepath.Join(w, "log-fixed"), filepath.Join(w, "objects")} {
		if _, err := os.Lstat(d); err == nil {
			return nil, fmt.Errorf("work directory %s is not empty (%s exists): give an empty or new directory", w, filepath.Base(d))
		}
	}
	return r, nil
}

// copyTrees copies the source twice and applies the fixes to one copy.
// Both builds later run at the same path (tree/), one after the other, so
// that paths compiled into the code (__FILE__ of an absolute path, as cmake
// gives) are the same in both and do not make every user of them differ.
func (r *run) copyTrees() error {
	r.st.begin("copy", fmt.Sprintf(" %s, apply %d fix(es)", r.src, len(r.opt.Fixes)))
	if err := copyTree(r.src, r.fixed); err != nil {
		return fmt.Errorf("copy %s: %w", r.src, err)
	}
	if err := applyFixes(r.fixed, r.opt.Fixes); err != nil {
		return err
	}
	if err := copyTree(r.src, r.tree); err != nil {
		return fmt.Errorf("copy %s: %w", r.src, err)
	}
	r.st.end()
	return nil
}

// buildOriginal builds the pristine tree and proves it is the target's code
// before a second build is spent on the fix.
func (r *run) buildOriginal() ([]object, error) {
	inv, err := runBuild(r.st, r.opt.Command, r.work, r.tree, "orig")
	if err != nil {
		return nil, err
	}
	if err := os.Rename(r.tree, r.orig); err != nil {
		return nil, err
	}
	r.st.begin("link-check", fmt.Sprintf(" %s against the original build", r.opt.Target))
	r.b = &builds{tree: r.tree, orig: r.orig, fixed: r.fixed, origInv: inv}
	if r.out, err = r.b.findOutput(r.opt.Target); err != nil {
		return nil, err
	}
	r.res.Output, r.res.Fixed = r.out.orig, r.out.fixed
	objs, err := r.b.objects(r.out.rel, r.out.origLink, r.orig)
	if err != nil {
		return nil, err
	}
	if r.tc, err = openCheck(r.opt.Target); err != nil {
		return nil, err
	}
	if r.linked = anyLTO(objs); r.linked {
		if objs, err = r.linkedFull(r.out.orig); err != nil {
			r.tc.close()
			return nil, err
		}
		r.origFull = objs[0].old
	}
	if r.res.Verified, err = r.tc.verify(objs, inv); err != nil {
		r.tc.close()
		return nil, err
	}
	r.st.end()
	return objs, nil
}

// buildFixed builds the fixed tree and returns the objects linked into the
// target's counterpart.
func (r *run) buildFixed() ([]object, error) {
	if err := os.Rename(r.fixed, r.tree); err != nil {
		return nil, err
	}
	inv, err := runBuild(r.st, r.opt.Command, r.work, r.tree, "fixed")
	if err != nil {
		return nil, err
	}
	if err := os.Rename(r.tree, r.fixed); err != nil {
		return nil, err
	}
	link, ok := r.b.link(inv, r.out.rel)
	if !ok {
		return nil, fmt.Errorf("the fixed build did not link %s", r.out.rel)
	}
	if r.linked {
		return nil, nil // makePatch compares the linked outputs
	}
	return r.b.objects(r.out.rel, link, r.fixed)
}

// makePatch hands the objects that differ to diff mode (with r.linked, the
// pair of objects made from the linked outputs).
func (r *run) makePatch(objs []object) error {
	r.st.begin("compare", "")
	if r.linked {
		var err error
		if objs, err = r.linkedChanged(); err != nil {
			return err
		}
	}
	units, err := writeUnits(filepath.Join(r.work, "objects"), objs)
	if err != nil {
		return err
	}
	r.res.Units = units
	if len(units) == 0 {
		return fmt.Errorf("%w: the fix changes none of the objects linked into %s", build.ErrNotFound, r.res.Output)
	}
	bo := build.Options{Target: r.opt.Target, ID: r.opt.ID, Description: r.opt.Description, Linked: r.linked}
	for _, u := range units {
		bo.Old, bo.New = append(bo.Old, u.Old), append(bo.New, u.New)
	}
	if r.res.Patch, r.res.Report, err = build.Diff(bo); err != nil {
		return err
	}
	if err := r.tc.useTargetRunPre(r.res.Patch); err != nil {
		return err
	}
	var names []string
	for _, fs := range [][]build.Func{r.res.Report.Replaced, r.res.Report.Added} {
		for _, f := range fs {
			names = append(names, f.Name)
		}
	}
	r.res.Demangled = demangle(names)
	r.st.end()
	return nil
}

// runBuild runs the build command in dir under the shim; the output goes to
// WORK/build-NAME.log.
func runBuild(st *stager, command []string, work, dir, name string) ([]invocation, error) {
	logDir := filepath.Join(work, "log-"+name)
	logPath := filepath.Join(work, "build-"+name+".log")
	st.begin("build "+name, fmt.Sprintf(": %s (log %s)", strings.Join(command, " "), logPath))
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	env, err := writeShims(filepath.Join(work, "shim"), os.Getenv("PATH"), os.Getenv("CC"), os.Getenv("CXX"))
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(command[0], command[1:]...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(filterEnv(os.Environ()), env...)
	cmd.Env = append(cmd.Env, "HOTPATCH_SHIM_LOG="+logDir, "PWD="+dir)
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%w in the %s tree: %s: %w; see the build log %s", ErrBuildFailed, name, strings.Join(command, " "), err, logPath)
	}
	inv, err := readLog(logDir)
	if err != nil {
		return nil, fmt.Errorf("read the compiler records of the %s build: %w", name, err)
	}
	if len(inv) == 0 {
		return nil, fmt.Errorf("%w: the %s build ran no compiler through hotpatch's shim (does it call the compiler by an absolute path? see %s)", ErrBuildFailed, name, logPath)
	}
	st.end()
	return inv, nil
}

// filterEnv drops the variables the shim sets.
func filterEnv(env []string) []string {
	var out []string
	for _, e := range env {
		k, _, _ := strings.Cut(e, "=")
		switch k {
		case "PATH", "CC", "CXX", "HOTPATCH_SHIM_LOG", "PWD", "CARGO_TARGET_DIR": // each build keeps its outputs in its own tree
			continue
		}
		out = append(out, e)
	}
	return out
}

// builds are the two finished builds.
type builds struct {
	tree, orig, fixed string
	origInv, fixedInv []invocation
}

// output is one linked file in both builds.
type output struct {
	rel         string // relative to the tree
	orig, fixed string
	origLink    invocation
}

// link returns the call of a build that linked rel.
func (b *builds) link(inv []invocation, rel string) (invocation, bool) {
	for _, in := range inv {
		if r, ok := b.rel(in.Outputs[0]); ok && !in.Compile && r == rel {
			return in, true
		}
	}
	return invocation{}, false
}

// rel returns p relative to the tree both builds ran in, or false.
func (b *builds) rel(p string) (string, bool) {
	r, err := filepath.Rel(b.tree, p)
	if err != nil || r == ".." || strings.HasPrefix(r, "../") {
		return "", false
	}
	return r, true
}

// findOutput picks the linked file of the original build that corresponds
// to the target: the one whose functions (by name) overlap the target's the
// most; the run-pre check then proves it. The target is usually an installed
// copy (another path, maybe stripped of nothing but debug info), and the
// shim's extra flags change the layout, so neither the path nor the build-id
// can say it.
func (b *builds) findOutput(target string) (*output, error) {
	want, err := funcNames(target)
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", target, err)
	}
	var best *output
	bestScore := 0.0
	var seen []string
	for _, inv := range b.origInv {
		if inv.Compile {
			continue
		}
		r, ok := b.rel(inv.Outputs[0])
		if !ok {
			continue
		}
		o := &output{rel: r, orig: filepath.Join(b.orig, r), fixed: filepath.Join(b.fixed, r), origLink: inv}
		have, err := funcNames(o.orig)
		if err != nil {
			continue // removed by the build, or not ELF
		}
		common := 0
		for n := range have {
			if want[n] {
				common++
			}
		}
		score := float64(common) / float64(len(want)+len(have)-common)
		seen = append(seen, fmt.Sprintf("%s (%.0f%%)", r, 100*score))
		if score > bestScore || (score == bestScore && best != nil && filepath.Base(r) == filepath.Base(target)) {
			best, bestScore = o, score
		}
	}
	if best == nil || bestScore < 0.5 {
		return nil, fmt.Errorf("%w %s: the builds linked %s (functions in common with the target); is it the program built by this tree?",
			ErrNoOutput, target, strings.Join(seen, ", "))
	}
	return best, nil
}

// funcNames returns the names of the functions an ELF file defines.
func funcNames(path string) (map[string]bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return nil, fmt.Errorf("not an executable or shared library")
	}
	out := map[string]bool{}
	for _, get := range []func() ([]elf.Symbol, error){f.Symbols, f.DynamicSymbols} {
		syms, _ := get()
		for _, s := range syms {
			if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Section != elf.SHN_UNDEF && s.Value != 0 {
				out[s.Name] = true
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no function symbols (stripped?)")
	}
	return out, nil
}

// object is one relocatable object linked into the output, in both builds.
type object struct {
	name     string // relative path, or archive(member)
	old, new []byte // new is nil when the fixed build has no such object
}

// objects returns the relocatable objects that link linked into rel, read
// from the build's tree root, archives expanded.
func (b *builds) objects(rel string, link invocation, root string) ([]object, error) {
	var objs []object
	for _, in := range link.Inputs {
		r, ok := b.rel(in)
		if !ok {
			continue // a system library or object outside the tree
		}
		data, err := os.ReadFile(filepath.Join(root, r))
		if err != nil {
			continue
		}
		switch {
		case bytes.HasPrefix(data, []byte("!<arch>\n")):
			ms, err := readArchive(data)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", r, err)
			}
			for _, m := range ms {
				if isRel(m.Data) {
					objs = append(objs, object{name: r + "(" + m.Name + ")", old: m.Data})
				}
			}
		case isRel(data):
			objs = append(objs, object{name: r, old: data})
		}
	}
	if len(objs) == 0 {
		return nil, fmt.Errorf("%w: %s was linked from no object of the tree", ErrNoOutput, rel)
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].name < objs[j].name })
	return objs, nil
}

// pair matches the original build's objects with the fixed build's (in
// fixed[i].old) by name. Objects left over on both sides are matched by
// content: a tool's temporary objects (rustc's rustcXXXXXX/symbols.o) get
// another name in every build but are the same. What is still left is an
// object only the fixed build has (a new translation unit, old nil: Build
// then compares the linked outputs) or only the original has (new nil).
func pair(orig, fixed []object) []object {
	byName := map[string][]byte{}
	for _, o := range fixed {
		byName[o.name] = o.old
	}
	var out []object
	seen := map[string]bool{}
	var lone []object
	for _, o := range orig {
		if nb, ok := byName[o.name]; ok {
			out = append(out, object{name: o.name, old: o.old, new: nb})
			seen[o.name] = true
		} else {
			lone = append(lone, o)
		}
	}
	var extra [][]byte
	for _, o := range fixed {
		if !seen[o.name] {
			extra = append(extra, o.old)
		}
	}
	for _, o := range lone {
		matched := false
		for i, e := range extra {
			if e != nil && bytes.Equal(e, o.old) {
				extra[i], matched = nil, true
				break
			}
		}
		if !matched {
			out = append(out, object{name: o.name, old: o.old})
		}
	}
	for _, o := range fixed {
		if !seen[o.name] {
			for i, e := range extra {
				if e != nil && bytes.Equal(e, o.old) {
					out = append(out, object{name: o.name, new: o.old})
					extra[i] = nil
				}
			}
		}
	}
	return out
}

// anyLTO reports whether one of the objects holds GCC LTO bytecode
// (build.LTOSection): a slim LTO object has no code; a fat one's code is not
// what the link runs.
func anyLTO(objs []object) bool {
	for _, o := range objs {
		if build.LTOSection(o.old) != "" {
			return true
		}
	}
	return false
}

// isRel reports whether b is an ELF relocatable object.
func isRel(b []byte) bool {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return false
	}
	return f.Type == elf.ET_REL
}

// writeUnits writes the pairs of objects that differ to dir, for diff mode.
func writeUnits(dir string, objs []object) ([]Unit, error) {
	var units []Unit
	for i, o := range objs {
		if o.new == nil {
			return nil, fmt.Errorf("the fixed build does not link %s any more: removing a translation unit cannot be patched live", o.name)
		}
		if o.old == nil { // Build compares the linked outputs instead
			return nil, fmt.Errorf("the fix adds the translation unit %s, which only the linked outputs' comparison handles", o.name)
		}
		if bytes.Equal(o.old, o.new) {
			continue
		}
		base := strings.NewReplacer("/", "_", "(", "_", ")", "").Replace(o.name)
		u := Unit{Name: o.name, Old: filepath.Join(dir, "orig", fmt.Sprintf("%d", i), base), New: filepath.Join(dir, "fixed", fmt.Sprintf("%d", i), base)}
		for _, f := range []struct {
			path string
			data []byte
		}{{u.Old, o.old}, {u.New, o.new}} {
			if err := os.MkdirAll(filepath.Dir(f.path), 0o755); err != nil {
				return nil, err
			}
			if err := os.WriteFile(f.path, f.data, 0o644); err != nil {
				return nil, err
			}
		}
		units = append(units, u)
	}
	return units, nil
}
