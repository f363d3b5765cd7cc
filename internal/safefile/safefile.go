// Package safefile opens files whose path another user may control: patch
// bundles, keys, the trusted-keys directory and hotpatch's own state
// directories. It never blocks on a FIFO or a device, never reads more than a
// bound, and checks ownership and modes the way sshd's StrictModes does.
//
// Why each step:
//   - open(2) of a FIFO blocks until a writer appears; O_NONBLOCK makes it
//     return at once (fifo(7): "opening for read-only succeeds even if no one
//     has opened on the write side yet"), and fstat then shows it is not a
//     regular file. On a regular file O_NONBLOCK has no effect (open(2)).
//   - The type and size are taken with fstat on the descriptor that is read,
//     so a rename between a stat and the open cannot substitute another file.
//   - The read is bounded (a file may grow after fstat): /dev/zero or a
//     growing file cannot exhaust memory.
package safefile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Sentinel errors callers branch on.
var (
	// ErrNotRegular: the path names a FIFO, device, socket or directory.
	ErrNotRegular = errors.New("not a regular file")
	// ErrTooLarge: the file is larger than the caller accepts.
	ErrTooLarge = errors.New("file too large")
	// ErrInsecure: the file or directory may be changed by someone other
	// than root and the user running hotpatch (owner, or group/other write
	// permission), or is a symbolic link where none is allowed.
	ErrInsecure = errors.New("insecure ownership or permissions")
)

// Flags for Open and Read.
const (
	// NoFollow refuses a symbolic link as the last component (O_NOFOLLOW).
	NoFollow = 1 << iota
)

// Open opens path read-only without blocking and returns it with its fstat
// data, refusing anything but a regular file of at most max bytes.
func Open(path string, max int64, flags int) (*os.File, *unix.Stat_t, error) {
	of := unix.O_RDONLY | unix.O_NONBLOCK | unix.O_CLOEXEC
	if flags&NoFollow != 0 {
		of |= unix.O_NOFOLLOW
	}
	fd, err := unix.Open(path, of, 0)
	return opened(fd, err, path, max, flags&NoFollow != 0)
}

// OpenAt is Open relative to the directory dir, never following a symbolic
// link in name (which must be one component).
func OpenAt(dir *os.File, name string, max int64) (*os.File, *unix.Stat_t, error) {
	path := filepath.Join(dir.Name(), name)
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	return opened(fd, err, path, max, true)
}

// opened finishes Open and OpenAt: the result of the open(2) of path becomes
// a checked *os.File (ELOOP under O_NOFOLLOW names the symbolic link).
func opened(fd int, err error, path string, max int64, noFollow bool) (*os.File, *unix.Stat_t, error) {
	if errors.Is(err, unix.ELOOP) && noFollow {
		return nil, nil, fmt.Errorf("%w: %s is a symbolic link", ErrInsecure, path)
	}
	if err != nil {
		return nil, nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	st, err := check(f, path, max)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, st, nil
}

func check(f *os.File, path string, max int64) (*unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%w: %s is a %s", ErrNotRegular, path, typeName(st.Mode))
	}
	if max >= 0 && st.Size > max {
		return nil, fmt.Errorf("%w: %s is %d bytes (at most %d)", ErrTooLarge, path, st.Size, max)
	}
	return &st, nil
}

// ReadAll reads f to its end, at most max bytes (a file may grow after the
// fstat of Open).
func ReadAll(f *os.File, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: %s grew beyond %d bytes", ErrTooLarge, f.Name(), max)
	}
	return b, nil
}

// Read is Open and ReadAll.
func Read(path string, max int64, flags int) ([]byte, error) {
	f, _, err := Open(path, max, flags)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadAll(f, max)
}

func typeName(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return "FIFO"
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFBLK:
		return "block device"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFLNK:
		return "symbolic link"
	}
	return fmt.Sprintf("file of type %#o", mode&unix.S_IFMT)
}

