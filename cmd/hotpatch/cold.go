package main

// Signed bundles and the coldpatch on the command line: the flags of build,
// apply and revert that deal with keys, trust and the fixed file, and what
// those commands do with them before (apply, revert) or after (build) their
// hotpatch part.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/hotpatch/hotpatch/internal/coldpatch"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/safefile"
	"github.com/hotpatch/hotpatch/internal/sign"
	"github.com/hotpatch/hotpatch/internal/txn"
)

// bundleExit maps the errors of signing, trust and the coldpatch to exit
// codes (0: none of them).
func bundleExit(err error) int {
	switch {
	case errors.Is(err, sign.ErrBadSignature):
		return exitBadInput
	case errors.Is(err, sign.ErrUnsigned), errors.Is(err, sign.ErrUntrusted),
		errors.Is(err, coldpatch.ErrRefused), errors.Is(err, coldpatch.ErrWrongFile), errors.Is(err, txn.ErrNoCold):
		return exitRefused
	case errors.Is(err, coldpatch.ErrNoBackup):
		return exitNotApplied
	}
	return 0
}

// extras collects what a command adds to its output: printed after the
// command's own text, or merged into its JSON document (see captureJSON).
type extras struct {
	fields map[string]any
	lines  []string
}

func (e *extras) set(k string, v any) {
	if e.fields == nil {
		e.fields = map[string]any{}
	}
	e.fields[k] = v
}

// captureJSON makes c's JSON document (written by RunE to cmd.OutOrStdout)
// carry e's fields: with --json it redirects the output to a buffer and, once
// RunE succeeded, merges e into the document and writes it out. In text mode
// it prints e's lines after the command's own.
func (e *extras) capture(cmd *cobra.Command) {
	out := cmd.OutOrStdout()
	var buf *bytes.Buffer
	if jsonOut {
		buf = &bytes.Buffer{}
		cmd.SetOut(buf)
	}
	cmd.PostRunE = func(cmd *cobra.Command, args []string) error {
		if buf == nil {
			for _, l := range e.lines {
				fmt.Fprintln(out, l)
			}
			return nil
		}
		cmd.SetOut(out)
		var doc map[string]any
		if buf.Len() == 0 {
			doc = map[string]any{}
		} else if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
			_, err := out.Write(buf.Bytes()) // not one object: leave it alone
			return err
		}
		for k, v := range e.fields {
			doc[k] = v
		}
		return writeJSON(out, doc)
	}
}

// buildBundleFlags are build's --key and --cold.
type buildBundleFlags struct {
	key, cold string
}

func (f *buildBundleFlags) addFlags(c *cobra.Command) {
	c.Flags().StringVar(&f.key, "key", "", "sign the patch with this ed25519 private key (see hotpatch keygen)")
	c.Flags().StringVar(&f.cold, "cold", "", "add the coldpatch: the fixed (rebuilt) target file that replaces the target on disk")
}

// finish adds the coldpatch and the signature to a built patch, before it is
// written.
func (f *buildBundleFlags) finish(cmd *cobra.Command, p *patchfile.Patch, target string) error {
	var e extras
	if f.cold != "" {
		orig, err := safefile.Read(target, patchfile.MaxTotalSize, 0)
		if err != nil {
			return fmt.Errorf("coldpatch: read target: %w", err)
		}
		fixed, err := safefile.Read(f.cold, patchfile.MaxTotalSize, 0)
		if err != nil {
			return fmt.Errorf("coldpatch: %w", err)
		}
		var funcs []string
		for _, fn := range p.Functions {
			if !fn.New {
				funcs = append(funcs, fn.Name)
			}
		}
		if err := coldpatch.CheckFixed(orig, fixed, funcs); err != nil {
			return fmt.Errorf("coldpatch %s for %s: %w", f.cold, target, err)
		}
		// Both halves must be able to apply: never sign a bundle whose cold
		// half would install while its hot half cannot apply.
		if err := txn.CheckRedirects(orig, p); err != nil {
			return fmt.Errorf("%s: %w", target, err)
		}
		if err := p.AddCold(fixed, hexSHA256(orig), coldpatch.BuildID(fixed)); err != nil {
			return fmt.Errorf("coldpatch: %w", err)
		}
		e.set("cold", p.Cold)
		e.lines = append(e.lines, fmt.Sprintf("  coldpatch %s (sha256 %s) replaces %s (sha256 %s)",
			f.cold, p.Cold.SHA256, p.Target.Path, p.Target.SHA256))
	}
	if f.key != "" {
		priv, err := sign.LoadPrivateKey(f.key)
		if err != nil {
			return err
		}
		if err := sign.Sign(p, priv); err != nil {
			return fmt.Errorf("sign: %w", err)
		}
		e.set("signed_by", p.Signature().KeyID)
		e.lines = append(e.lines, "  signed by key "+p.Signature().KeyID)
	} else {
		e.lines = append(e.lines, "  unsigned (apply will refuse it without --allow-unsigned; sign with --key)")
	}
	e.capture(cmd)
	return nil
}

func hexSHA256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// trustFlags select the trusted keys.
type trustFlags struct {
	files []string
	dir   string
}

func addTrustFlags(c *cobra.Command) *trustFlags {
	t := &trustFlags{}
	c.Flags().StringArrayVar(&t.files, "trust", nil, "trust this ed25519 public key (repeatable); keys in --trust-dir are trusted too")
	c.Flags().StringVar(&t.dir, "trust-dir", sign.DefaultTrustDir, "directory of trusted public keys (*.pub)")
	return t
}

