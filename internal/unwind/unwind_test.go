package unwind_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/arch/amd64"
	"github.com/hotpatch/hotpatch/internal/elfsym"
	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/procmaps"
	"github.com/hotpatch/hotpatch/internal/testutil"
	"github.com/hotpatch/hotpatch/internal/unwind"
)

// TestUnwindLiveProcess walks the stack of a process blocked in nanosleep
// through libc and the program, from CFI alone (-fomit-frame-pointer), and
// checks the chain inner <- outer <- main.
func TestUnwindLiveProcess(t *testing.T) {
	u, st, pc, sp, fp, exe, exeMod := stoppedChain(t)
	res := u.Unwind(pc, sp, fp, st)
	var names []string
	for i, pc := range res.PCs {
		if i > 0 {
			pc--
		}
		if exeMod.Contains(pc) {
			if s, ok := exe.Containing(pc - exeMod.Bias); ok {
				names = append(names, s.Name)
			}
		}
	}
	got := strings.Join(names, " ")
	if !strings.HasPrefix(got, "inner outer main") {
		t.Fatalf("program frames %q (complete=%v, %s), want inner outer main", got, res.Complete, res.Reason)
	}
	if !res.Complete {
		t.Errorf("walk incomplete: %s", res.Reason)
	}
	t.Logf("%d frames, program part: %s", len(res.PCs), got)
}

// BenchmarkUnwind measures one thread's walk from its stack copy, the work
// the consistency check does per thread while the process is stopped.
func BenchmarkUnwind(b *testing.B) {
	u, st, pc, sp, fp, _, _ := stoppedChain(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if res := u.Unwind(pc, sp, fp, st); !res.Complete {
			b.Fatal(res.Reason)
		}
	}
}

// stoppedChain starts chain.c, waits until it sleeps inside inner(), and
// returns an unwinder for it with a copy of its stack.
func stoppedChain(t testing.TB) (*unwind.Unwinder, *unwind.Stack, uint64, uint64, uint64, *elfsym.Table, *procmaps.Module) {
	testutil.NeedPtrace(t)
	dir := t.TempDir()
	bin := testutil.Compile(t, filepath.Join(dir, "chain"), "testdata/chain.c", "-O2", "-fomit-frame-pointer")
	tg := testutil.Start(t, bin)
	tg.WaitLine(t, 5*time.Second, func(l string) bool { return l == "ready" })
	time.Sleep(50 * time.Millisecond)

	maps, err := procmaps.Read(tg.Pid)
	if err != nil {
		t.Fatal(err)
	}
	mods, err := procmaps.Modules(tg.Pid, maps, func(a uint64, b []byte) error { return proc.ReadMem(tg.Pid, a, b) })
	if err != nil {
		t.Fatal(err)
	}
	u := &unwind.Unwinder{Regs: amd64.Arch{}.UnwindRegs()}
	var exe *elfsym.Table
	var exeMod *procmaps.Module
	for _, m := range mods {
		f, err := m.Open(tg.Pid)
		if err != nil {
			t.Fatal(err)
		}
		ef, err := elfsym.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		tab, err := unwind.Parse(ef.ELF())
		if err != nil {
			t.Fatalf("%s: %v", m.Path, err)
		}
		if tab.Len() == 0 {
			t.Errorf("%s: no FDEs", m.Path)
		}
		u.Mods = append(u.Mods, unwind.Module{Start: m.Start, End: m.End, Bias: m.Bias, Table: tab, Name: filepath.Base(m.Path)})
		if m.IsExe {
			exe, _ = ef.Symbols()
			exeMod = m
		}
	}
	pr, err := proc.Attach(tg.Pid, proc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Detach()
	if err := pr.Stop(); err != nil {
		t.Fatal(err)
	}
	th := pr.Threads()[0]
	sp := th.Regs.SP()
	m, _ := procmaps.Find(maps, sp)
	st := &unwind.Stack{Lo: sp, Data: make([]byte, m.End-sp), Mem: pr.ReadMem}
	if err := pr.ReadMem(sp, st.Data); err != nil {
		t.Fatal(err)
	}
	return u, st, th.Regs.PC(), sp, th.Regs.FP(), exe, exeMod
}

// FuzzParse feeds hostile .eh_frame contents through Parse and a walk.
func FuzzParse(f *testing.F) {
	f.Add([]byte{0x14, 0, 0, 0, 0, 0, 0, 0, 1, 'z', 'R', 0, 1, 0x78, 0x10, 1, 0x1b, 0x0c, 7, 8, 0x90, 1, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		tab, err := unwind.ParseEHFrame(data, 0x1000)
		if err != nil {
			return
		}
		u := &unwind.Unwinder{Regs: amd64.Arch{}.UnwindRegs(), Mods: []unwind.Module{{Start: 0, End: 1 << 20, Table: tab}}}
		u.Unwind(0x1010, 0x8000, 0, &unwind.Stack{Lo: 0x8000, Data: make([]byte, 256)})
	})
}
