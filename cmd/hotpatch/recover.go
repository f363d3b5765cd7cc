package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/hotpatch/hotpatch/internal/engine"
)

func newRecoverCmd() *cobra.Command {
	var pid int
	c := &cobra.Command{
		Use:   "recover --pid PID",
		Short: "Settle patches an interrupted hotpatch command left in transition",
		Long: `If hotpatch was killed while applying or reverting, the process keeps running
and its patch record says the patch is in transition. recover finishes an apply
whose jumps were all written, rolls back any other, finishes an interrupted
revert, and frees patch regions no thread can still be executing in.`,
		Args: cobra.NoArgs,
	}
	opt := engineOptions(c)
	c.Flags().IntVar(&pid, "pid", 0, "process to recover")
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if pid <= 0 {
			return usageError{fmt.Errorf("recover needs --pid")}
		}
		rep, err := engine.Recover(pid, *opt)
		if err != nil {
			return err
		}
		if jsonOut {
			return writeJSON(cmd.OutOrStdout(), rep)
		}
		w := cmd.OutOrStdout()
		if len(rep.Actions) == 0 {
			fmt.Fprintf(w, "process %d: nothing in transition\n", pid)
			return nil
		}
		for _, a := range rep.Actions {
			fmt.Fprintf(w, "%s: was %s, %s", a.PatchID, a.Was, a.Action)
			if a.Detail != "" {
				fmt.Fprintf(w, " (%s)", a.Detail)
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "stall %v (longest stop of one thread), pause %v\n", rep.Stall.Round(time.Microsecond), rep.Pause.Round(time.Microsecond))
		return nil
	}
	return c
}
