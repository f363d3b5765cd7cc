package debuginfo

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/hotpatch/hotpatch/internal/testutil"
)

// build compiles testdata/lib.c into dir/libt.so with -g and extra flags.
func build(t *testing.T, dir string, flags ...string) string {
	t.Helper()
	return testutil.Compile(t, filepath.Join(dir, "libt.so"), append([]string{"testdata/lib.c", "-O2", "-g", "-shared", "-fPIC", "-Wl,--build-id"}, flags...)...)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestFind places the debug file of a stripped library in each supported
// location in turn (under a temporary root) and checks that Find finds it
// there, that the symbols it gives include the static function, and that a
// debug file of another build is refused naming both build-ids.
func TestFind(t *testing.T) {
	src := t.TempDir()
	full := build(t, src)
	stripped := filepath.Join(src, "stripped", "libt.so")
	copyFile(t, full, stripped)
	dbg := testutil.SplitDebug(t, stripped)
	other := filepath.Join(src, "other")
	os.MkdirAll(other, 0o755)
	otherDbg := testutil.SplitDebug(t, build(t, other, "-DSCALE=5")) // same name, another build
	bid, err := testutil.OpenELF(t, stripped).BuildID()
	if err != nil {
		t.Fatal(err)
	}
	h := hex.EncodeToString(bid)

	type place func(root, dir, cache string) (where string, opt Options)
	at := func(rel func(root, dir, cache string) string) place {
		return func(root, dir, cache string) (string, Options) { return rel(root, dir, cache), Options{} }
	}
	cases := []struct {
		name    string
		debug   string // the debug file to place; "" places none
		place   place
		target  string // the file to look up (default the stripped copy)
		want    Source
		wantErr error
	}{
		{name: "file itself", target: full, want: SourceFile},
		{name: "build-id", debug: dbg, want: SourceBuildID, place: at(func(root, _, _ string) string {
			return filepath.Join(root, "usr/lib/debug/.build-id", h[:2], h[2:]+".debug")
		})},
		{name: "debuglink same directory", debug: dbg, want: SourceDebuglink, place: at(func(_, dir, _ string) string {
			return filepath.Join(dir, "libt.so.debug")
		})},
		{name: "debuglink .debug", debug: dbg, want: SourceDebuglink, place: at(func(_, dir, _ string) string {
			return filepath.Join(dir, ".debug", "libt.so.debug")
		})},
		{name: "debuglink global", debug: dbg, want: SourceDebuglink, place: at(func(root, dir, _ string) string {
			return filepath.Join(root, "usr/lib/debug", dir, "libt.so.debug")
		})},
		{name: "debuginfod cache", debug: dbg, want: SourceDebuginfod, place: at(func(_, _, cache string) string {
			return filepath.Join(cache, h, "debuginfo")
		})},
		{name: "explicit", debug: dbg, want: SourceExplicit, place: func(root, _, _ string) (string, Options) {
			p := filepath.Join(root, "elsewhere", "x.debug")
			return p, Options{File: p}
		}},
		{name: "none", want: SourceNone},
		{name: "mismatched build-id path", debug: otherDbg, wantErr: ErrMismatch, place: at(func(root, _, _ string) string {
			return filepath.Join(root, "usr/lib/debug/.build-id", h[:2], h[2:]+".debug")
		})},
		{name: "mismatched debuglink", debug: otherDbg, wantErr: ErrMismatch, place: at(func(_, dir, _ string) string {
			return filepath.Join(dir, "libt.so.debug")
		})},
		{name: "mismatched explicit", debug: otherDbg, wantErr: ErrMismatch, place: func(root, _, _ string) (string, Options) {
			p := filepath.Join(root, "x.debug")
			return p, Options{File: p}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root, cache := t.TempDir(), t.TempDir()
			dir := filepath.Join(t.TempDir(), "lib")
			target := c.target
			if target == "" {
				target = filepath.Join(dir, "libt.so")
				copyFile(t, stripped, target)
			}
			opt := Options{}
			where := ""
			if c.place != nil {
				where, opt = c.place(root, dir, cache)
				copyFile(t, c.debug, where)
			}
			opt.Root, opt.DebuginfodCache = root, cache
			ef := testutil.OpenELF(t, target)
			syms, fd, err := Symbols(target, ef, opt)
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("err = %v, want %v", err, c.wantErr)
				}
				t.Logf("refused: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer fd.Close()
			if fd.Source != c.want {
				t.Fatalf("source %s (%s), want %s", fd.Source, fd.Path, c.want)
			}
			if where != "" && fd.Path != where {
				t.Fatalf("path %s, want %s", fd.Path, where)
			}
			hasStatic := len(syms.LookupLocal("scale", "lib.c")) == 1
			if hasStatic != (c.want != SourceNone) {
				t.Fatalf("static scale found: %v with symbols from %s", hasStatic, c.want)
			}
			if len(syms.Lookup("api")) == 0 {
				t.Fatal("exported api missing")
			}
		})
	}
}

func TestParseDebuglink(t *testing.T) {
	le := binary.LittleEndian
	for _, c := range []struct {
		data []byte
		name string
		crc  uint32
		ok   bool
	}{
		{[]byte("a.debug\x00\x78\x56\x34\x12"), "a.debug", 0x12345678, true},
		{[]byte("ab\x00\x00\x01\x00\x00\x00"), "ab", 1, true},
		{[]byte("abc\x00\x01\x00\x00\x00"), "abc", 1, true},
		{[]byte("abc\x00\x01\x00\x00"), "", 0, false},
		{[]byte("../x\x00\x00\x00\x00\x01\x00\x00\x00"), "", 0, false},
		{[]byte("\x00\x00\x00\x00\x01\x00\x00\x00"), "", 0, false},
		{nil, "", 0, false},
	} {
		name, crc, ok := ParseDebuglink(c.data, le)
		if name != c.name || crc != c.crc || ok != c.ok {
			t.Errorf("ParseDebuglink(%q) = %q, %#x, %v; want %q, %#x, %v", c.data, name, crc, ok, c.name, c.crc, c.ok)
		}
	}
}

func FuzzParseDebuglink(f *testing.F) {
	f.Add([]byte("a.debug\x00\x78\x56\x34\x12"))
	f.Fuzz(func(t *testing.T, data []byte) {
		name, _, ok := ParseDebuglink(data, binary.LittleEndian)
		if ok && (name == "" || len(name) >= len(data)) {
			t.Fatalf("bad name %q from %q", name, data)
		}
	})
}

// TestFindExplicitWithoutBuildID: --debug-file for a target without a
// build-id is checked against the target's .gnu_debuglink CRC (the only tie
// left), so the debug file of another build is refused and the right one
// accepted; with neither a build-id nor a debuglink, it is refused.
func TestFindExplicitWithoutBuildID(t *testing.T) {
	mk := func(name string, flags ...string) (string, string) {
		dir := filepath.Join(t.TempDir(), name)
		os.MkdirAll(dir, 0o755)
		bin := build(t, dir, append(flags, "-Wl,--build-id=none")...)
		return bin, testutil.SplitDebug(t, bin)
	}
	target, dbg := mk("a")
	_, otherDbg := mk("b", "-O0") // other code sizes: another .symtab
	if _, err := testutil.OpenELF(t, target).BuildID(); err == nil {
		t.Fatal("target has a build-id")
	}
	if fd, err := Find(target, testutil.OpenELF(t, target), Options{File: otherDbg}); !errors.Is(err, ErrMismatch) {
		fd.Close()
		t.Fatalf("another build's debug file: err = %v, want %v", err, ErrMismatch)
	} else {
		t.Logf("refused: %v", err)
	}
	fd, err := Find(target, testutil.OpenELF(t, target), Options{File: dbg})
	if err != nil {
		t.Fatal(err)
	}
	fd.Close()

	nolink := filepath.Join(t.TempDir(), "libt.so")
	copyFile(t, target, nolink)
	if b, err := exec.Command("objcopy", "--remove-section=.gnu_debuglink", nolink).CombinedOutput(); err != nil {
		t.Fatalf("objcopy: %v\n%s", err, b)
	}
	if fd, err := Find(nolink, testutil.OpenELF(t, nolink), Options{File: otherDbg}); !errors.Is(err, ErrMismatch) {
		fd.Close()
		t.Fatalf("no build-id, no debuglink: err = %v, want %v", err, ErrMismatch)
	}
}
