package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hotpatch/hotpatch/internal/patchfile"
)

func newInspectCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect PATCH",
		Short: "Show a patch's manifest",
		Long: `Show a patch's manifest: id, target (path, build-id, sha256), the functions
it replaces, the coldpatch, the members with their sha256, and who signed it.
The member hashes are checked; the signature is not (see hotpatch verify).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := patchfile.ReadFile(args[0])
			if err != nil {
				return err
			}
			if jsonOut {
				return writeJSON(cmd.OutOrStdout(), struct {
					patchfile.Manifest
					Signature *patchfile.Signature `json:"signature,omitempty"`
				}{p.Manifest, p.Signature()})
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "patch      %s (format %d)\n", p.ID, p.Format)
			if p.Description != "" {
				fmt.Fprintf(w, "about      %s\n", p.Description)
			}
			fmt.Fprintf(w, "target     %s (%s)\n  build-id %s\n", p.Target.Path, p.Target.Machine, p.Target.BuildID)
			if p.Target.SHA256 != "" {
				fmt.Fprintf(w, "  sha256   %s\n", p.Target.SHA256)
			}
			if s := p.Signature(); s != nil {
				fmt.Fprintf(w, "signed     by key %s (%s; not verified here: see hotpatch verify)\n", s.KeyID, s.Algorithm)
			} else {
				fmt.Fprintf(w, "signed     no\n")
			}
			fmt.Fprintf(w, "functions\n")
			for _, f := range p.Functions {
				var attrs []string
				if f.New {
					attrs = append(attrs, "added")
				} else {
					attrs = append(attrs, fmt.Sprintf("%#x %d bytes", f.Addr, f.Size))
				}
				if f.Local {
					attrs = append(attrs, "static in "+f.File)
				}
				if len(f.Orig) > 0 {
					attrs = append(attrs, fmt.Sprintf("run-pre %d bytes", len(f.Orig)))
				}
				fmt.Fprintf(w, "  %-24s %s  (%s)\n", f.Name, f.Object, strings.Join(attrs, ", "))
			}
			if p.Cold != nil {
				fmt.Fprintf(w, "coldpatch  %s replaces the target on disk\n  sha256   %s\n", p.Cold.Member, p.Cold.SHA256)
				if p.Cold.BuildID != "" {
					fmt.Fprintf(w, "  build-id %s\n", p.Cold.BuildID)
				}
			}
			fmt.Fprintf(w, "members\n")
			for _, m := range p.Members {
				fmt.Fprintf(w, "  %-24s %-6s %9d bytes  sha256 %s\n", m.Name, m.Kind, m.Size, m.SHA256)
			}
			return nil
		},
	}
}
