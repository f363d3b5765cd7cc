package coldpatch

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hotpatch/hotpatch/internal/testutil"
)

const capXattr = "security.capability"

// TestMain doubles as the "crashing hotpatch" of TestCrashBeforeRename: with
// COLDPATCH_CRASH set it applies a coldpatch and dies (os.Exit, no cleanup)
// between the complete temporary file and the rename.
func TestMain(m *testing.M) {
	if spec := os.Getenv("COLDPATCH_CRASH"); spec != "" {
		f := strings.Split(spec, "\x1f")
		fixed, err := os.ReadFile(f[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		beforeRename = func(tmp, target string) error {
			if target == f[0] {
				os.Exit(42)
			}
			return nil
		}
		_, err = Apply(Spec{ID: "crash", Path: f[0], OrigSHA256: f[2], FixedSHA256: hashHex(fixed), Fixed: fixed, Trusted: true},
			Options{StateDir: f[3]})
		fmt.Fprintln(os.Stderr, "Apply returned:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// fixture is the greet program installed as a privileged binary would be.
type fixture struct {
	dir, path, state string
	orig, fixed      []byte
	cap              []byte // security.capability as installed
}

var builds struct {
	orig, fixed, other []byte
}

func compile(t *testing.T) {
	t.Helper()
	testutil.NeedGCC(t)
	if builds.orig != nil {
		return
	}
	dir := t.TempDir()
	read := func(name string, args ...string) []byte {
		out := testutil.Compile(t, filepath.Join(dir, name), args...)
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	builds.orig = read("greet1", "-O2", "testdata/greet.c")
	builds.fixed = read("greet2", "-O2", "-DFIXED", "testdata/greet.c")
	builds.other = read("other", "-O2", "testdata/other.c")
}

// vfsCapNetBindService is a struct vfs_cap_data, revision 2
// (linux/capability.h): magic_etc = VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE,
// then {permitted, inheritable} for capabilities 0-31 and 32-63, little
// endian. CAP_NET_BIND_SERVICE is 10.
func vfsCapNetBindService() []byte {
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], 0x02000000|0x000001)
	binary.LittleEndian.PutUint32(b[4:], 1<<10)
	return b
}

func install(t *testing.T) *fixture {
	t.Helper()
	compile(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root: chown and file capabilities")
	}
	f := &fixture{dir: t.TempDir(), state: t.TempDir(), orig: builds.orig, fixed: builds.fixed}
	f.path = filepath.Join(f.dir, "greet")
	if err := os.WriteFile(f.path, f.orig, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(f.path, 1234, 1234); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(f.path, 0o750); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("setcap"); err == nil {
		if out, err := exec.Command("setcap", "cap_net_bind_service+ep", f.path).CombinedOutput(); err != nil {
			t.Fatalf("setcap: %v: %s", err, out)
		}
	} else if err := unix.Setxattr(f.path, capXattr, vfsCapNetBindService(), 0); err != nil {
		t.Skipf("cannot set a file capability here: %v", err)
	}
	f.cap = getxattr(t, f.path, capXattr)
	if len(f.cap) == 0 {
		t.Fatal("no capability after setcap")
	}
	return f
}

func getxattr(t *testing.T, path, name string) []byte {
	t.Helper()
	b := make([]byte, 256)
	n, err := unix.Getxattr(path, name, b)
	if errors.Is(err, unix.ENODATA) {
		return nil
	}
	if err != nil {
		t.Fatalf("getxattr %s: %v", name, err)
	}
	return b[:n]
}

func (f *fixture) spec() Spec {
	return Spec{ID: "hp-cold", Path: f.path, OrigSHA256: hashHex(f.orig), FixedSHA256: hashHex(f.fixed), Fixed: f.fixed, Trusted: true}
}

func (f *fixture) opt() Options { return Options{StateDir: f.state} }

// check asserts the installed file's content and that mode, owner and
// capability are the installed ones.
func (f *fixture) check(t *testing.T, want []byte, output string) {
	t.Helper()
	got, err := os.ReadFile(f.path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: content differs (sha256 %s)", f.path, hashHex(got))
	}
	var st unix.Stat_t
	if err := unix.Stat(f.path, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&0o7777 != 0o750 || st.Uid != 1234 || st.Gid != 1234 {
		t.Errorf("mode %o owner %d:%d, want 750 1234:1234", st.Mode&0o7777, st.Uid, st.Gid)
	}
	if c := getxattr(t, f.path, capXattr); !bytes.Equal(c, f.cap) {
		t.Errorf("security.capability %x, want %x", c, f.cap)
	}
	if output != "" {
		out, err := exec.Command(f.path).Output()
		if err != nil || strings.TrimSpace(string(out)) != output {
			t.Errorf("run %s: %q, %v; want %q", f.path, out, err, output)
		}
	}
	f.noTemp(t)
}

func (f *fixture) noTemp(t *testing.T) {
	t.Helper()
	ents, _ := os.ReadDir(f.dir)
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only greet", names)
	}
}

func TestApplyRevert(t *testing.T) {
	f := install(t)
	f.check(t, f.orig, "greet v1")

	res, err := Apply(f.spec(), f.opt())
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != Replaced || res.Before != hashHex(f.orig) || res.After != hashHex(f.fixed) {
		t.Fatalf("apply: %+v", res)
	}
	f.check(t, f.fixed, "greet v2") // a new process runs the fix

	// Idempotent: the fixed file is left alone.
	if res, err := Apply(f.spec(), f.opt()); err != nil || res.Action != AlreadyFixed {
		t.Fatalf("second apply: %+v, %v", res, err)
	}
	if !HasBackup("hp-cold", f.opt()) {
		t.Fatal("no backup after apply")
	}

	res, err = Revert("hp-cold", f.opt())
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != Restored {
		t.Fatalf("revert: %+v", res)
	}
	f.check(t, f.orig, "greet v1") // byte for byte, attributes too
	if HasBackup("hp-cold", f.opt()) {
		t.Error("backup kept after revert")
	}
	if _, err := Revert("hp-cold", f.opt()); !errors.Is(err, ErrNoBackup) {
		t.Errorf("second revert: %v, want ErrNoBackup", err)
	}
}

// TestSymlinkTarget: a symbolic link is never followed to the file it
// names: the coldpatch is refused and nothing changes (through a symlinked
// directory the real file is found, since that is where the bytes checked
// are).
func TestSymlinkTarget(t *testing.T) {
	f := install(t)
	link := filepath.Join(t.TempDir(), "greet-link")
	if err := os.Symlink(f.path, link); err != nil {
		t.Fatal(err)
	}
	s := f.spec()
	s.Path = link
	if _, err := Apply(s, f.opt()); !errors.Is(err, ErrWrongFile) || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("apply through a symlink: %v, want ErrWrongFile naming the symbolic link", err)
	}
	f.check(t, f.orig, "greet v1")
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the symlink was replaced: %v %v", fi, err)
	}
	dirLink := filepath.Join(t.TempDir(), "dir-link")
	os.Symlink(f.dir, dirLink)
	s.Path = filepath.Join(dirLink, "greet")
	res, err := Apply(s, f.opt())
	if err != nil || res.Path != f.path {
		t.Fatalf("apply through a symlinked directory: %+v %v", res, err)
	}
	f.check(t, f.fixed, "greet v2")
	if _, err := Revert("hp-cold", f.opt()); err != nil {
		t.Fatal(err)
	}
	f.check(t, f.orig, "")
}

// TestOnlyItsTarget: the file replaced must be the patch's target, proved by
// its build-id, whatever path the bundle names: a setuid-root file that is
// not the target is refused and left untouched (an unsigned bundle used to
// overwrite one). An untrusted bundle may not replace a setuid file even if
// it is the target; a trusted one may, and the bits are kept.
func TestOnlyItsTarget(t *testing.T) {
	compile(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root: chown")
	}
	dir, state := t.TempDir(), t.TempDir()
	victim := filepath.Join(dir, "su")
	os.WriteFile(victim, builds.other, 0o755)
	unix.Chmod(victim, 0o4755)
	target := filepath.Join(dir, "greet")
	os.WriteFile(target, builds.orig, 0o755)
	unix.Chmod(target, 0o6755)
	opt := Options{StateDir: state}
	spec := Spec{ID: "hp-own", Path: victim, OrigSHA256: hashHex(builds.other), FixedSHA256: hashHex(builds.fixed),
		Fixed: builds.fixed, BuildID: buildID(builds.orig), Trusted: false}
	if spec.BuildID == "" {
		t.Fatal("greet has no build-id")
	}
	for _, force := range []bool{false, true} {
		opt.Force = force
		if _, err := Apply(spec, opt); !errors.Is(err, ErrWrongFile) || !strings.Contains(err.Error(), "build-id") {
			t.Fatalf("force %v: a setuid file that is not the target: %v, want ErrWrongFile (build-id)", force, err)
		}
		if _, err := Check(spec, opt); !errors.Is(err, ErrWrongFile) {
			t.Fatalf("Check: %v", err)
		}
	}
	opt.Force = false
	var st unix.Stat_t
	unix.Stat(victim, &st)
	if b, _ := os.ReadFile(victim); !bytes.Equal(b, builds.other) || st.Mode&0o7777 != 0o4755 {
		t.Fatalf("the setuid file changed (mode %o)", st.Mode&0o7777)
	}
	// The real target, setuid and setgid: not from an untrusted bundle.
	spec.Path, spec.OrigSHA256 = target, hashHex(builds.orig)
	if _, err := Apply(spec, opt); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "setuid") {
		t.Fatalf("untrusted bundle on a setuid target: %v, want ErrRefused", err)
	}
	spec.Trusted = true
	if _, err := Apply(spec, opt); err != nil {
		t.Fatal(err)
	}
	unix.Stat(target, &st)
	if b, _ := os.ReadFile(target); !bytes.Equal(b, builds.fixed) || st.Mode&0o7777 != 0o6755 {
		t.Fatalf("trusted coldpatch: mode %o", st.Mode&0o7777)
	}
	if _, err := Revert("hp-own", opt); err != nil {
		t.Fatal(err)
	}
	// A plain original gives a plain file (bits come from the original only).
	os.Chmod(target, 0o755)
	if _, err := Apply(spec, opt); err != nil {
		t.Fatal(err)
	}
	unix.Stat(target, &st)
	if st.Mode&0o7777 != 0o755 {
		t.Fatalf("mode %o after replacing a 0755 original", st.Mode&0o7777)
	}
}

func TestRefusals(t *testing.T) {
	f := install(t)
	otherContent := append(append([]byte(nil), f.orig...), 0)
	cases := []struct {
		name  string
		setup func(s *Spec)
		want  error
	}{
		{"file is neither original nor fixed", func(s *Spec) { s.OrigSHA256 = hashHex([]byte("another build")) }, ErrRefused},
		{"fixed does not match its hash", func(s *Spec) { s.Fixed = otherContent }, nil},
		{"bad id", func(s *Spec) { s.ID = "../x" }, nil},
		{"missing file", func(s *Spec) { s.Path = filepath.Join(f.dir, "missing") }, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := f.spec()
			c.setup(&s)
			_, err := Apply(s, f.opt())
			if err == nil || (c.want != nil && !errors.Is(err, c.want)) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			f.check(t, f.orig, "")
			if HasBackup(s.ID, f.opt()) {
				t.Error("backup left by a refused apply")
			}
		})
	}
	// --force-cold replaces whatever is there, and revert restores it.
	s := f.spec()
	s.OrigSHA256 = hashHex([]byte("another build"))
	res, err := Apply(s, Options{StateDir: f.state, Force: true})
	if err != nil || !res.Forced {
		t.Fatalf("forced apply: %+v, %v", res, err)
	}
	f.check(t, f.fixed, "")
	// Revert refuses a file changed since apply, unless forced.
	if err := os.WriteFile(f.path, otherContent, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := Revert("hp-cold", f.opt()); !errors.Is(err, ErrRefused) {
		t.Fatalf("revert of a changed file: %v", err)
	}
	if _, err := Revert("hp-cold", Options{StateDir: f.state, Force: true}); err != nil {
		t.Fatal(err)
	}
	f.check(t, f.orig, "")
}

// TestAbortBeforeRename: a failure between the complete temporary file and
// the rename leaves the original and no debris.
func TestAbortBeforeRename(t *testing.T) {
	f := install(t)
	beforeRename = func(tmp, target string) error { return errors.New("simulated failure") }
	defer func() { beforeRename = nil }()
	if _, err := Apply(f.spec(), f.opt()); err == nil {
		t.Fatal("apply succeeded")
	}
	f.check(t, f.orig, "greet v1")
	if HasBackup("hp-cold", f.opt()) {
		t.Error("backup left by a failed apply")
	}
}

// TestCrashBeforeRename kills a process applying the coldpatch between the
// complete temporary file and the rename: the original stays in place, and
// the next apply cleans the debris and succeeds.
func TestCrashBeforeRename(t *testing.T) {
	f := install(t)
	fixedFile := filepath.Join(t.TempDir(), "fixed")
	os.WriteFile(fixedFile, f.fixed, 0o600)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "COLDPATCH_CRASH="+strings.Join([]string{f.path, fixedFile, hashHex(f.orig), f.state}, "\x1f"))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 42 {
		t.Fatalf("crashing apply: %v: %s", err, out)
	}
	ents, _ := os.ReadDir(f.dir)
	if len(ents) != 2 {
		t.Fatalf("expected the original and a left-over temporary file, found %d entries", len(ents))
	}
	// The original is in place, intact, with its attributes.
	got, _ := os.ReadFile(f.path)
	if !bytes.Equal(got, f.orig) {
		t.Fatal("original damaged by the crash")
	}
	if out, _ := exec.Command(f.path).Output(); strings.TrimSpace(string(out)) != "greet v1" {
		t.Fatalf("after the crash the program prints %q", out)
	}
	if c := getxattr(t, f.path, capXattr); !bytes.Equal(c, f.cap) {
		t.Error("capability lost")
	}
	// A new apply after the crash works and removes the debris.
	if _, err := Apply(f.spec(), f.opt()); err != nil {
		t.Fatal(err)
	}
	f.check(t, f.fixed, "greet v2")
}

func TestCheckFixed(t *testing.T) {
	compile(t)
	cases := []struct {
		name   string
		fixed  []byte
		funcs  []string
		wantOK bool
	}{
		{"rebuilt target", builds.fixed, []string{"greet"}, true},
		{"identical", builds.orig, []string{"greet"}, false},
		{"another program", builds.other, []string{"greet"}, false},
		{"not ELF", []byte("#!/bin/sh\necho hi\n"), []string{"greet"}, false},
		{"truncated", builds.fixed[:100], []string{"greet"}, false},
	}
	for _, c := range cases {
		err := CheckFixed(builds.orig, c.fixed, c.funcs)
		if (err == nil) != c.wantOK || (err != nil && !errors.Is(err, ErrWrongFile)) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}
