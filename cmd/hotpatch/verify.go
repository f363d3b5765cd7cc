package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newVerifyCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "verify PATCH [--trust KEY.pub ...]",
		Short: "Check a patch's integrity and signature without applying it",
		Long: `Check a patch without applying it: the format, the sha256 of every member,
and the signature against the trusted keys (--trust, and the *.pub files of
--trust-dir). Exit 0 when it is intact and signed by a trusted key, 4 when it
is unsigned or its signer is not trusted, 7 when it is corrupt or its
signature does not verify.`,
		Args: cobra.ExactArgs(1),
	}
	trust := addTrustFlags(c)
	c.RunE = func(cmd *cobra.Command, args []string) error {
		p, sr, err := verifyBundle(args[0], trust, false)
		if sr != nil {
			sr.warn(cmd.ErrOrStderr())
		}
		if err != nil {
			return err
		}
		if jsonOut {
			return writeJSON(cmd.OutOrStdout(), map[string]any{"patch": args[0], "id": p.ID, "ok": true,
				"signature": sr, "members": len(p.Members), "cold": p.Cold != nil})
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s: ok: patch %s, %d member(s) intact, signed by trusted key %s (%s)\n",
			args[0], p.ID, len(p.Members), sr.KeyID, sr.Source)
		return nil
	}
	return c
}
