package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hotpatch/hotpatch/internal/build"
	"github.com/hotpatch/hotpatch/internal/debuginfo"
)

func newInspectTargetCmd() *cobra.Command {
	var dbg debuginfo.Options
	c := &cobra.Command{
		Use:   "inspect-target FILE",
		Short: "Show what hotpatch can see of an executable or library",
		Long: `Show what hotpatch can see of FILE, an executable or shared library it may
patch: its build-id, where its symbols come from (the file itself, or its
separate debug file found by build-id, .gnu_debuglink or the debuginfod
cache, or --debug-file; "none": exported symbols only), how many functions
are known by name and how many only by their .eh_frame function boundaries
(which diff mode locates by run-pre matching), and its patch-ready
functions (-fpatchable-function-entry, docs/patch-ready.md).

Exit codes: 0 shown; 4 a debug file of another build (refused, as build
refuses it); 7 FILE is not an ELF file hotpatch can read; 1 anything else.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			info, err := build.InspectTarget(args[0], dbg)
			if err != nil {
				return err
			}
			if jsonOut {
				return writeJSON(cmd.OutOrStdout(), info)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "target      %s (%s)\n", info.Path, info.Machine)
			if info.BuildID != "" {
				fmt.Fprintf(w, "build-id    %s\n", info.BuildID)
			} else {
				fmt.Fprintf(w, "build-id    none: patches cannot be matched to processes (link with -Wl,--build-id)\n")
			}
			fmt.Fprintf(w, "symbols     from %s (%s)\n", info.Symbols, info.SymbolsSource)
			if info.Debuglink != "" {
				fmt.Fprintf(w, "debuglink   %s\n", info.Debuglink)
			}
			fmt.Fprintf(w, "functions   %d known by name, %d only by .eh_frame (diff mode locates those by run-pre matching)\n", info.Named, info.FDEOnly)
			fmt.Fprintf(w, "patch-ready %d", len(info.PatchReady))
			if len(info.PatchReady) > 0 {
				fmt.Fprintf(w, ": %s", strings.Join(info.PatchReady, ", "))
			}
			fmt.Fprintln(w)
			return nil
		},
	}
	c.Flags().StringVar(&dbg.File, "debug-file", "", "the file's separate debug file (default: looked for as build does); its build-id must be the file's")
	return c
}
