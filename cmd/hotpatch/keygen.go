package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/hotpatch/hotpatch/internal/sign"
)

func newKeygenCmd() *cobra.Command {
	var out string
	c := &cobra.Command{
		Use:   "keygen -o KEY",
		Short: "Generate an ed25519 signing key (KEY, mode 0600) and its public key (KEY.pub)",
		Long: `Generate an ed25519 key pair for signing patches. KEY (mode 0600) is the
private key, given to "hotpatch build --key KEY"; KEY.pub is the public key,
given to "hotpatch apply --trust KEY.pub" or installed in
/etc/hotpatch/trusted.d/. Both are PEM (PKCS #8 / PKIX), readable by openssl.
Existing files are never overwritten.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usageError{fmt.Errorf("keygen needs -o KEY")}
			}
			pub, id, err := sign.GenerateKey(out)
			if err != nil {
				return err
			}
			if jsonOut {
				return writeJSON(cmd.OutOrStdout(), map[string]string{"private_key": out, "public_key": pub, "key_id": id})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote private key %s and public key %s (key id %s)\n", out, pub, id)
			return nil
		},
	}
	c.Flags().StringVarP(&out, "output", "o", "", "private key file to write (the public key goes to KEY.pub)")
	return c
}
