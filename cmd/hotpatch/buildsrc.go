package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/hotpatch/hotpatch/internal/build"
	"github.com/hotpatch/hotpatch/internal/srcbuild"
)

// srcFlags are build's flags of the source-tree mode (--src).
type srcFlags struct {
	opt     srcbuild.Options
	verbose bool
}

// coldFromSrc is --cold given without a value: with --src, the fixed build's
// rebuilt target. (--cold FILE keeps working in the object modes: the value
// pflag did not take is the first argument, see coldArg.)
const coldFromSrc = "(fixed build)"

func (f *srcFlags) addFlags(c *cobra.Command) {
	c.Flags().StringVar(&f.opt.Src, "src", "", "source mode: pristine source tree of the version that runs (never written); the build command follows --")
	c.Flags().StringArrayVar(&f.opt.Fixes, "fix", nil, "source mode: unified diff applied with patch -p1 (repeatable, in order)")
	c.Flags().StringVar(&f.opt.Work, "work", "", "source mode: work directory, kept (default: a temporary one, removed on success)")
	c.Flags().BoolVar(&f.verbose, "verbose", false, "list every function and data object, not only the replaced and added functions")
	cold := c.Flags().Lookup("cold")
	cold.NoOptDefVal = coldFromSrc
	cold.Usage += "; with --src, no value: the fixed build's"
}

// coldArg sorts out --cold: without a value it means the fixed build (--src
// only); in the object modes the file is the argument pflag left.
func coldArg(bundle *buildBundleFlags, src bool, cmd *cobra.Command, args []string) ([]string, error) {
	if bundle.cold != coldFromSrc {
		return args, nil
	}
	if src {
		return args, nil
	}
	dash := cmd.ArgsLenAtDash()
	if len(args) == 0 || dash == 0 {
		return nil, usageError{fmt.Errorf("--cold needs the fixed target file (or use --src, where it is the fixed build's)")}
	}
	bundle.cold = args[0]
	return args[1:], nil
}

// runSrcBuild is build --src: the logic is internal/srcbuild; this prints.
func runSrcBuild(cmd *cobra.Command, f *srcFlags, bundle *buildBundleFlags, base build.Options, out string, command []string) error {
	opt := f.opt
	opt.Target, opt.ID, opt.Description, opt.Command = base.Target, base.ID, base.Description, command
	opt.Progress = cmd.ErrOrStderr()
	if len(opt.Fixes) == 0 {
		return usageError{fmt.Errorf("build --src needs at least one --fix")}
	}
	if len(command) == 0 {
		return usageError{fmt.Errorf("build --src needs the build command after --, e.g. -- make -j2")}
	}
	res, err := srcbuild.Build(opt)
	if err != nil {
		return err
	}
	defer res.Close()
	if bundle.cold == coldFromSrc {
		bundle.cold = res.Fixed
	}
	if err := bundle.finish(cmd, res.Patch, opt.Target); err != nil {
		return err
	}
	if err := res.Patch.WriteFile(out); err != nil {
		return err
	}
	rep := res.Report
	if jsonOut {
		return writeJSON(cmd.OutOrStdout(), struct {
			*build.Report
			Output  string           `json:"output"`
			Source  *srcbuild.Result `json:"source"`
			Members int              `json:"members"`
		}{rep, out, res, len(res.Patch.Objects())})
	}
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "built %s -> %s (target %s, build-id %s)\n", rep.ID, out, rep.Target, rep.BuildID)
	fmt.Fprintf(w, "  from %s: %d function(s) of the target proven to be the original build's; %d translation unit(s) changed\n",
		res.Output, res.Verified, len(res.Units))
	printBuildReport(w, rep, res.Demangled, f.verbose)
	if res.Kept() {
		fmt.Fprintf(w, "  work directory %s\n", res.Work)
	}
	return nil
}

// printBuildReport prints what a patch does: replaced and added functions,
// and with verbose the unchanged functions and the data too.
func printBuildReport(w io.Writer, rep *build.Report, demangled map[string]string, verbose bool) {
	readable := func(n string) string {
		if d, ok := demangled[n]; ok {
			return " (" + d + ")"
		}
		return ""
	}
	for _, f := range rep.Replaced {
		fmt.Fprintf(w, "  replace %-24s %#x %d bytes%s%s\n", f.Name, f.Addr, f.Size, readable(f.Name), aliasNote(f.Aliases))
	}
	for _, f := range rep.Added {
		fmt.Fprintf(w, "  add     %s%s\n", f.Name, readable(f.Name))
	}
	if !verbose {
		if n := len(rep.Unchanged); n > 0 {
			fmt.Fprintf(w, "  (%d unchanged function(s) of the changed files stay the target's; --verbose lists them)\n", n)
		}
		return
	}
	for _, f := range rep.Unchanged {
		fmt.Fprintf(w, "  keep    %s\n", f.Name)
	}
	for _, d := range rep.Data {
		fmt.Fprintf(w, "  %-9s %-8s %s\n", d.Status, d.Kind, d.Name)
	}
}
