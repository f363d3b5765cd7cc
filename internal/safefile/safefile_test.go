package safefile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestRead: FIFOs and devices are refused at once (a FIFO used to block the
// open until a writer came), size limits hold, NoFollow refuses a symbolic
// link.
func TestRead(t *testing.T) {
	d := t.TempDir()
	fifo := filepath.Join(d, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := Read(fifo, 100, 0); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrNotRegular) {
			t.Errorf("FIFO: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reading a FIFO blocked")
	}
	if _, err := Read("/dev/zero", 100, 0); !errors.Is(err, ErrNotRegular) {
		t.Errorf("/dev/zero: %v", err)
	}
	f := filepath.Join(d, "f")
	os.WriteFile(f, make([]byte, 101), 0o600)
	if _, err := Read(f, 100, 0); !errors.Is(err, ErrTooLarge) {
		t.Errorf("large file: %v", err)
	}
	if b, err := Read(f, 101, 0); err != nil || len(b) != 101 {
		t.Errorf("file at the limit: %d %v", len(b), err)
	}
	l := filepath.Join(d, "l")
	os.Symlink(f, l)
	if _, err := Read(l, 200, NoFollow); !errors.Is(err, ErrInsecure) {
		t.Errorf("symlink with NoFollow: %v", err)
	}
	if _, err := Read(l, 200, 0); err != nil {
		t.Errorf("symlink followed: %v", err)
	}
}

// TestPrivateDir: created 0700; refused when a symbolic link, group/other
// accessible, or (as root) owned by another user; lock files are never
// opened through a symbolic link.
func TestPrivateDir(t *testing.T) {
	d := t.TempDir()
	p := filepath.Join(d, "state")
	dir, err := PrivateDir(p)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o700 {
		t.Errorf("created with mode %v", st.Mode().Perm())
	}
	victim := filepath.Join(d, "victim")
	os.WriteFile(victim, []byte("keep"), 0o600)
	os.Symlink(victim, filepath.Join(p, "x.lock"))
	if _, err := CreateAt(dir, "x.lock", 0o600); !errors.Is(err, ErrInsecure) {
		t.Errorf("lock through a symlink: %v", err)
	}
	if f, err := CreateAt(dir, "y.lock", 0o600); err != nil {
		t.Errorf("lock: %v", err)
	} else {
		f.Close()
	}
	dir.Close()
	if b, _ := os.ReadFile(victim); string(b) != "keep" {
		t.Error("the symlink's target changed")
	}
	os.Chmod(p, 0o750)
	if _, err := PrivateDir(p); !errors.Is(err, ErrInsecure) {
		t.Errorf("mode 0750: %v", err)
	}
	if dir, err := UserDir(p); err != nil {
		t.Errorf("UserDir of a 0750 directory: %v", err)
	} else {
		dir.Close()
	}
	link := filepath.Join(d, "link")
	os.Symlink(p, link)
	if _, err := PrivateDir(link); !errors.Is(err, ErrInsecure) {
		t.Errorf("symlinked directory: %v", err)
	}
	if os.Geteuid() == 0 {
		os.Chmod(p, 0o700)
		os.Chown(p, 1234, 1234)
		if _, err := PrivateDir(p); !errors.Is(err, ErrInsecure) {
			t.Errorf("directory of another user: %v", err)
		}
	}
}