func (t *trustFlags) keyring() (*sign.Keyring, error) {
	var dirs []string
	if t.dir != "" {
		dirs = append(dirs, t.dir)
	}
	return sign.LoadKeyring(t.files, dirs...)
}

// sigReport is the signature part of apply's and verify's reports.
type sigReport struct {
	Signed  bool   `json:"signed"`
	Trusted bool   `json:"trusted"`
	KeyID   string `json:"key_id,omitempty"`
	Source  string `json:"trusted_by,omitempty"`
	Warning string `json:"warning,omitempty"`
	// KeyWarnings name the trusted keys (or directories) ignored because
	// their ownership or mode made them unsafe to trust.
	KeyWarnings []string `json:"key_warnings,omitempty"`
}

// warn prints the report's warnings on w.
func (r *sigReport) warn(w io.Writer) {
	for _, k := range r.KeyWarnings {
		fmt.Fprintf(w, "hotpatch: warning: %s\n", k)
	}
	if r.Warning != "" {
		fmt.Fprintf(w, "hotpatch: warning: %s\n", r.Warning)
	}
}

// verifyBundle reads a bundle (checking every member's hash) and its
// signature against the trusted keys. An unsigned or untrusted bundle is an
// error unless allowUnsigned; a signature that does not verify always is.
func verifyBundle(path string, t *trustFlags, allowUnsigned bool) (*patchfile.Patch, *sigReport, error) {
	p, err := patchfile.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	ring, err := t.keyring()
	if err != nil {
		return nil, nil, err
	}
	rep := &sigReport{Signed: p.Signature() != nil, KeyWarnings: ring.Warnings}
	if rep.Signed {
		rep.KeyID = p.Signature().KeyID
	}
	k, err := sign.Verify(p, ring)
	switch {
	case err == nil:
		rep.Trusted, rep.Source = true, k.Source
	case errors.Is(err, sign.ErrBadSignature):
		return nil, rep, fmt.Errorf("%s: %w", path, err)
	case !allowUnsigned:
		return nil, rep, fmt.Errorf("%s: %w (trust the signer's public key with --trust or in %s; apply accepts it anyway with --allow-unsigned)", path, err, t.dir)
	default:
		rep.Warning = err.Error() + " (accepted: --allow-unsigned)"
	}
	return p, rep, nil
}

// coldFlags are the coldpatch flags of apply and revert.
type coldFlags struct {
	noCold, coldOnly, force bool
	stateDir                string
}

func addColdFlags(c *cobra.Command) *coldFlags {
	f := &coldFlags{}
	c.Flags().BoolVar(&f.noCold, "no-cold", false, "leave the file on disk alone (hotpatch only)")
	c.Flags().BoolVar(&f.coldOnly, "cold-only", false, "only replace (revert: restore) the file on disk; no process is touched")
	c.Flags().BoolVar(&f.force, "force-cold", false, "replace (restore) the file on disk even if its content is not the one expected")
	c.Flags().StringVar(&f.stateDir, "state-dir", os.Getenv("HOTPATCH_STATE_DIR"),
		"where the originals of replaced files are kept (env HOTPATCH_STATE_DIR; default "+coldpatch.DefaultStateDir+" for root, $XDG_STATE_HOME/hotpatch for other users)")
	return f
}

func (f *coldFlags) check() error {
	if f.noCold && f.coldOnly {
		return usageError{fmt.Errorf("--no-cold and --cold-only exclude each other")}
	}
	return nil
}

func (f *coldFlags) options() coldpatch.Options {
	return coldpatch.Options{StateDir: f.stateDir, Force: f.force}
}

// applyBundleFlags are apply's flags for bundles.
type applyBundleFlags struct {
	trust         *trustFlags
	allowUnsigned bool
	cold          *coldFlags
}

func addApplyBundleFlags(c *cobra.Command) *applyBundleFlags {
	f := &applyBundleFlags{trust: addTrustFlags(c), cold: addColdFlags(c)}
	c.Flags().BoolVar(&f.allowUnsigned, "allow-unsigned", false, "apply a patch that is unsigned or signed by an untrusted key")
	return f
}

func printCold(w io.Writer, r *coldpatch.Result) {
	if r == nil {
		return
	}
	switch r.Action {
	case coldpatch.Replaced:
		fmt.Fprintf(w, "coldpatch %s: replaced %s (sha256 %.12s -> %.12s), original kept in %s\n", r.ID, r.Path, r.Before, r.After, r.Backup)
	case coldpatch.AlreadyFixed:
		fmt.Fprintf(w, "coldpatch %s: %s already is the fixed file: nothing to do\n", r.ID, r.Path)
	case coldpatch.Restored:
		fmt.Fprintf(w, "coldpatch %s: restored the original %s (sha256 %.12s)\n", r.ID, r.Path, r.After)
	case coldpatch.AlreadyOriginal:
		fmt.Fprintf(w, "coldpatch %s: %s already is the original: nothing to do\n", r.ID, r.Path)
	}
}

// revertColdFlags are revert's coldpatch flags.
type revertColdFlags struct{ cold *coldFlags }

func addRevertColdFlags(c *cobra.Command) *revertColdFlags {
	return &revertColdFlags{cold: addColdFlags(c)}
}
