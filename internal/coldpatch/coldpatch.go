// Package coldpatch replaces a file on disk with its fixed version, so that
// every process started afterwards runs the fix, and puts the original back.
//
// The replacement is atomic (rename(2) within one directory): at every
// instant the path names either the complete original or the complete fixed
// file, and processes that already run the old file keep their mapping of the
// old inode. The new file gets the original's mode (setuid/setgid bits
// included), owner and extended attributes (file capabilities, ACLs, SELinux
// labels), in the order the kernel requires:
//
//  1. write the content to a temporary file in the target's directory;
//  2. fchown, which clears S_ISUID/S_ISGID and security.capability
//     (chown(2), capabilities(7) "File capability extended attribute"), so it
//     comes first;
//  3. fchmod with the original's mode bits;
//  4. fsetxattr every extended attribute of the original;
//  5. fsync the file, rename it over the target, fsync the directory so the
//     rename itself is durable (fsync(2): "Calling fsync() does not
//     necessarily ensure that the entry in the directory containing the file
//     has also reached disk").
//
// Apply keeps the original (content and attributes) as a backup in a state
// directory, keyed by patch id; Revert restores it the same way. Both are
// idempotent: a file that already has the wanted content is left alone.
// Content that is neither the original nor the fixed file is refused
// (ErrRefused) unless Options.Force is set.
package coldpatch

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// DefaultStateDir is where backups are kept unless Options.StateDir says
// otherwise.
const DefaultStateDir = "/var/lib/hotpatch"

// Sentinel errors callers branch on.
var (
	// ErrRefused: the file on disk is neither the original nor the fixed
	// file (use Force to replace it anyway). Nothing was changed.
	ErrRefused = errors.New("coldpatch refused")
	// ErrNoBackup: revert found no backup for that patch.
	ErrNoBackup = errors.New("no coldpatch backup for this patch")
	// ErrWrongFile: the fixed file is not a version of the target (another
	// machine, type or library, or none of the patched functions).
	ErrWrongFile = errors.New("fixed file does not match the target")
)

// Options for Apply and Revert.
type Options struct {
	// StateDir holds the backups (StateDir/cold/<patch id>/); default
	// DefaultStateDir.
	StateDir string
	// Force replaces (or restores) the file whatever its current content.
	Force bool
}

func (o Options) stateDir() string {
	if o.StateDir == "" {
		return DefaultStateDir
	}
	return o.StateDir
}

// Spec is one coldpatch to apply.
type Spec struct {
	ID          string // patch id: names the backup
	Path        string // the file to replace
	OrigSHA256  string // hex sha256 of the original the patch was built for
	FixedSHA256 string // hex sha256 of Fixed
	Fixed       []byte // the fixed file
}

// Actions reported in Result.
const (
	Replaced        = "replaced"         // apply: the fixed file is in place
	AlreadyFixed    = "already-fixed"    // apply: it already was
	Restored        = "restored"         // revert: the original is back
	AlreadyOriginal = "already-original" // revert: it already was
)

// Result says what Apply or Revert did.
type Result struct {
	ID     string `json:"id"`
	Path   string `json:"path"`
	Action string `json:"action"`
	// Before and After are the sha256 of the file before and after.
	Before string `json:"sha256_before"`
	After  string `json:"sha256_after"`
	// Backup is where the original is kept (apply) or was kept (revert).
	Backup string `json:"backup,omitempty"`
	Forced bool   `json:"forced,omitempty"`
}

// record is the backup's description, StateDir/cold/<id>/record.json.
type record struct {
	ID          string `json:"id"`
	Path        string `json:"path"`
	OrigSHA256  string `json:"orig_sha256"`
	FixedSHA256 string `json:"fixed_sha256"`
}

// beforeRename, when set (by tests), runs after the temporary file is
// complete and before the rename; an error aborts the replacement, and
// os.Exit in it simulates a crash.
var beforeRename func(tmp, target string) error

func hashHex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func checkID(id string) error {
	if id == "" || len(id) > 64 || strings.ContainsAny(id, "/\x00 \n") || id == "." || id == ".." {
		return fmt.Errorf("coldpatch: bad patch id %q", id)
	}
	return nil
}

