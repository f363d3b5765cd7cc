package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hotpatch/hotpatch/internal/elfsym"
)

// SplitDebug does to bin what a distribution's packaging does: its
// symbols and DWARF go to a separate debug file (objcopy --only-keep-debug),
// bin is stripped (strip --strip-all) and gets a .gnu_debuglink naming the
// debug file (objcopy --add-gnu-debuglink, which records the debug file's
// CRC). The debug file is written next to bin as <base>.debug and its path
// returned; move it where a test wants it.
func SplitDebug(t testing.TB, bin string) string {
	t.Helper()
	dbg := bin + ".debug"
	run := func(name string, args ...string) {
		t.Helper()
		if _, err := exec.LookPath(name); err != nil {
			t.Skipf("%s not installed", name)
		}
		if b, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, b)
		}
	}
	run("objcopy", "--only-keep-debug", bin, dbg)
	run("strip", "--strip-all", bin)
	// --add-gnu-debuglink records the base name; run it from the debug
	// file's directory so that the name is plain.
	cmd := exec.Command("objcopy", "--add-gnu-debuglink="+filepath.Base(dbg), filepath.Base(bin))
	cmd.Dir = filepath.Dir(bin)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("objcopy --add-gnu-debuglink: %v\n%s", err, b)
	}
	return dbg
}

// OpenELF opens the ELF file at path for the rest of the test.
func OpenELF(t testing.TB, path string) *elfsym.File {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ef, err := elfsym.Open(fh)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ef.Close() })
	return ef
}
