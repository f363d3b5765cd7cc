package procmaps

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Mapping
	}{
		{
			name: "file, anonymous and pseudo mappings",
			in: "55d0c0a00000-55d0c0a01000 r--p 00000000 fd:01 1234567                    /usr/bin/cat\n" +
				"55d0c0a01000-55d0c0a05000 r-xp 00001000 fd:01 1234567                    /usr/bin/cat\n" +
				"\n" +
				"7f0000000000-7f0000021000 rw-p 00000000 00:00 0 \n" +
				"7ffd1d5e7000-7ffd1d608000 rw-p 00000000 00:00 0                          [stack]\n" +
				"ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n",
			want: []Mapping{
				{Start: 0x55d0c0a00000, End: 0x55d0c0a01000, Perms: "r--p", Offset: 0, Dev: "fd:01", Inode: 1234567, Path: "/usr/bin/cat"},
				{Start: 0x55d0c0a01000, End: 0x55d0c0a05000, Perms: "r-xp", Offset: 0x1000, Dev: "fd:01", Inode: 1234567, Path: "/usr/bin/cat"},
				{Start: 0x7f0000000000, End: 0x7f0000021000, Perms: "rw-p", Dev: "00:00"},
				{Start: 0x7ffd1d5e7000, End: 0x7ffd1d608000, Perms: "rw-p", Dev: "00:00", Path: "[stack]"},
				{Start: 0xffffffffff600000, End: 0xffffffffff601000, Perms: "--xp", Dev: "00:00", Path: "[vsyscall]"},
			},
		},
		{
			name: "deleted file with spaces in its name",
			in:   "7f1000000000-7f1000001000 r-xs 0000a000 103:02 42 /tmp/my lib.so (deleted)\n",
			want: []Mapping{{Start: 0x7f1000000000, End: 0x7f1000001000, Perms: "r-xs", Offset: 0xa000, Dev: "103:02", Inode: 42, Path: "/tmp/my lib.so", Deleted: true}},
		},
		{
			name: "named anonymous memory, no trailing newline",
			in:   "7f1000000000-7f1000001000 rw-p 00000000 00:00 0   [anon:hotpatch]",
			want: []Mapping{{Start: 0x7f1000000000, End: 0x7f1000001000, Perms: "rw-p", Dev: "00:00", Path: "[anon:hotpatch]"}},
		},
		{name: "empty", in: "", want: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(strings.NewReader(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Parse =\n%+v\nwant\n%+v", got, tc.want)
			}
			// String round-trips.
			var sb strings.Builder
			for _, m := range got {
				fmt.Fprintln(&sb, m)
			}
			again, err := Parse(strings.NewReader(sb.String()))
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Errorf("reparse of %q = %+v, %v", sb.String(), again, err)
			}
		})
	}
	m := tests[0].want[1]
	if !m.Readable() || m.Writable() || !m.Executable() || m.Shared() || !m.FileBacked() {
		t.Errorf("permission accessors wrong for %v", m)
	}
	if tests[0].want[3].FileBacked() {
		t.Error("[stack] is file-backed")
	}
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{
		"garbage\n",
		"1000 r-xp 00000000 fd:01 1 /x\n",
		"2000-1000 r-xp 00000000 fd:01 1 /x\n",
		"1000-2000 r-xq 00000000 fd:01 1 /x\n",
		"1000-2000 r-xp zz fd:01 1 /x\n",
		"1000-2000 r-xp 00000000 fd01 1 /x\n",
		"1000-2000 r-xp 00000000 fd:01 -1 /x\n",
		"1000-2000 r-xp 00000000 fd:01\n",
		"10000000000000000-10000000000000001 r-xp 00000000 fd:01 1 /x\n",
	} {
		if _, err := Parse(strings.NewReader(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%q) err = %v, want ErrMalformed", in, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("55d0c0a00000-55d0c0a01000 r--p 00000000 fd:01 1234567   /usr/bin/cat\n")
	f.Add("7f1000000000-7f1000001000 r-xs 0000a000 103:02 42 /tmp/my lib.so (deleted)\n")
	f.Add("7ffd1d5e7000-7ffd1d608000 rw-p 00000000 00:00 0   [stack]\n\n")
	if b, err := os.ReadFile("/proc/self/maps"); err == nil {
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, in string) {
		ms, err := Parse(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, m := range ms {
			if m.End < m.Start || len(m.Perms) != 4 {
				t.Fatalf("invalid mapping accepted: %+v", m)
			}
			Find(ms, m.Start)
		}
		FindHole(ms, 4096, 0, 1<<47, 0)
		FindHole(ms, 1<<20, 1<<16, 1<<47, 0x7f0000000000)
	})
}

func TestFind(t *testing.T) {
	maps := []Mapping{{Start: 0x1000, End: 0x3000}, {Start: 0x5000, End: 0x6000}}
	reversed := []Mapping{maps[1], maps[0]}
	for _, ms := range [][]Mapping{maps, reversed} {
		for _, tc := range []struct {
			addr  uint64
			start uint64
			ok    bool
		}{{0xfff, 0, false}, {0x1000, 0x1000, true}, {0x2fff, 0x1000, true}, {0x3000, 0, false}, {0x5800, 0x5000, true}, {0x6000, 0, false}} {
			m, ok := Find(ms, tc.addr)
			if ok != tc.ok || m.Start != tc.start {
				t.Errorf("Find(%#x) = %+v, %v", tc.addr, m, ok)
			}
		}
	}
}

func TestFindHole(t *testing.T) {
	const pg = 0x1000
	maps := []Mapping{
		{Start: 0x10000, End: 0x20000},
		{Start: 0x23000, End: 0x30000}, // gap of 3 pages: 1 usable page between guards
		{Start: 0x40000, End: 0x41000},
		{Start: 0x7ff000000000, End: 0x7ff000021000, Path: "[stack]"},
	}
	tests := []struct {
		name               string
		size, lo, hi, near uint64
		want               uint64
		ok                 bool
	}{
		{"lowest from zero", pg, 0, 1 << 47, 0, 0, true},
		{"lowest above lo", pg, 0x10000, 1 << 47, 0, 0x21000, true},
		{"rounded size skips small gap", pg + 1, 0x10000, 1 << 47, 0, 0x31000, true},
		{"unaligned lo rounds up, guard page kept", pg, 0x30001, 1 << 47, 0, 0x31000, true},
		{"hi excludes", 0x20000, 0x10000, 0x40000, 0, 0, false},
		{"fits exactly below hi", 0xd000, 0x10000, 0x3f000, 0, 0x31000, true},
		{"near inside a gap", pg, 0x10000, 1 << 47, 0x35123, 0x35000, true},
		{"near a mapping: closer above", pg, 0x10000, 1 << 47, 0x40800, 0x42000, true},
		{"near a mapping: closer below", pg, 0x10000, 1 << 47, 0x3f800, 0x3e000, true},
		{"near above everything", pg, 0x10000, 1 << 47, 0x7ff000100000, 0x7ff000100000, true},
		{"stack guard gap", pg, 0x7fe000000000, 0x7ff000021000, 0x7ff000000000, 0x7ff000000000 - stackGuardGap - pg, true},
		{"zero size", 0, 0, 1 << 47, 0, 0, false},
		{"empty range", pg, 0x5000, 0x5000, 0, 0, false},
		{"lo near top", pg, ^uint64(0) - 10, ^uint64(0), 0, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := FindHole(maps, tc.size, tc.lo, tc.hi, tc.near)
			if ok != tc.ok || (ok && got != tc.want) {
				t.Fatalf("FindHole = %#x, %v, want %#x, %v", got, ok, tc.want, tc.ok)
			}
			if ok {
				checkHole(t, maps, got, tc.size, tc.lo, tc.hi)
			}
		})
	}
}