// Trusted reports (nil) whether st, the fstat of path, may be trusted the way
// sshd's StrictModes trusts a file: owned by root or by the effective user,
// and writable by neither group nor others. A directory writable by others
// is accepted only with the sticky bit (as /tmp): then no one but the owner
// of an entry may rename or remove it (inode(7), S_ISVTX), so the entries of
// root stay root's.
func Trusted(path string, st *unix.Stat_t) error {
	euid := uint32(os.Geteuid())
	if st.Uid != 0 && st.Uid != euid {
		return fmt.Errorf("%w: %s is owned by uid %d (must be root's%s)", ErrInsecure, path, st.Uid, ownerHint(euid))
	}
	if st.Mode&0o022 != 0 {
		sticky := st.Mode&unix.S_IFMT == unix.S_IFDIR && st.Mode&unix.S_ISVTX != 0
		if !sticky {
			return fmt.Errorf("%w: %s is writable by its group or by others (mode %#o; chmod go-w %s)", ErrInsecure, path, st.Mode&0o7777, path)
		}
	}
	return nil
}

func ownerHint(euid uint32) string {
	if euid == 0 {
		return ""
	}
	return fmt.Sprintf(" or uid %d's", euid)
}

// TrustedDir opens the directory path (following symbolic links) and checks
// it and every directory above it with Trusted, so that no one but root and
// the user can replace what it holds. A directory that does not exist is
// returned as an error satisfying errors.Is(err, fs.ErrNotExist).
func TrustedDir(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	d := os.NewFile(uintptr(fd), path)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		d.Close()
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	if err := Trusted(path, &st); err != nil {
		d.Close()
		return nil, err
	}
	// The directories above, by the real path of the one opened.
	real, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		real, err = filepath.Abs(path)
		if err != nil {
			d.Close()
			return nil, err
		}
	}
	for p := filepath.Dir(real); ; p = filepath.Dir(p) {
		var pst unix.Stat_t
		if err := unix.Stat(p, &pst); err != nil {
			d.Close()
			return nil, fmt.Errorf("stat %s: %w", p, err)
		}
		if err := Trusted(p, &pst); err != nil {
			d.Close()
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if p == "/" || p == "." {
			break
		}
	}
	return d, nil
}

// PrivateDir creates (mode 0700) or opens the directory path for state of
// the user running hotpatch, and checks that it is a directory, not a
// symbolic link, owned by that user and not accessible to group or others:
// otherwise another user could take its locks, plant symbolic links in it
// or read what it keeps. Its parent must exist.
func PrivateDir(path string) (*os.File, error) { return ownDir(path, 0o077) }

// UserDir is PrivateDir for a directory that others may read but not
// write (mode 0755 is accepted).
func UserDir(path string) (*os.File, error) { return ownDir(path, 0o022) }

func ownDir(path string, forbidden uint32) (*os.File, error) {
	if err := unix.Mkdir(path, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, &os.PathError{Op: "mkdir", Path: path, Err: err}
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return nil, fmt.Errorf("%w: %s is not a directory (a symbolic link?); remove it", ErrInsecure, path)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	d := os.NewFile(uintptr(fd), path)
	st, err := statOwned(d, path)
	if err != nil {
		d.Close()
		return nil, err
	}
	if st.Mode&forbidden != 0 {
		d.Close()
		want := 0o777 &^ forbidden // 0700 for PrivateDir, 0755 for UserDir
		return nil, fmt.Errorf("%w: %s has mode %#o, must be %#o or stricter (chmod %o %s)",
			ErrInsecure, path, st.Mode&0o7777, want, want, path)
	}
	return d, nil
}

// CreateAt opens (creating with mode perm if needed) the regular file name
// in the directory d for reading and writing, never following a symbolic
// link, and checks that it is a regular file owned by the user running
// hotpatch.
func CreateAt(d *os.File, name string, perm uint32) (*os.File, error) {
	path := filepath.Join(d.Name(), name)
	fd, err := unix.Openat(int(d.Fd()), name, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, perm)
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("%w: %s is a symbolic link; remove it", ErrInsecure, path)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	st, err := statOwned(f, path)
	if err == nil && st.Mode&unix.S_IFMT != unix.S_IFREG {
		err = fmt.Errorf("%w: %s is a %s", ErrNotRegular, path, typeName(st.Mode))
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// statOwned fstats f (opened from path) and checks that it belongs to the
// user running hotpatch.
func statOwned(f *os.File, path string) (*unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	if euid := os.Geteuid(); int(st.Uid) != euid {
		return nil, fmt.Errorf("%w: %s belongs to uid %d, not to uid %d who runs hotpatch", ErrInsecure, path, st.Uid, euid)
	}
	return &st, nil
}
