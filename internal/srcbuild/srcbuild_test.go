package srcbuild

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestInvocationParse(t *testing.T) {
	for _, c := range []struct {
		args           []string
		compile        bool
		outputs, input []string
	}{
		{[]string{"-O3", "-DPIC", "-c", "-o", "objs/inflate.o", "inflate.c"}, true, []string{"/t/objs/inflate.o"}, nil},
		{[]string{"-c", "a.c", "sub/b.c", "-I", "inc"}, true, []string{"/t/a.o", "/t/b.o"}, nil},
		{[]string{"-shared", "-o", "libz.so.1", "a.lo", "b.lo", "-lc", "-L", "/x"}, false, []string{"/t/libz.so.1"}, []string{"/t/a.lo", "/t/b.lo"}},
		{[]string{"-ofoo", "main.o", "libz.a"}, false, []string{"/t/foo"}, []string{"/t/main.o", "/t/libz.a"}},
	} {
		inv := invocation{Dir: "/t", Args: c.args}
		if !inv.parse() {
			t.Errorf("%v: not recorded", c.args)
			continue
		}
		if inv.Compile != c.compile || !reflect.DeepEqual(inv.Outputs, c.outputs) || !reflect.DeepEqual(inv.Inputs, c.input) {
			t.Errorf("%v: got compile=%v out=%v in=%v", c.args, inv.Compile, inv.Outputs, inv.Inputs)
		}
	}
	for _, args := range [][]string{{"-E", "a.c"}, {"-S", "a.c"}, {"--version"}} {
		inv := invocation{Dir: "/t", Args: args}
		if inv.parse() && len(inv.Inputs) > 0 {
			t.Errorf("%v: should not be a compile or link", args)
		}
	}
}

// TestArchive reads a static library made by ar and checks every member.
func TestArchive(t *testing.T) {
	if _, err := exec.LookPath("ar"); err != nil {
		t.Skip("no ar")
	}
	d := t.TempDir()
	names := []string{"a.o", "a-very-long-member-name-beyond-sixteen.o"}
	for i, n := range names {
		os.WriteFile(filepath.Join(d, n), []byte(strings.Repeat("x", i+1)), 0o644)
	}
	cmd := exec.Command("ar", append([]string{"rc", "lib.a"}, names...)...)
	cmd.Dir = d
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ar: %v %s", err, out)
	}
	b, _ := os.ReadFile(filepath.Join(d, "lib.a"))
	ms, err := readArchive(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].Name != names[0] || ms[1].Name != names[1] || string(ms[1].Data) != "xx" {
		t.Fatalf("members: %+v", ms)
	}
}

func FuzzArchive(f *testing.F) {
	f.Add([]byte("!<arch>\n"))
	f.Add([]byte("!<arch>\n//                                              8         `\nlong.o/\n\n/0              0           0     0     644     2         `\nab"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ms, err := readArchive(b)
		if err != nil {
			return
		}
		for _, m := range ms {
			if len(m.Data) > len(b) {
				t.Fatal("member larger than the archive")
			}
		}
	})
}

// TestFixError names the file and hunk of a fix that does not apply.
func TestFixError(t *testing.T) {
	if _, err := exec.LookPath("patch"); err != nil {
		t.Skip("no patch")
	}
	d := t.TempDir()
	os.WriteFile(filepath.Join(d, "f.c"), []byte("int a;\nint b;\nint c;\n"), 0o644)
	fix := filepath.Join(t.TempDir(), "fix.patch")
	os.WriteFile(fix, []byte("--- a/f.c\n+++ b/f.c\n@@ -1,3 +1,3 @@\n int a;\n-int x;\n+int y;\n int c;\n"), 0o644)
	err := applyFixes(d, []string{fix})
	if err == nil || !strings.Contains(err.Error(), "f.c hunk #1 (at line 1)") {
		t.Fatalf("want an error naming f.c hunk #1, got %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(d, "f.c")); string(b) != "int a;\nint b;\nint c;\n" {
		t.Fatal("a fix that does not apply changed the tree")
	}
}