// checkHole verifies the FindHole contract: aligned, within [lo, hi), and at
// least one free page from every mapping.
func checkHole(t *testing.T, maps []Mapping, addr, size, lo, hi uint64) {
	t.Helper()
	size = alignUp(size)
	if addr%pageSize != 0 || addr < lo || addr+size > hi {
		t.Fatalf("hole %#x+%#x outside [%#x, %#x) or unaligned", addr, size, lo, hi)
	}
	for _, m := range maps {
		if addr < m.End+pageSize && m.Start < addr+size+pageSize {
			t.Fatalf("hole %#x+%#x overlaps or touches %v", addr, size, m)
		}
	}
}

// --- tests on real processes ---

type progs struct{ dir, pie, nopie, plugin string }

func buildProgs(t *testing.T) progs {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc not installed")
	}
	dir := t.TempDir()
	p := progs{dir: dir,
		pie:    filepath.Join(dir, "target-pie"),
		nopie:  filepath.Join(dir, "target-nopie"),
		plugin: filepath.Join(dir, "libplugin.so"),
	}
	src, _ := filepath.Abs("testdata/target.c")
	plug, _ := filepath.Abs("testdata/plugin.c")
	for _, args := range [][]string{
		{"-O2", "-shared", "-fPIC", "-o", p.plugin, plug},
		{"-O2", "-fPIE", "-pie", "-o", p.pie, src, "-ldl"},
		{"-O2", "-fno-PIE", "-no-pie", "-o", p.nopie, src, "-ldl"},
	} {
		if out, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
			t.Fatalf("gcc %v: %v\n%s", args, err, out)
		}
	}
	return p
}

