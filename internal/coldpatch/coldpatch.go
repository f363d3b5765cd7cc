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
	"crypto/rand"
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

	"github.com/hotpatch/hotpatch/internal/elfsym"
	"github.com/hotpatch/hotpatch/internal/safefile"
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
	// machine, type or library, or none of the patched functions), or the
	// file at the path is not the patch's target (build-id, symbolic link).
	ErrWrongFile = errors.New("fixed file does not match the target")
)

// Options for Apply and Revert.
type Options struct {
	// StateDir holds the backups (StateDir/cold/<patch id>/); default
	// DefaultStateDir for root, $XDG_STATE_HOME/hotpatch (or
	// ~/.local/state/hotpatch) for other users. It must be the user's own,
	// mode 0700 (safefile.PrivateDir).
	StateDir string
	// Force replaces (or restores) the file whatever its current content
	// (apply still requires the target's build-id: see Spec.BuildID).
	Force bool
}

func (o Options) stateDir() string {
	if o.StateDir != "" {
		return o.StateDir
	}
	if os.Geteuid() == 0 {
		return DefaultStateDir
	}
	if x := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(x) {
		return filepath.Join(x, "hotpatch")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".local", "state", "hotpatch")
}

// Spec is one coldpatch to apply.
type Spec struct {
	ID          string // patch id: names the backup
	Path        string // the file to replace
	OrigSHA256  string // hex sha256 of the original the patch was built for
	FixedSHA256 string // hex sha256 of Fixed
	Fixed       []byte // the fixed file
	// BuildID (hex) is the GNU build-id of the target the patch was built
	// for: the file at Path must carry it (or be the fixed file already),
	// which proves that it is the patch's target and not some other file
	// the bundle names. Empty: not checked (tests of the mechanics only).
	BuildID string
	// Trusted: the bundle's signature was verified by a trusted key. An
	// untrusted (--allow-unsigned) bundle may not replace a setuid, setgid
	// or file-capability file.
	Trusted bool
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
//
// The file replaced is the one proved to be the target: it is opened once,
// without following a symbolic link (in a directory opened without
// following any, see openTarget), its bytes are checked (sha256, build-id)
// from that descriptor, and the replacement is renamed over that name in
// that directory. Its mode, owner and attributes come from the same
// descriptor, so setuid and setgid bits are kept exactly when the original
// had them.
func Apply(s Spec, opt Options) (*Result, error) {
	plan, unlock, err := check(s, opt)
	if err != nil {
		return nil, err
	}
	defer unlock()
	defer plan.t.close()
	return plan.apply(s, opt)
}

// Check is Apply's verification without any change: the errors Apply would
// return before touching anything, and the action it would take.
func Check(s Spec, opt Options) (action string, err error) {
	plan, unlock, err := check(s, opt)
	if err != nil {
		return "", err
	}
	defer unlock()
	defer plan.t.close()
	return plan.res.Action, nil
}

type applyPlan struct {
	t   *targetFile
	res *Result
}

func check(s Spec, opt Options) (*applyPlan, func(), error) {
	if err := checkID(s.ID); err != nil {
		return nil, nil, err
	}
	if hashHex(s.Fixed) != s.FixedSHA256 {
		return nil, nil, fmt.Errorf("coldpatch %s: fixed file does not match its sha256", s.ID)
	}
	unlock, err := lock(opt.stateDir())
	if err != nil {
		return nil, nil, err
	}
	t, err := openTarget(s.Path)
	if err != nil {
		unlock()
		return nil, nil, fmt.Errorf("coldpatch %s: %w", s.ID, err)
	}
	fail := func(err error) (*applyPlan, func(), error) { t.close(); unlock(); return nil, nil, err }
	res := &Result{ID: s.ID, Path: t.path, Before: hashHex(t.data)}
	if res.Before == s.FixedSHA256 {
		res.Action, res.After = AlreadyFixed, res.Before
		return &applyPlan{t, res}, unlock, nil
	}
	if s.BuildID != "" {
		if id := buildID(t.data); id != s.BuildID {
			return fail(fmt.Errorf("%w: %s has build-id %q, the patch's target has %s: it is not the file this patch is for; nothing replaced",
				ErrWrongFile, t.path, id, s.BuildID))
		}
	}
	if res.Before != s.OrigSHA256 {
		if !opt.Force {
			return fail(fmt.Errorf("%w: %s has sha256 %s, neither the original (%s) nor the fixed file (%s) of patch %s; use --force-cold to replace it anyway",
				ErrRefused, t.path, res.Before, s.OrigSHA256, s.FixedSHA256, s.ID))
		}
		res.Forced = true
	}
	if !s.Trusted && t.meta.privileged() {
		return fail(fmt.Errorf("%w: %s is setuid, setgid or has file capabilities (mode %#o), and patch %s is not signed by a trusted key: an untrusted bundle may not replace it",
			ErrRefused, t.path, t.meta.mode, s.ID))
	}
	res.Action = Replaced
	return &applyPlan{t, res}, unlock, nil
}

func (pl *applyPlan) apply(s Spec, opt Options) (*Result, error) {
	t, res := pl.t, pl.res
	if res.Action == AlreadyFixed {
		return res, nil
	}
	removeStale(t.path)
	// Back up the original first: if that fails nothing has changed.
	dir, err := backupDir(opt.stateDir(), s.ID, true)
	if err != nil {
		return nil, fmt.Errorf("coldpatch %s: backup: %w", s.ID, err)
	}
	defer dir.Close()
	backup := filepath.Join(dir.Name(), "original")
	if err := replaceAt(dir, "original", t.data, t.meta, nil); err != nil {
		return nil, fmt.Errorf("coldpatch %s: backup: %w", s.ID, err)
	}
	rec, _ := json.MarshalIndent(record{ID: s.ID, Path: t.path, OrigSHA256: res.Before, FixedSHA256: s.FixedSHA256}, "", "  ")
	if err := replaceAt(dir, "record.json", rec, &meta{mode: 0o600}, nil); err != nil {
		return nil, fmt.Errorf("coldpatch %s: backup: %w", s.ID, err)
	}
	if err := replaceAt(t.dir, t.name, s.Fixed, t.meta, beforeRename); err != nil {
		os.RemoveAll(dir.Name())
		return nil, fmt.Errorf("coldpatch %s: replace %s: %w", s.ID, t.path, err)
	}
	res.After, res.Backup = s.FixedSHA256, backup
	return res, nil
}

// HasBackup reports whether a backup for patch id exists.
func HasBackup(id string, opt Options) bool {
	if checkID(id) != nil {
		return false
	}
	_, err := os.Lstat(filepath.Join(opt.stateDir(), "cold", id, "record.json"))
	return err == nil
}

// Revert puts back the original kept by Apply for patch id, with the
// original's mode, owner and extended attributes, if the file still has the
// fixed content (or whatever it has, with Force). A file that already has the
// original content is left alone. The backup is removed once the original is
// in place. No backup is ErrNoBackup.
func Revert(id string, opt Options) (*Result, error) {
	pl, unlock, err := checkRevert(id, opt)
	if err != nil {
		return nil, err
	}
	defer unlock()
	defer pl.t.close()
	return pl.revert(id, opt)
}

// CheckRevert is Revert's verification without any change.
func CheckRevert(id string, opt Options) (action string, err error) {
	pl, unlock, err := checkRevert(id, opt)
	if err != nil {
		return "", err
	}
	defer unlock()
	defer pl.t.close()
	return pl.res.Action, nil
}

type revertPlan struct {
	t        *targetFile
	res      *Result
	orig     []byte
	origMeta *meta
}

func checkRevert(id string, opt Options) (*revertPlan, func(), error) {
	if err := checkID(id); err != nil {
		return nil, nil, err
	}
	unlock, err := lock(opt.stateDir())
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (*revertPlan, func(), error) { unlock(); return nil, nil, err }
	dir, err := backupDir(opt.stateDir(), id, false)
	if errors.Is(err, fs.ErrNotExist) {
		return fail(fmt.Errorf("%w %s (in %s)", ErrNoBackup, id, opt.stateDir()))
	}
	if err != nil {
		return fail(fmt.Errorf("coldpatch %s: %w", id, err))
	}
	defer dir.Close()
	rb, err := readAt(dir, "record.json")
	if errors.Is(err, fs.ErrNotExist) {
		return fail(fmt.Errorf("%w %s (in %s)", ErrNoBackup, id, opt.stateDir()))
	}
	if err != nil {
		return fail(fmt.Errorf("coldpatch %s: %w", id, err))
	}
	var rec record
	if err := json.Unmarshal(rb, &rec); err != nil || rec.Path == "" {
		return fail(fmt.Errorf("coldpatch %s: corrupt backup record: %v", id, err))
	}
	backup := filepath.Join(dir.Name(), "original")
	orig, m, err := readFileAt(dir, "original")
	if err != nil {
		return fail(fmt.Errorf("%w %s: the record is there but the original is not (%v)", ErrNoBackup, id, err))
	}
	if hashHex(orig) != rec.OrigSHA256 {
		return fail(fmt.Errorf("coldpatch %s: backup %s is corrupt (sha256 differs from the record)", id, backup))
	}
	t, err := openTarget(rec.Path)
	if err != nil {
		return fail(fmt.Errorf("coldpatch %s: %w", id, err))
	}
	res := &Result{ID: id, Path: rec.Path, Before: hashHex(t.data), Backup: backup}
	switch {
	case res.Before == rec.OrigSHA256:
		res.Action, res.After = AlreadyOriginal, res.Before
	case res.Before != rec.FixedSHA256 && !opt.Force:
		t.close()
		return fail(fmt.Errorf("%w: %s has sha256 %s, not the fixed file (%s) of patch %s; use --force-cold to restore the original anyway",
			ErrRefused, rec.Path, res.Before, rec.FixedSHA256, id))
	default:
		res.Forced = res.Before != rec.FixedSHA256
		res.Action, res.After = Restored, rec.OrigSHA256
	}
	return &revertPlan{t: t, res: res, orig: orig, origMeta: m}, unlock, nil
}

func (pl *revertPlan) revert(id string, opt Options) (*Result, error) {
	res, t := pl.res, pl.t
	if res.Action == Restored {
		removeStale(t.path)
		if err := replaceAt(t.dir, t.name, pl.orig, pl.origMeta, beforeRename); err != nil {
			return nil, fmt.Errorf("coldpatch %s: restore %s: %w", id, t.path, err)
		}
	}
	if err := os.RemoveAll(filepath.Join(opt.stateDir(), "cold", id)); err != nil {
		return nil, fmt.Errorf("coldpatch %s: remove backup: %w", id, err)
	}
	return res, nil
}

// lock takes an exclusive flock(2) on StateDir/cold/.lock so that two
// hotpatch runs do not replace the same files concurrently. StateDir must be
// the user's own and writable only by that user, StateDir/cold (the backups)
// accessible only by that user (both created mode 0700 if missing).
func lock(state string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(state), 0o755); err != nil {
		return nil, fmt.Errorf("coldpatch state: %w", err)
	}
	sd, err := safefile.UserDir(state)
	if err != nil {
		return nil, fmt.Errorf("coldpatch state: %w", err)
	}
	sd.Close()
	d, err := safefile.PrivateDir(filepath.Join(state, "cold"))
	if err != nil {
		return nil, fmt.Errorf("coldpatch state: %w", err)
	}
	defer d.Close()
	f, err := safefile.CreateAt(d, ".lock", 0o600)
	if err != nil {
		return nil, fmt.Errorf("coldpatch state: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("coldpatch state: lock: %w", err)
	}
	return func() { f.Close() }, nil
}

// backupDir opens (with create, making) StateDir/cold/<id>, a private
// directory (the lock is held, so StateDir/cold was checked).
func backupDir(state, id string, create bool) (*os.File, error) {
	p := filepath.Join(state, "cold", id)
	if !create {
		if _, err := os.Lstat(p); err != nil {
			return nil, err
		}
	}
	return safefile.PrivateDir(p)
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

// privileged reports whether a file with these attributes grants privileges
// when run: setuid, setgid, or file capabilities.
func (m *meta) privileged() bool {
	if m.mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
		return true
	}
	for _, x := range m.xattrs {
		if x.name == "security.capability" {
			return true
		}
	}
	return false
}

// maxTarget bounds the size of a target file read into memory.
const maxTarget = 2 << 30

// targetFile is a target opened for checking and replacing: its directory
// (held open, so the rename lands where the bytes were checked), its name in
// it, its content and attributes read through one descriptor.
type targetFile struct {
	dir  *os.File
	name string
	path string // the directory's real path joined with name
	data []byte
	meta *meta
}

func (t *targetFile) close() { t.dir.Close() }

// openTarget opens path's directory and then path itself without following
// a symbolic link in the last component. The directory's path is resolved
// once to its real path (so /lib/x.so on a merged-/usr system names
// /usr/lib/x.so) and opened with openat2(RESOLVE_NO_SYMLINKS) (openat2(2)),
// so a symbolic link put in its place after the resolution is refused rather
// than followed.
func openTarget(path string) (*targetFile, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	real, err := filepath.EvalSymlinks(filepath.Dir(abs))
	if err != nil {
		return nil, err
	}
	name := filepath.Base(abs)
	dfd, err := unix.Openat2(unix.AT_FDCWD, real, &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_NO_SYMLINKS})
	if errors.Is(err, unix.ENOSYS) {
		dfd, err = unix.Open(real, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open directory", Path: real, Err: err}
	}
	dir := os.NewFile(uintptr(dfd), real)
	t := &targetFile{dir: dir, name: name, path: filepath.Join(real, name)}
	if t.data, t.meta, err = readFileAt(dir, name); err != nil {
		dir.Close()
		if errors.Is(err, safefile.ErrInsecure) { // a symbolic link
			dest, _ := os.Readlink(t.path)
			return nil, fmt.Errorf("%w: %s is a symbolic link (to %s): a coldpatch replaces only the file itself; build the patch for the file it points to",
				ErrWrongFile, t.path, dest)
		}
		return nil, err
	}
	return t, nil
}

// readFileAt reads the regular file name in dir (not following a symbolic
// link) and its mode, owner and extended attributes, all through one
// descriptor so they describe the same inode.
func readFileAt(dir *os.File, name string) ([]byte, *meta, error) {
	f, st, err := safefile.OpenAt(dir, name, maxTarget)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	m := &meta{mode: st.Mode & 0o7777, uid: int(st.Uid), gid: int(st.Gid), own: true}
	if m.xattrs, err = listXattrs(int(f.Fd())); err != nil {
		return nil, nil, fmt.Errorf("extended attributes of %s: %w", f.Name(), err)
	}
	b, err := safefile.ReadAll(f, maxTarget)
	if err != nil {
		return nil, nil, err
	}
	return b, m, nil
}

// readAt reads a small state file (a backup record) in dir.
func readAt(dir *os.File, name string) ([]byte, error) {
	f, _, err := safefile.OpenAt(dir, name, 1<<20)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return safefile.ReadAll(f, 1<<20)
}

// BuildID returns the GNU build-id (hex) of an ELF image, "" if it has none
// or is not ELF.
func BuildID(b []byte) string { return buildID(b) }

func buildID(b []byte) string {
	f, err := elfsym.Open(bytes.NewReader(b))
	if err != nil {
		return ""
	}
	defer f.Close()
	id, err := f.BuildID()
	if err != nil {
		return ""
	}
	return hex.EncodeToString(id)
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

// replaceAt atomically replaces name in dir by a file with content data
// and the attributes m (see the package comment for the order). hook, if
// set, runs just before the rename. On error the file is unchanged and the
// temporary file removed. Everything is relative to dir's descriptor, and
// the temporary file is created with O_EXCL|O_NOFOLLOW: no path is resolved
// again between the check of the target and its replacement.
func replaceAt(dir *os.File, name string, data []byte, m *meta, hook func(tmp, target string) error) (err error) {
	dfd := int(dir.Fd())
	var rnd [6]byte
	rand.Read(rnd[:])
	tmp := tempPattern(name) + hex.EncodeToString(rnd[:])
	fd, err := unix.Openat(dfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return &os.PathError{Op: "create", Path: filepath.Join(dir.Name(), tmp), Err: err}
	}
	f := os.NewFile(uintptr(fd), filepath.Join(dir.Name(), tmp))
	defer func() {
		if err != nil {
			f.Close()
			unix.Unlinkat(dfd, tmp, 0)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	if m.own {
		if err := unix.Fchown(fd, m.uid, m.gid); err != nil {
			return fmt.Errorf("chown %s: %w", f.Name(), err)
		}
	}
	if err := unix.Fchmod(fd, m.mode); err != nil {
		return fmt.Errorf("chmod %s: %w", f.Name(), err)
	}
	for _, x := range m.xattrs {
		if err := unix.Fsetxattr(fd, x.name, x.value, 0); err != nil {
			return fmt.Errorf("set extended attribute %s on %s: %w", x.name, f.Name(), err)
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", f.Name(), err)
	}
	target := filepath.Join(dir.Name(), name)
	if hook != nil {
		if err := hook(f.Name(), target); err != nil {
			return err
		}
	}
	// rename(2) replaces target atomically: "If newpath already exists, it
	// will be atomically replaced, so that there is no point at which
	// another process attempting to access newpath will find it missing."
	if err := unix.Renameat(dfd, tmp, dfd, name); err != nil {
		return &os.LinkError{Op: "rename", Old: f.Name(), New: target, Err: err}
	}
	if err := dir.Sync(); err != nil {
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
