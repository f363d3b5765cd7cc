package engine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/statecache"
	"github.com/hotpatch/hotpatch/internal/testutil"
	"github.com/hotpatch/hotpatch/internal/unwind"
)

// libcOf reads process pid afresh (as a new hotpatch run would) and
// returns it with its C library.
func libcOf(t *testing.T, pid int) (*target, *module) {
	t.Helper()
	fileCache.Clear()
	cfiCache = unwind.Cache{}
	tg, err := readTarget(pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range tg.mods {
		if strings.HasPrefix(filepath.Base(m.Path), "libc.so") {
			return tg, m
		}
	}
	t.Fatal("no libc mapped")
	return nil, nil
}

// TestLockFuncsCached: the functions of a library that may hold a callee
// lock are computed from its symbol table once, kept in the state
// directory, and read from there by the next run without building the
// table; an entry of another identity or with content that does not hold
// is ignored and the table built again.
func TestLockFuncsCached(t *testing.T) {
	dir := setup(t)
	bin := compileTarget(t, dir, "basic.c")
	tg := testutil.Start(t, bin)
	tg.WaitLine(t, 5*time.Second, func(string) bool { return true })
	old := LockDir
	LockDir = filepath.Join(dir, "state")
	defer func() { LockDir = old }()

	tt, libc := libcOf(t, tg.Pid)
	want, err := tt.lockFuncs(libc)
	if err != nil || len(want) == 0 || !libc.symsLoaded() {
		t.Fatalf("first run: %d functions, %v, table built %v", len(want), err, libc.symsLoaded())
	}
	var names []string
	for _, f := range want {
		names = append(names, f.name)
	}
	if !strings.Contains(" "+strings.Join(names, " ")+" ", " malloc ") {
		t.Errorf("malloc is not among libc's lock functions: %v", names)
	}
	ents, _ := filepath.Glob(filepath.Join(LockDir, "locks-*"))
	if len(ents) != 1 {
		t.Fatalf("cache entries %v, want one", ents)
	}

	tt, libc = libcOf(t, tg.Pid)
	got, err := tt.lockFuncs(libc)
	if err != nil || len(got) != len(want) || libc.symsLoaded() {
		t.Fatalf("second run: %d functions (want %d), %v, table built %v", len(got), len(want), err, libc.symsLoaded())
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("second run: function %d is %+v, want %+v", i, got[i], want[i])
		}
	}

	// Entries that do not hold: the table is built again.
	b, ok := statecache.Dir(LockDir).Load(filepath.Base(ents[0]))
	if !ok {
		t.Fatal("entry unreadable")
	}
	id, _, _ := strings.Cut(string(b), "\n")
	for what, bad := range map[string]string{
		"another identity":    strings.Replace(string(b), id, id+"x", 1),
		"not a lock function": id + "\n10 10 printf\n",
		"cut short":           strings.TrimSuffix(string(b), "\n"),
	} {
		statecache.Dir(LockDir).Store(filepath.Base(ents[0]), []byte(bad))
		tt, libc = libcOf(t, tg.Pid)
		got, err := tt.lockFuncs(libc)
		if err != nil || len(got) != len(want) || !libc.symsLoaded() {
			t.Errorf("%s: %d functions (want %d), %v, table built %v", what, len(got), len(want), err, libc.symsLoaded())
		}
	}
	os.WriteFile(ents[0], []byte("garbage"), 0o600)
	tt, libc = libcOf(t, tg.Pid)
	if got, err := tt.lockFuncs(libc); err != nil || len(got) != len(want) || !libc.symsLoaded() {
		t.Errorf("garbage entry: %d functions, %v", len(got), err)
	}
}

func FuzzParseLockFuncs(f *testing.F) {
	f.Add([]byte("id\n10 20 malloc\n30 8 _int_free\n"), "id")
	f.Add([]byte("id\nffffffffffffffff 2 free\n"), "id")
	f.Fuzz(func(t *testing.T, data []byte, id string) {
		fns, err := parseLockFuncs(data, id)
		if err != nil {
			return
		}
		again, err := parseLockFuncs(formatLockFuncs(fns, id), id)
		if err != nil || len(again) != len(fns) {
			t.Fatalf("%d functions do not survive formatting: %v", len(fns), err)
		}
	})
}