type running struct {
	pid                  int
	self, plugin, printf uint64
}

// start runs a target program and waits for it to print its addresses. The
// process is killed at the end of the test.
func start(t *testing.T, exe, plugin string) running {
	t.Helper()
	data, err := filepath.Abs("testdata/plugin.c")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, plugin, data)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- s
	}()
	var s string
	select {
	case s = <-line:
	case <-time.After(10 * time.Second):
		t.Fatal("target did not start")
	}
	f := strings.Fields(s)
	if len(f) != 3 {
		t.Fatalf("target printed %q", s)
	}
	var addrs [3]uint64
	for i := range f {
		v, err := strconv.ParseUint(strings.TrimPrefix(f[i], "0x"), 16, 64)
		if err != nil {
			t.Fatalf("target printed %q: %v", s, err)
		}
		addrs[i] = v
	}
	return running{pid: cmd.Process.Pid, self: addrs[0], plugin: addrs[1], printf: addrs[2]}
}

// procMem reads the target's memory through /proc/PID/mem (root may read any
// process's memory; see proc(5) on ptrace access mode checks).
func procMem(t *testing.T, pid int) MemReader {
	f, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		t.Skipf("cannot open /proc/%d/mem: %v", pid, err)
	}
	t.Cleanup(func() { f.Close() })
	return func(addr uint64, b []byte) error {
		_, err := f.ReadAt(b, int64(addr))
		return err
	}
}

// symValue returns the value of a symbol (dynamic or static) in the module's file.
func symValue(t *testing.T, pid int, m *Module, name string) uint64 {
	t.Helper()
	f, err := m.Open(pid)
	if err != nil {
		t.Fatalf("Open(%s): %v", m.Path, err)
	}
	defer f.Close()
	ef, err := elf.NewFile(f)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := ef.Symbols()
	dyn, _ := ef.DynamicSymbols()
	for _, s := range append(st, dyn...) {
		if s.Name == name && s.Section != elf.SHN_UNDEF && (s.Version == "" || !s.VersionIndex.IsHidden()) {
			return s.Value
		}
	}
	t.Fatalf("no symbol %s in %s", name, m.Path)
	return 0
}

