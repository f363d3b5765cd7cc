package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hotpatch/hotpatch/internal/build"
	"github.com/hotpatch/hotpatch/internal/engine"
)

func newBuildCmd() *cobra.Command {
	var opt build.Options
	var out string
	bundle := new(buildBundleFlags) // --key, --cold (cold.go)
	src := new(srcFlags)            // --src, --fix, --work, --verbose (buildsrc.go)
	c := &cobra.Command{
		Use: "build --target FILE [--old OLD.o] --new NEW.o [...] -o PATCH\n" +
			"  hotpatch build --src DIR --fix FIX.patch [--fix ...] --target FILE -o PATCH [--key KEY] [--cold] [--work WORKDIR] -- BUILD COMMAND ...",
		Short: "Build a patch from object files holding the fixed functions",
		Long: `Build a patch. Every function defined in NEW.o replaces the function of the
same name in FILE (an executable or shared library); functions FILE does not
have are added. FILE's symbols come from FILE itself or, for a stripped file,
from its separate debug file, found the way gdb finds it (by build-id under
/usr/lib/debug/.build-id, by .gnu_debuglink, in the debuginfod cache) or
given with --debug-file. Symbols NEW.o uses but does not define bind to the target's own
(globals, and statics where the name is unique or the source file says which).
The patch records FILE's build-id and applies only to processes mapping it.

Compile NEW.o with the target's compiler and flags plus
-ffunction-sections -fdata-sections.

Diff mode (--old, paired by order with --new): OLD.o and NEW.o are the same
source file compiled before and after the fix. Only functions whose code or
relocations differ are replaced (new ones added); unchanged functions and
existing variables stay the target's; a changed initial value of an existing
variable is refused. Each replaced function records OLD.o's bytes, which
apply checks against the running process (run-pre). See docs/patch-generation.md.

Source mode (--src): hotpatch copies the pristine tree DIR twice under the
work directory, applies the --fix diffs to one copy (patch -p1), runs the
build command in both under a compiler shim, finds the built file that
corresponds to FILE, proves that the original build reproduces FILE's code,
and builds the patch from the objects of every translation unit that changed.
--cold then adds the fixed build's FILE.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			args, err := coldArg(bundle, src.opt.Src != "", cmd, args)
			if err != nil {
				return err
			}
			if src.opt.Src != "" {
				if opt.Target == "" || out == "" {
					return usageError{fmt.Errorf("build --src needs --target and -o")}
				}
				if len(opt.New) > 0 || len(opt.Old) > 0 {
					return usageError{fmt.Errorf("build --src takes no --old/--new: it builds them")}
				}
				if cmd.ArgsLenAtDash() != 0 {
					return usageError{fmt.Errorf("build --src: the build command goes after --")}
				}
				return runSrcBuild(cmd, src, bundle, opt, out, args)
			}
			if len(args) > 0 {
				return usageError{fmt.Errorf("build: unexpected argument %q", args[0])}
			}
			if opt.Target == "" || len(opt.New) == 0 || out == "" {
				return usageError{fmt.Errorf("build needs --target, --new and -o")}
			}
			if len(opt.Old) > 0 && len(opt.Old) != len(opt.New) {
				return usageError{fmt.Errorf("build needs one --old per --new (%d --old, %d --new)", len(opt.Old), len(opt.New))}
			}
			p, rep, err := build.Build(opt)
			if err != nil {
				return err
			}
			if err := bundle.finish(cmd, p, opt.Target); err != nil {
				return err
			}
			if err := p.WriteFile(out); err != nil {
				return err
			}
			if jsonOut {
				return writeJSON(cmd.OutOrStdout(), struct {
					*build.Report
					Output string `json:"output"`
				}{rep, out})
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "built %s -> %s (target %s, build-id %s)\n", rep.ID, out, rep.Target, rep.BuildID)
			fmt.Fprintf(w, "  symbols from %s (%s)\n", rep.Symbols, rep.SymbolsSource)
			for _, f := range rep.Replaced {
				fmt.Fprintf(w, "  replace %-24s %#x %d bytes%s%s\n", f.Name, f.Addr, f.Size, aliasNote(f.Aliases), matchNote(f.Match))
			}
			for _, f := range rep.Located {
				fmt.Fprintf(w, "  uses    %-24s %#x (located by run-pre matching)\n", f.Name, f.Addr)
			}
			if rep.Forced != "" {
				fmt.Fprintf(w, "  -fipa-ra check not done (forced: %s)\n", rep.Forced)
			}
			for _, f := range rep.Added {
				fmt.Fprintf(w, "  add     %s\n", f.Name)
			}
			for _, f := range rep.Unchanged {
				fmt.Fprintf(w, "  keep    %s\n", f.Name)
			}
			for _, d := range rep.Data {
				fmt.Fprintf(w, "  %-9s %-8s %s\n", d.Status, d.Kind, d.Name)
			}
			return nil
		},
	}
	c.Flags().StringVar(&opt.Target, "target", "", "executable or shared library the patch is for")
	c.Flags().StringArrayVar(&opt.New, "new", nil, "relocatable object with the new functions (repeatable)")
	c.Flags().StringArrayVar(&opt.Old, "old", nil, "diff mode: the build of the matching --new before the fix (repeatable, paired by order)")
	c.Flags().StringVarP(&out, "output", "o", "", "patch file to write")
	c.Flags().StringVar(&opt.ID, "id", "", "patch id (default: derived from the contents)")
	c.Flags().StringVar(&opt.Description, "description", "", "free text stored in the patch")
	c.Flags().StringVar(&opt.Force, "force", "", "REASON: build although the -fipa-ra hazard cannot be checked (a stripped target without .eh_frame); the reason is recorded in the report")
	c.Flags().StringVar(&opt.Debug.File, "debug-file", "", "the target's separate debug file (default: looked for by build-id, .gnu_debuglink and the debuginfod cache); its build-id must be the target's")
	bundle.addFlags(c)
	src.addFlags(c)
	return c
}

func engineOptions(c *cobra.Command) *engine.Options {
	var o engine.Options
	c.Flags().DurationVar(&o.Timeout, "timeout", 10*time.Second, "how long to keep retrying while patching is not safe")
	c.Flags().BoolVar(&o.Realtime, "realtime", false, "raise hotpatch to SCHED_FIFO while the target is stopped (shorter pause on busy machines)")
	c.Flags().StringVar(&o.Consistency, "consistency", engine.ConsistencyStack,
		"stack: no thread may have a replaced function on its stack; entry: only the bytes being overwritten must be free (for functions that never return)")
	return &o
}

func newApplyCmd() *cobra.Command {
	var pids []int
	c := &cobra.Command{
		Use:   "apply PATCH [--pid PID ...]",
		Short: "Apply a patch to a running process, or to every process running its target",
		Args:  cobra.ExactArgs(1),
	}
	opt := engineOptions(c)
	c.Flags().BoolVar(&opt.DryRun, "dry-run", false, "do every check (scan, build-id, link, run-pre, seccomp, the consistency check in a real stop window) and change nothing; same report and exit code")
	c.Flags().IntSliceVar(&pids, "pid", nil, "process to patch (repeatable; default: every process that maps the patch's target)")
	ff := addFleetFlags(c, true)
	bf := addApplyBundleFlags(c) // --trust, --allow-unsigned, --no-cold, --cold-only, --force-cold (cold.go)
	c.RunE = func(cmd *cobra.Command, args []string) error {
		return runApply(cmd, args[0], pids, *opt, ff, bf) // txn.go
	}
	return c
}

// printApplied prints the report of an apply to one process.
func printApplied(w io.Writer, rep *engine.ApplyReport) {
	if rep.AlreadyApplied {
		fmt.Fprintf(w, "patch %s is already applied to process %d: nothing to do\n", rep.PatchID, rep.PID)
		return
	}
	if rep.DryRun {
		fmt.Fprintf(w, "dry run: would apply %s to process %d (%s): %d function(s), stall %v (the checks ran in a real stop window, %d attempt(s)), consistency %s; nothing was changed\n",
			rep.PatchID, rep.PID, rep.Target, len(rep.Functions), rep.Stall.Round(time.Microsecond), rep.Attempts, rep.Consistency)
		for _, f := range rep.Functions {
			fmt.Fprintf(w, "  %-24s %#x (%s, %s path)%s\n", f.Name, f.Entry, f.Kind, f.Path, aliasNote(f.Aliases))
		}
		return
	}
	windows := fmt.Sprintf("all threads stopped %v", rep.Pause.Round(time.Microsecond))
	if rep.AllocPause > 0 { // the region was mapped in a one-thread stop of its own
		windows += fmt.Sprintf(", one thread %v while mapping", rep.AllocPause.Round(time.Microsecond))
	}
	fmt.Fprintf(w, "applied %s to process %d (%s): stall %v (longest stop of one thread; %s), %d function(s) redirected, total %v, consistency %s\n",
		rep.PatchID, rep.PID, rep.Target, rep.Stall.Round(time.Microsecond), windows,
		len(rep.Functions), rep.Elapsed.Round(time.Millisecond), rep.Consistency)
	for _, f := range rep.Functions {
		fmt.Fprintf(w, "  %-24s %#x -> %#x (%s, %s path)%s\n", f.Name, f.Entry, f.New, f.Kind, f.Path, aliasNote(f.Aliases))
	}
}

func newRevertCmd() *cobra.Command {
	var pids []int
	c := &cobra.Command{
		Use:   "revert PATCH_ID|PATCH_FILE [--pid PID ...]",
		Short: "Revert a patch in a running process, or in every process that has it",
		Args:  cobra.ExactArgs(1),
	}
	opt := engineOptions(c)
	c.Flags().BoolVar(&opt.DryRun, "dry-run", false, "do every check (the consistency check in a real stop window included) and change nothing; same report and exit code")
	c.Flags().IntSliceVar(&pids, "pid", nil, "process to revert the patch in (repeatable; default: every process that has it)")
	ff := addFleetFlags(c, false)
	rc := addRevertColdFlags(c) // --no-cold, --cold-only, --force-cold (cold.go)
	c.RunE = func(cmd *cobra.Command, args []string) error {
		return runRevert(cmd, args[0], pids, *opt, ff, rc) // txn.go
	}
	return c
}

// printReverted prints the report of a revert in one process.
func printReverted(w io.Writer, rep *engine.RevertReport) {
	if rep.DryRun {
		fmt.Fprintf(w, "dry run: would revert %s in process %d: %s restored, stall %v (checks in a real stop window); nothing was changed\n", rep.PatchID, rep.PID,
			strings.Join(rep.Functions, ", "), rep.Stall.Round(time.Microsecond))
		if !rep.Freed {
			fmt.Fprintf(w, "  patch region would be kept: %s\n", rep.Retained)
		}
		return
	}
	fmt.Fprintf(w, "reverted %s in process %d: stall %v (longest stop of one thread; all threads stopped %v), %s restored\n", rep.PatchID, rep.PID,
		rep.Stall.Round(time.Microsecond), rep.Pause.Round(time.Microsecond), strings.Join(rep.Functions, ", "))
	if !rep.Freed {
		fmt.Fprintf(w, "  patch region kept: %s\n", rep.Retained)
	}
}

func newStatusCmd() *cobra.Command {
	var pids []int
	var sf filterFlags
	c := &cobra.Command{
		Use:   "status [--pid PID ...] [--exe PATH] [--uid UID] [--cgroup PATH]",
		Short: "Show the patches applied to a running process, or every patched process",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := sf.filter(cmd)
			if err != nil {
				return err
			}
			if len(pids) != 1 || !f.Empty() {
				return runFleetStatus(cmd, pids, f)
			}
			pid := pids[0]
			if pid <= 0 {
				return usageError{fmt.Errorf("status: --pid must be positive")}
			}
			// Frees the regions reverts kept that no thread can reach any
			// more (so status runs in the worker, see worker.go).
			rep, err := engine.StatusFree(pid, engine.Options{})
			if err != nil {
				return err
			}
			if jsonOut {
				return writeJSON(cmd.OutOrStdout(), rep)
			}
			w := cmd.OutOrStdout()
			if len(rep.Patches) == 0 {
				fmt.Fprintf(w, "process %d: no patches\n", pid)
				return nil
			}
			for _, p := range rep.Patches {
				printPatchStatus(w, "", p)
			}
			return nil
		},
	}
	c.Flags().IntSliceVar(&pids, "pid", nil, "process to inspect (repeatable; default: every patched process)")
	sf.add(c)
	return c
}

// aliasNote lists a function's other names (aliases at its address, which
// share its one redirect).
func aliasNote(aliases []string) string {
	if len(aliases) == 0 {
		return ""
	}
	return " (also " + strings.Join(aliases, ", ") + ")"
}

// printPatchStatus prints one patch region of a process (status). Foreign and
// incomplete regions say what is wrong instead of what the record claims.
func printPatchStatus(w io.Writer, indent string, p engine.PatchStatus) {
	if p.Problem != "" {
		fmt.Fprintf(w, "%s%s  %s  region %#x (%d bytes)\n%s  %s\n", indent, p.ID, p.StateName, p.Base, p.Size, indent, p.Problem)
		return
	}
	fmt.Fprintf(w, "%s%s  %s  %s  region %#x (%d bytes)  applied %s\n", indent, p.ID, p.StateName, p.Target, p.Base, p.Size,
		time.Unix(p.AppliedAt, 0).UTC().Format(time.RFC3339))
	for _, r := range p.Redirects {
		fmt.Fprintf(w, "%s  %-24s %#x -> %#x (%s)\n", indent, r.Func, r.Entry, r.New, r.Kind)
	}
	if p.Kept != "" {
		fmt.Fprintf(w, "%s  region %s\n", indent, p.Kept)
	}
}

// matchNote marks a function located by run-pre matching.
func matchNote(m string) string {
	if m == "" {
		return ""
	}
	return " (located by " + m + " matching)"
}
