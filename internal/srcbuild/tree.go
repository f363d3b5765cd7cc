package srcbuild

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// ErrFixDoesNotApply: a --fix does not apply to the source tree.
var ErrFixDoesNotApply = errors.New("fix does not apply")

// copyTree copies the tree at src to dst (which must not exist): regular
// files with their permission bits, directories, symbolic links as links.
// Nothing under src is written; special files are skipped.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.Mkdir(to, info.Mode().Perm()|0o700)
		case d.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, to)
		case d.Type().IsRegular():
			return copyFile(p, to, info)
		}
		return nil
	})
}

func copyFile(from, to string, info fs.FileInfo) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, info.Mode().Perm()|0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	// Keep the modification time: make decides what to rebuild by it, and a
	// generated file newer than its source must stay so in the copy.
	return os.Chtimes(to, info.ModTime(), info.ModTime())
}

// hunkFailed matches GNU patch's report of a hunk that does not apply.
var hunkFailed = regexp.MustCompile(`(?m)^Hunk #(\d+) FAILED at (\d+)`)

// patching matches the line GNU patch prints before working on a file.
var patching = regexp.MustCompile(`(?m)^(?:patching|checking) file '?([^'\n]+)'?$`)

// applyFixes applies each fix in order to dir with `patch -p1` (GNU patch:
// unified diffs, git format-patch output included). Each fix is first tried
// with --dry-run so that a fix that does not apply leaves nothing half-done,
// and the error names the file and the hunk.
func applyFixes(dir string, fixes []string) error {
	for _, fix := range fixes {
		abs, err := filepath.Abs(fix)
		if err != nil {
			return err
		}
		if _, err := os.Stat(abs); err != nil {
			return fmt.Errorf("fix %s: %w", fix, err)
		}
		for _, dry := range []bool{true, false} {
			args := []string{"-p1", "--batch", "--forward", "--no-backup-if-mismatch", "--reject-file=-", "-i", abs}
			if dry {
				args = append(args, "--dry-run")
			}
			cmd := exec.Command("patch", args...)
			cmd.Dir = dir
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Run(); err != nil {
				return fixError(fix, out.String(), err)
			}
		}
	}
	return nil
}

// fixError explains why patch refused a fix: the file and hunk that failed.
func fixError(fix, out string, err error) error {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return fmt.Errorf("apply fix %s: run patch: %w", fix, err)
	}
	var fails []string
	file := "?"
	for _, line := range strings.Split(out, "\n") {
		if m := patching.FindStringSubmatch(line); m != nil {
			file = m[1]
		}
		if m := hunkFailed.FindStringSubmatch(line); m != nil {
			fails = append(fails, fmt.Sprintf("%s hunk #%s (at line %s)", file, m[1], m[2]))
		}
		if strings.Contains(line, "Reversed (or previously applied) patch detected") {
			fails = append(fails, file+": already applied (the tree already has this fix)")
		}
		if strings.Contains(line, "can't find file to patch") || strings.Contains(line, "No file to patch") {
			fails = append(fails, "a file the fix names is not in the tree (is it a -p1 diff of this project?)")
		}
	}
	if len(fails) == 0 {
		fails = append(fails, strings.TrimSpace(out))
	}
	return fmt.Errorf("%w: %s: %s", ErrFixDoesNotApply, fix, strings.Join(fails, "; "))
}