// Apply replaces s.Path by s.Fixed if its content is the original's (or
// whatever it is, with Force), keeping a backup of the original. A file that
// already has the fixed content is left alone. On any error the file at
// s.Path is unchanged.
func Apply(s Spec, opt Options) (*Result, error) {
	if err := checkID(s.ID); err != nil {
		return nil, err
	}
	if hashHex(s.Fixed) != s.FixedSHA256 {
		return nil, fmt.Errorf("coldpatch %s: fixed file does not match its sha256", s.ID)
	}
	unlock, err := lock(opt.stateDir())
	if err != nil {
		return nil, err
	}
	defer unlock()
	path, err := filepath.EvalSymlinks(s.Path)
	if err != nil {
		return nil, fmt.Errorf("coldpatch %s: %w", s.ID, err)
	}
	cur, m, err := readFile(path)
	if err != nil {
		return nil, fmt.Errorf("coldpatch %s: %w", s.ID, err)
	}
	res := &Result{ID: s.ID, Path: path, Before: hashHex(cur)}
	if res.Before == s.FixedSHA256 {
		res.Action, res.After = AlreadyFixed, res.Before
		return res, nil
	}
	if res.Before != s.OrigSHA256 {
		if !opt.Force {
			return nil, fmt.Errorf("%w: %s has sha256 %s, neither the original (%s) nor the fixed file (%s) of patch %s; use --force-cold to replace it anyway",
				ErrRefused, path, res.Before, s.OrigSHA256, s.FixedSHA256, s.ID)
		}
		res.Forced = true
	}
	removeStale(path)
	// Back up the original first: if that fails nothing has changed.
	dir := filepath.Join(opt.stateDir(), "cold", s.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("coldpatch %s: backup: %w", s.ID, err)
	}
	backup := filepath.Join(dir, "original")
	if err := replace(backup, cur, m, nil); err != nil {
		return nil, fmt.Errorf("coldpatch %s: backup: %w", s.ID, err)
	}
	rec, _ := json.MarshalIndent(record{ID: s.ID, Path: path, OrigSHA256: res.Before, FixedSHA256: s.FixedSHA256}, "", "  ")
	if err := replace(filepath.Join(dir, "record.json"), rec, &meta{mode: 0o600}, nil); err != nil {
		return nil, fmt.Errorf("coldpatch %s: backup: %w", s.ID, err)
	}
	if err := replace(path, s.Fixed, m, beforeRename); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("coldpatch %s: replace %s: %w", s.ID, path, err)
	}
	res.Action, res.After, res.Backup = Replaced, s.FixedSHA256, backup
	return res, nil
}

// HasBackup reports whether a backup for patch id exists.
func HasBackup(id string, opt Options) bool {
	if checkID(id) != nil {
		return false
	}
	_, err := os.Stat(filepath.Join(opt.stateDir(), "cold", id, "record.json"))
	return err == nil
}

// Revert puts back the original kept by Apply for patch id, with the
// original's mode, owner and extended attributes, if the file still has the
// fixed content (or whatever it has, with Force). A file that already has the
// original content is left alone. The backup is removed once the original is
// in place.
func Revert(id string, opt Options) (*Result, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	unlock, err := lock(opt.stateDir())
	if err != nil {
		return nil, err
	}
	defer unlock()
	dir := filepath.Join(opt.stateDir(), "cold", id)
	rb, err := os.ReadFile(filepath.Join(dir, "record.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w %s (in %s)", ErrNoBackup, id, opt.stateDir())
	}
	if err != nil {
		return nil, fmt.Errorf("coldpatch %s: %w", id, err)
	}
	var rec record
	if err := json.Unmarshal(rb, &rec); err != nil || rec.Path == "" {
		return nil, fmt.Errorf("coldpatch %s: corrupt backup record: %v", id, err)
	}
	backup := filepath.Join(dir, "original")
	orig, m, err := readFile(backup)
	if err != nil {
		return nil, fmt.Errorf("coldpatch %s: backup: %w", id, err)
	}
	if hashHex(orig) != rec.OrigSHA256 {
		return nil, fmt.Errorf("coldpatch %s: backup %s is corrupt (sha256 differs from the record)", id, backup)
	}
	cur, _, err := readFile(rec.Path)
	if err != nil {
		return nil, fmt.Errorf("coldpatch %s: %w", id, err)
	}
	res := &Result{ID: id, Path: rec.Path, Before: hashHex(cur), Backup: backup}
	switch {
	case res.Before == rec.OrigSHA256:
		res.Action, res.After = AlreadyOriginal, res.Before
	case res.Before != rec.FixedSHA256 && !opt.Force:
		return nil, fmt.Errorf("%w: %s has sha256 %s, not the fixed file (%s) of patch %s; use --force-cold to restore the original anyway",
			ErrRefused, rec.Path, res.Before, rec.FixedSHA256, id)
	default:
		res.Forced = res.Before != rec.FixedSHA256
		removeStale(rec.Path)
		if err := replace(rec.Path, orig, m, beforeRename); err != nil {
			return nil, fmt.Errorf("coldpatch %s: restore %s: %w", id, rec.Path, err)
		}
		res.Action, res.After = Restored, rec.OrigSHA256
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("coldpatch %s: remove backup: %w", id, err)
	}
	return res, nil
}

// lock takes an exclusive flock(2) on StateDir/cold/.lock so that two
// hotpatch runs do not replace the same files concurrently.
func lock(state string) (func(), error) {
	dir := filepath.Join(state, "cold")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("coldpatch state: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("coldpatch state: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("coldpatch state: lock: %w", err)
	}
	return func() { f.Close() }, nil
}

// tempPattern names the temporary files next to target (hidden, so that
// globs in the directory do not see them).
func tempPattern(target string) string { return "." + filepath.Base(target) + ".hotpatch-" }

// removeStale removes temporary files a crashed run left next to target.
// Callers hold the lock, so no other run is using them.
func removeStale(target string) {
	old, _ := filepath.Glob(filepath.Join(filepath.Dir(target), globEscape(tempPattern(target))+"*"))
	for _, o := range old {
		os.Remove(o)
	}
}