func TestModulesLive(t *testing.T) {
	p := buildProgs(t)
	for _, tc := range []struct {
		name string
		exe  string
		pie  bool
	}{{"pie", p.pie, true}, {"no-pie", p.nopie, false}} {
		t.Run(tc.name, func(t *testing.T) {
			r := start(t, tc.exe, p.plugin)
			maps, err := Read(r.pid)
			if err != nil {
				t.Fatal(err)
			}
			m, ok := Find(maps, r.self)
			if !ok || !m.Executable() || m.Path != tc.exe {
				t.Errorf("Find(target_func) = %v, %v", m, ok)
			}

			mods, err := Modules(r.pid, maps, procMem(t, r.pid))
			if err != nil {
				t.Fatal(err)
			}
			idx := map[string]int{}
			for i, m := range mods {
				idx[filepath.Base(m.Path)] = i
				t.Logf("module %d: %s bias %#x [%#x, %#x) exe=%v", i, m.Path, m.Bias, m.Start, m.End, m.IsExe)
			}
			exe := mods[0]
			if !exe.IsExe || exe.Path != tc.exe {
				t.Fatalf("first module %+v is not the executable", exe)
			}
			if !tc.pie && exe.Bias != 0 {
				t.Errorf("no-pie bias = %#x", exe.Bias)
			}
			if !exe.Contains(r.self) || exe.Contains(r.plugin) {
				t.Error("exe.Contains wrong")
			}
			libc, ok1 := idx["libc.so.6"]
			ld, ok2 := idx["ld-linux-x86-64.so.2"]
			plug, ok3 := idx["libplugin.so"]
			if !ok1 || !ok2 || !ok3 {
				t.Fatalf("missing modules: %v", idx)
			}
			// Load order (link_map): exe, libc, ld.so, then the dlopen()ed
			// plugin, which address order would put before libc (mmap
			// allocates top-down).
			if !(libc < ld && ld < plug) {
				t.Errorf("order libc %d, ld.so %d, plugin %d, want load order", libc, ld, plug)
			}
			for _, name := range []string{"plugin.c", "zero"} {
				if _, ok := idx[name]; ok {
					t.Errorf("non-ELF mapping %s listed as a module", name)
				}
			}
			sawData := false
			for _, m := range maps {
				sawData = sawData || filepath.Base(m.Path) == "plugin.c"
			}
			if !sawData {
				t.Error("data file mapping not in maps")
			}
			for i, m := range mods[1:] {
				if m.IsExe {
					t.Errorf("module %d %s also IsExe", i+1, m.Path)
				}
			}
			checks := []struct {
				mod  *Module
				sym  string
				addr uint64
			}{
				{exe, "target_func", r.self},
				{mods[plug], "plugin_func", r.plugin},
			}
			if tc.pie {
				// A PIE takes printf's address through the GOT: libc's
				// own. A non-PIE executable's canonical &printf is its
				// PLT entry.
				checks = append(checks, struct {
					mod  *Module
					sym  string
					addr uint64
				}{mods[libc], "printf", r.printf})
			} else if !exe.Contains(r.printf) {
				t.Errorf("no-pie &printf %#x not in the executable", r.printf)
			}
			for _, c := range checks {
				if got := symValue(t, r.pid, c.mod, c.sym) + c.mod.Bias; got != c.addr {
					t.Errorf("%s: value+bias = %#x, process says %#x", c.sym, got, c.addr)
				}
			}

			// Without a memory reader the executable is still first.
			mods2, err := Modules(r.pid, maps, nil)
			if err != nil || len(mods2) != len(mods) || !mods2[0].IsExe {
				t.Errorf("Modules(nil mem) = %d modules, %v", len(mods2), err)
			}

			// A hole near the executable really is free.
			lo := exe.Start - min(exe.Start, 1<<31)
			addr, ok := FindHole(maps, 3*pageSize+1, lo, exe.End+1<<31, exe.Start)
			if !ok {
				t.Fatal("no hole near the executable")
			}
			checkHole(t, maps, addr, 4*pageSize, lo, exe.End+1<<31)
			if dist(addr, exe.Start) > 1<<31 {
				t.Errorf("hole %#x not near %#x", addr, exe.Start)
			}
		})
	}
}

