package engine

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/diff"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// TestDiffThreadLocal patches, in diff mode, a translation unit with
// thread-local variables (testdata/diff/tls: tv initialised, tz zero, te
// another file's) running in three threads: in a PIE and a non-PIE
// executable (local-exec code, and initial-exec code for te that the static
// linker relaxed to local-exec) and in a shared library (general/local-dynamic
// code through __tls_get_addr, and initial-exec code). Every thread must keep its own values across the
// patch and the revert (tv == 7 + id*tz in each, tz still growing: the new
// code writes the variables the old code reads). A fix that adds a
// thread-local variable is refused at build, naming it.
func TestDiffThreadLocal(t *testing.T) {
	setup(t)
	O2 := []string{"-O2", "-g", "-pthread", "-flive-patching=inline-clone"}
	src := func(c, v string) string { return filepath.Join("testdata", "diff", c, v, "prog.c") }
	mainSrc := filepath.Join("testdata", "tls_main.c")
	for _, c := range []struct {
		name          string
		cflags, ldflg []string
		lib           bool
	}{
		{"pie local-exec", []string{"-fPIE"}, []string{"-pie"}, false},
		{"nopie local-exec", []string{"-fno-pie"}, []string{"-no-pie"}, false},
		{"library general-dynamic", []string{"-fPIC"}, nil, true},
		{"library initial-exec", []string{"-fPIC", "-ftls-model=initial-exec"}, nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := t.TempDir()
			cf := append(append([]string(nil), O2...), c.cflags...)
			bin, target := filepath.Join(d, "prog"), filepath.Join(d, "prog")
			if c.lib {
				target = ccompile(t, filepath.Join(d, "libtls.so"), append([]string{src("tls", "old"), "-shared"}, cf...)...)
				ccompile(t, bin, append([]string{mainSrc, target, "-Wl,-rpath," + d}, O2...)...)
			} else {
				ccompile(t, bin, append(append([]string{src("tls", "old"), mainSrc}, cf...), c.ldflg...)...)
			}
			obj := func(c, v string) string {
				return ccompile(t, filepath.Join(d, c+v+".o"), append(append([]string{src(c, v)}, cf...), sectionFlags...)...)
			}
			oldObj := obj("tls", "old")
			_, _, err := diffPatch(t, diffBuild{bin: target, oldObj: oldObj, newObj: obj("tlsnew", "new")})
			if !errors.Is(err, diff.ErrNewTLS) || !strings.Contains(err.Error(), "tnew") {
				t.Errorf("new thread-local variable: got %v, want ErrNewTLS naming tnew", err)
			}
			p, rep, err := diffPatch(t, diffBuild{bin: target, oldObj: oldObj, newObj: obj("tls", "new")})
			if err != nil {
				t.Fatalf("build: %v", err)
			}
			if !hasData(rep, "tv", "variable", diff.Unchanged) || !hasData(rep, "tz", "variable", diff.Unchanged) {
				t.Errorf("data: %+v", rep.Data)
			}
			tg := testutil.Start(t, bin)
			before := tlsLines(t, tg, 1, nil)
			if _, err := Apply(tg.Pid, p, Options{}); err != nil {
				t.Fatalf("apply: %v", err)
			}
			after := tlsLines(t, tg, 2, before)
			if _, err := Revert(tg.Pid, p.ID, Options{}); err != nil {
				t.Fatalf("revert: %v", err)
			}
			tlsLines(t, tg, 1, after)
			assertRunning(t, tg.Pid)
		})
	}
}

// tlsLines reads the target's lines until every thread (id 1-3) has printed
// version want, checking each line's invariants tv == 7 + id*tz and
// te == 2*tz and, for the lines of version want, that tz grew past
// since[id]. It returns the last tz seen per thread.
func tlsLines(t *testing.T, tg *testutil.Target, want int64, since map[int64]int64) map[int64]int64 {
	t.Helper()
	last := map[int64]int64{}
	seen := map[int64]bool{}
	tg.WaitLine(t, 10*time.Second, func(l string) bool {
		var id, v, tv, tz, te int64
		if n, _ := fmt.Sscanf(l, "%d %d %d %d %d", &id, &v, &tv, &tz, &te); n != 5 || id < 1 || id > 3 {
			t.Fatalf("bad line %q", l)
		}
		if tv != 7+id*tz || te != 2*tz {
			t.Fatalf("thread %d: tv=%d tz=%d te=%d: not its own variables (want tv == 7 + id*tz, te == 2*tz)", id, tv, tz, te)
		}
		last[id] = tz
		if v == want {
			if since != nil && tz <= since[id] {
				t.Fatalf("thread %d: tz=%d after the change, was %d: the new code did not use the live variable", id, tz, since[id])
			}
			seen[id] = true
		}
		return len(seen) == 3
	})
	return last
}