func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// meta is what is copied from the original besides its content.
type meta struct {
	mode     uint32 // permission bits and S_ISUID, S_ISGID, S_ISVTX
	uid, gid int
	own      bool // set the owner
	xattrs   []xattr
}

type xattr struct {
	name  string
	value []byte
}

// readFile reads a regular file and its mode, owner and extended attributes,
// all through one descriptor so they describe the same inode.
func readFile(path string) ([]byte, *meta, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, nil, fmt.Errorf("stat %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, nil, fmt.Errorf("%s is not a regular file", path)
	}
	m := &meta{mode: st.Mode & 0o7777, uid: int(st.Uid), gid: int(st.Gid), own: true}
	if m.xattrs, err = listXattrs(int(f.Fd())); err != nil {
		return nil, nil, fmt.Errorf("extended attributes of %s: %w", path, err)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(f); err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	return buf.Bytes(), m, nil
}

// listXattrs reads every extended attribute of fd (flistxattr(2),
// fgetxattr(2)); a filesystem without xattr support has none.
func listXattrs(fd int) ([]xattr, error) {
	var names []byte
	for {
		n, err := unix.Flistxattr(fd, nil)
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, nil
		}
		names = make([]byte, n)
		n, err = unix.Flistxattr(fd, names)
		if errors.Is(err, unix.ERANGE) {
			continue // the list grew between the two calls
		}
		if err != nil {
			return nil, err
		}
		names = names[:n]
		break
	}
	var out []xattr
	for _, name := range strings.Split(strings.TrimRight(string(names), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		for {
			n, err := unix.Fgetxattr(fd, name, nil)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			v := make([]byte, n)
			n, err = unix.Fgetxattr(fd, name, v)
			if errors.Is(err, unix.ERANGE) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			out = append(out, xattr{name, v[:n]})
			break
		}
	}
	return out, nil
}

// replace atomically replaces target by a file with content data and the
// attributes m (see the package comment for the order). hook, if set, runs
// just before the rename. On error target is unchanged and the temporary file
// removed.
func replace(target string, data []byte, m *meta, hook func(tmp, target string) error) (err error) {
	f, err := os.CreateTemp(filepath.Dir(target), tempPattern(target))
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	fd := int(f.Fd())
	if m.own {
		if err := unix.Fchown(fd, m.uid, m.gid); err != nil {
			return fmt.Errorf("chown %s: %w", tmp, err)
		}
	}
	if err := unix.Fchmod(fd, m.mode); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	for _, x := range m.xattrs {
		if err := unix.Fsetxattr(fd, x.name, x.value, 0); err != nil {
			return fmt.Errorf("set extended attribute %s on %s: %w", x.name, tmp, err)
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if hook != nil {
		if err := hook(tmp, target); err != nil {
			return err
		}
	}
	// rename(2) replaces target atomically: "If newpath already exists, it
	// will be atomically replaced, so that there is no point at which
	// another process attempting to access newpath will find it missing."
	if err := os.Rename(tmp, target); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(target))
	if err != nil {
		return fmt.Errorf("%s replaced, but open its directory to sync: %w", target, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("%s replaced, but sync its directory: %w", target, err)
	}
	return nil
}

// CheckFixed checks, before a coldpatch is built, that fixed is a version of
// orig: both ELF files of the same class, machine and type, with the same
// SONAME for a library, and (when fixed has a symbol table) defining at least
// one of the functions the patch replaces. It catches a fixed file given for
// another target.
func CheckFixed(orig, fixed []byte, funcs []string) error {
	if bytes.Equal(orig, fixed) {
		return fmt.Errorf("%w: it is identical to the target", ErrWrongFile)
	}
	of, err := elf.NewFile(bytes.NewReader(orig))
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	ff, err := elf.NewFile(bytes.NewReader(fixed))
	if err != nil {
		return fmt.Errorf("%w: not an ELF file: %v", ErrWrongFile, err)
	}
	if of.Class != ff.Class || of.Machine != ff.Machine || of.Type != ff.Type {
		return fmt.Errorf("%w: it is %v %v %v, the target is %v %v %v", ErrWrongFile,
			ff.Class, ff.Machine, ff.Type, of.Class, of.Machine, of.Type)
	}
	osn, _ := of.DynString(elf.DT_SONAME)
	fsn, _ := ff.DynString(elf.DT_SONAME)
	if strings.Join(osn, ",") != strings.Join(fsn, ",") {
		return fmt.Errorf("%w: SONAME %q, the target's is %q", ErrWrongFile, fsn, osn)
	}
	syms, _ := ff.Symbols()
	dyn, _ := ff.DynamicSymbols()
	syms = append(syms, dyn...)
	if len(syms) == 0 || len(funcs) == 0 {
		return nil
	}
	have := map[string]bool{}
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Section != elf.SHN_UNDEF {
			have[s.Name] = true
		}
	}
	for _, f := range funcs {
		if have[f] {
			return nil
		}
	}
	return fmt.Errorf("%w: it defines none of the patched functions (%s)", ErrWrongFile, strings.Join(funcs, ", "))
}