func TestOpenDeletedAndReplaced(t *testing.T) {
	p := buildProgs(t)
	orig, err := os.ReadFile(p.pie)
	if err != nil {
		t.Fatal(err)
	}
	for _, replace := range []bool{false, true} {
		t.Run(fmt.Sprintf("replace=%v", replace), func(t *testing.T) {
			exe := filepath.Join(t.TempDir(), "victim")
			if err := os.WriteFile(exe, orig, 0o755); err != nil {
				t.Fatal(err)
			}
			r := start(t, exe, p.plugin)
			if err := os.Remove(exe); err != nil {
				t.Fatal(err)
			}
			if replace {
				if err := os.WriteFile(exe, []byte("not the program"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			maps, err := Read(r.pid)
			if err != nil {
				t.Fatal(err)
			}
			mods, err := Modules(r.pid, maps, procMem(t, r.pid))
			if err != nil {
				t.Fatal(err)
			}
			m := mods[0]
			// The mapped inode was unlinked in both cases: the kernel
			// reports it " (deleted)" even when a new file took its name.
			if !m.IsExe || m.Path != exe || !m.Deleted {
				t.Errorf("exe module %+v", m)
			}
			f, err := m.Open(r.pid)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer f.Close()
			got, err := io.ReadAll(f)
			if err != nil || !bytes.Equal(got, orig) {
				t.Errorf("Open read %d bytes (%v), want the original %d", len(got), err, len(orig))
			}
			if got := symValue(t, r.pid, m, "target_func") + m.Bias; got != r.self {
				t.Errorf("target_func at %#x, process says %#x", got, r.self)
			}

			// Without map_files (simulated with a bogus range) the path
			// fallback must refuse a replaced file.
			bogus := *m
			bogus.Mappings = []Mapping{{Start: 1, End: 2}}
			bogus.Deleted = false
			_, err = bogus.Open(r.pid)
			if replace && !errors.Is(err, ErrFileChanged) {
				t.Errorf("fallback Open of a replaced file: err = %v, want ErrFileChanged", err)
			}
			if !replace && err == nil {
				t.Error("fallback Open of a removed file succeeded")
			}
		})
	}
}

// TestModulesFileWrittenInPlace: the program headers Modules reads are
// cached by what stat(2) says of the mapped file, so a library written in
// place (same inode) is read again, not taken from the cache.
func TestModulesFileWrittenInPlace(t *testing.T) {
	p := buildProgs(t)
	orig, err := os.ReadFile(p.plugin)
	if err != nil {
		t.Fatal(err)
	}
	lib := filepath.Join(t.TempDir(), "libplugin.so")
	if err := os.WriteFile(lib, orig, 0o755); err != nil {
		t.Fatal(err)
	}
	r := start(t, p.pie, lib)
	plugin := func() *Module {
		maps, err := Read(r.pid)
		if err != nil {
			t.Fatal(err)
		}
		mods, err := Modules(r.pid, maps, procMem(t, r.pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mods {
			if m.Path == lib {
				return m
			}
		}
		t.Fatalf("no module %s", lib)
		return nil
	}
	m := plugin()
	k1, ok := m.fileIdentity(r.pid)
	if !ok {
		t.Skip("map_files not statable")
	}
	if _, ok := elfInfos.get(k1); !ok {
		t.Fatal("Modules did not cache the library's headers")
	}
	f, err := os.OpenFile(lib, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte{0}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	k2, ok := plugin().fileIdentity(r.pid)
	if !ok || k2 == k1 {
		t.Fatalf("identity after an in-place write: %+v (%v), before %+v", k2, ok, k1)
	}
	if _, ok := elfInfos.get(k2); !ok {
		t.Fatal("the rewritten library was not read again")
	}
	if m2 := plugin(); m2.Bias != m.Bias {
		t.Errorf("bias %#x, then %#x", m.Bias, m2.Bias)
	}
}
