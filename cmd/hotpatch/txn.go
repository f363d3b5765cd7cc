package main

// apply and revert: the hot+cold transaction of internal/txn, and its
// output. Flags are in commands.go, fleet.go and cold.go.

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/hotpatch/hotpatch/internal/engine"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/txn"
)

func txnOptions(cmd *cobra.Command, pids []int, opt engine.Options, ff *fleetFlags, cf *coldFlags) (txn.Options, func(), error) {
	if err := cf.check(); err != nil {
		return txn.Options{}, nil, err
	}
	if ff.jobs < 0 {
		return txn.Options{}, nil, usageError{fmt.Errorf("--jobs must be positive")}
	}
	if err := checkPIDs(pids); err != nil {
		return txn.Options{}, nil, err
	}
	f, err := ff.filter(cmd)
	if err != nil {
		return txn.Options{}, nil, err
	}
	o := txn.Options{PIDs: pids, NoCold: cf.noCold, ColdOnly: cf.coldOnly, Engine: opt, Jobs: ff.jobs, AllOrNone: ff.allOrNone,
		Cold: cf.options(), Filter: f}
	done := func() {}
	if len(pids) != 1 || !f.Empty() {
		if bar := newProgressBar(cmd.ErrOrStderr()); bar != nil {
			o.Progress, done = bar.update, bar.clear
		}
	}
	return o, done, nil
}

// runApply verifies the bundle, then runs the transaction.
func runApply(cmd *cobra.Command, path string, pids []int, opt engine.Options, ff *fleetFlags, bf *applyBundleFlags) error {
	if err := bf.cold.check(); err != nil {
		return err
	}
	p, sr, err := verifyBundle(path, bf.trust, bf.allowUnsigned)
	if sr != nil {
		sr.warn(cmd.ErrOrStderr())
	}
	if err != nil {
		return err
	}
	if sr.Warning == "" && !jsonOut {
		fmt.Fprintf(cmd.OutOrStdout(), "patch %s: intact, signed by trusted key %s (%s)\n", p.ID, sr.KeyID, sr.Source)
	}
	o, done, err := txnOptions(cmd, pids, opt, ff, bf.cold)
	if err != nil {
		return err
	}
	o.Trusted = sr.Trusted
	res, err := txn.Apply(p, o)
	done()
	return printTxn(cmd, res, err, map[string]any{"signature": sr})
}

// runRevert runs the revert transaction for a patch id or a patch file.
func runRevert(cmd *cobra.Command, arg string, pids []int, opt engine.Options, ff *fleetFlags, rc *revertColdFlags) error {
	id := arg
	var p *patchfile.Patch
	if st, err := os.Stat(arg); err == nil && !st.IsDir() {
		if p, err = patchfile.ReadFile(arg); err != nil {
			return err
		}
		id = p.ID
	}
	o, done, err := txnOptions(cmd, pids, opt, ff, rc.cold)
	if err != nil {
		return err
	}
	res, err := txn.Revert(id, p, o)
	done()
	return printTxn(cmd, res, err, nil)
}

// printTxn prints a transaction's result and returns err (which sets the
// exit code). JSON: one document, the hot half's report (the process's, or
// the host-wide one) with "cold" (the file's report), "transaction" (each
// half's outcome) and, on failure, "error" and "exit_code".
func printTxn(cmd *cobra.Command, res *txn.Result, err error, extra map[string]any) error {
	w := cmd.OutOrStdout()
	if res == nil {
		return err
	}
	if jsonOut {
		doc := map[string]any{}
		var hot any
		switch {
		case res.Applied != nil:
			hot = res.Applied
		case res.Reverted != nil:
			hot = res.Reverted
		case res.Fleet != nil:
			hot = res.Fleet
		}
		if hot != nil {
			b, _ := json.Marshal(hot)
			json.Unmarshal(b, &doc)
		}
		for k, v := range extra {
			doc[k] = v
		}
		doc["patch_id"] = res.PatchID
		if res.ColdFile != nil {
			doc["cold"] = res.ColdFile
		}
		if res.RolledOut != nil {
			doc["rollback"] = res.RolledOut
		}
		doc["transaction"] = res
		if err != nil || res.Fleet != nil { // the host-wide document always had its exit code
			doc["exit_code"] = exitCode(err)
		}
		if err != nil {
			doc["error"] = clean(err.Error())
		}
		if werr := writeJSON(w, doc); werr != nil {
			return werr
		}
		if err != nil {
			jsonOut = false // the document carries the error: main's report prints only the stderr line
		}
		return err
	}
	switch {
	case res.Applied != nil:
		printApplied(w, res.Applied)
	case res.Reverted != nil:
		printReverted(w, res.Reverted)
	case res.Fleet != nil:
		printFleetText(w, res.Fleet)
	}
	printCold(w, res.ColdFile)
	printHalves(w, res)
	return err
}

// printHalves says what became of each half when it is not simply done.
func printHalves(w io.Writer, res *txn.Result) {
	plain := func(h txn.Half) bool {
		return h.Outcome == txn.Done || h.Outcome == txn.Already || h.Outcome == txn.NotAsked || h.Outcome == txn.DryRun
	}
	if plain(res.Hot) && plain(res.Cold) {
		return
	}
	for _, h := range []struct {
		name string
		h    txn.Half
	}{{"hot half (processes)", res.Hot}, {"cold half (file on disk)", res.Cold}} {
		line := fmt.Sprintf("%s %s: %s", res.Operation, h.name, h.h.Outcome)
		if h.h.Reason != "" {
			line += ": " + h.h.Reason
		}
		fmt.Fprintln(w, line)
	}
}
