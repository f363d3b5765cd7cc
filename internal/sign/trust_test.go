package sign

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hotpatch/hotpatch/internal/safefile"
)

// within runs f and fails the test if it has not returned after d (a FIFO
// opened for reading blocks until a writer comes).
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s: still blocked after %v", what, d)
	}
}

// TestTrustStrictModes: the keys of a trusted directory are used only when
// the directory and the key are owned by root and not writable by group or
// others, and only regular files are read; explicit --trust files that are
// FIFOs or devices fail at once.
func TestTrustStrictModes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (chown)")
	}
	dir := t.TempDir()
	priv, pub := newKey(t, dir, "vendor")
	p := samplePatch(t)
	if err := Sign(p, priv); err != nil {
		t.Fatal(err)
	}
	p = encodeDecode(t, p)
	pubBytes, _ := os.ReadFile(pub)

	mkdir := func(name string, mode os.FileMode) string {
		d := filepath.Join(dir, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		os.Chmod(d, mode)
		return d
	}
	key := func(d, name string, mode os.FileMode, uid int) {
		f := filepath.Join(d, name)
		if err := os.WriteFile(f, pubBytes, 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chmod(f, mode)
		os.Chown(f, uid, 0)
	}
	load := func(files []string, dirs ...string) (*Keyring, error) {
		var r *Keyring
		var err error
		within(t, 5*time.Second, "LoadKeyring", func() { r, err = LoadKeyring(files, dirs...) })
		return r, err
	}
	trusted := func(r *Keyring) bool {
		_, err := Verify(p, r)
		return err == nil
	}

	good := mkdir("good", 0o755)
	key(good, "vendor.pub", 0o644, 0)
	if r, err := load(nil, good); err != nil || !trusted(r) || len(r.Warnings) != 0 {
		t.Fatalf("good directory: %v %v", err, r)
	}

	for _, c := range []struct {
		name string
		make func(d string)
		want string
	}{
		{"group-writable key", func(d string) { key(d, "vendor.pub", 0o664, 0) }, "writable by its group"},
		{"world-writable key", func(d string) { key(d, "vendor.pub", 0o646, 0) }, "writable by its group or by others"},
		{"key owned by another user", func(d string) { key(d, "vendor.pub", 0o644, 1234) }, "owned by uid 1234"},
		{"symbolic link", func(d string) { os.Symlink(pub, filepath.Join(d, "vendor.pub")) }, "symbolic link"},
		{"FIFO", func(d string) { unix.Mkfifo(filepath.Join(d, "vendor.pub"), 0o644) }, "FIFO"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := mkdir(strings.ReplaceAll(c.name, " ", "-"), 0o755)
			c.make(d)
			r, err := load(nil, d)
			if err != nil {
				t.Fatal(err)
			}
			if trusted(r) {
				t.Fatal("the key was trusted")
			}
			if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], c.want) {
				t.Fatalf("warnings %q, want one containing %q", r.Warnings, c.want)
			}
		})
	}

	// A directory writable by its group, or owned by another user: none of
	// its keys count, however good they are.
	for name, fix := range map[string]func(d string){
		"group-writable-dir": func(d string) { os.Chmod(d, 0o775) },
		"foreign-dir":        func(d string) { os.Chown(d, 1234, 0) },
	} {
		d := mkdir(name, 0o755)
		key(d, "vendor.pub", 0o644, 0)
		fix(d)
		r, err := load(nil, d)
		if err != nil || trusted(r) || len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "ignoring trusted keys in") {
			t.Fatalf("%s: %v, warnings %q", name, err, r.Warnings)
		}
	}
	// A directory under one that others may write to (and is not sticky).
	parent := mkdir("open-parent", 0o777)
	os.Chmod(parent, 0o777)
	sub := filepath.Join(parent, "trusted.d")
	os.Mkdir(sub, 0o755)
	key(sub, "vendor.pub", 0o644, 0)
	if r, err := load(nil, sub); err != nil || trusted(r) || len(r.Warnings) != 1 {
		t.Fatalf("directory under a world-writable one: %v, %v", err, r.Warnings)
	}

	// Explicit key files: a FIFO and /dev/zero fail at once.
	fifo := filepath.Join(dir, "key.fifo")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{fifo, "/dev/zero"} {
		if _, err := load([]string{f}); !errors.Is(err, safefile.ErrNotRegular) {
			t.Errorf("--trust %s: %v, want ErrNotRegular", f, err)
		}
	}
	big := filepath.Join(dir, "big.pub")
	os.WriteFile(big, make([]byte, MaxKeyFile+1), 0o644)
	if _, err := load([]string{big}); !errors.Is(err, safefile.ErrTooLarge) {
		t.Errorf("--trust of a large file: %v, want ErrTooLarge", err)
	}
}
