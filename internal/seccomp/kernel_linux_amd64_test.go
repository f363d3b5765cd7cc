package seccomp

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hotpatch/hotpatch/internal/testutil"
)

// TestAgainstKernel installs random filter chains in real processes and
// checks that the kernel's verdict on a system call is what Eval predicts,
// and that the kernel refuses to load exactly the programs Validate refuses.
// Each filter starts with a guard that allows every real system call
// (numbers below 1000), so that the child's own calls are not affected; the
// calls compared use unassigned numbers, which the kernel filters like any
// other and, when allowed, fail with ENOSYS.
func TestAgainstKernel(t *testing.T) {
	bin := testutil.Compile(t, filepath.Join(t.TempDir(), "kernel"), "-O1", "-pthread", "testdata/kernel.c")
	r := rand.New(rand.NewSource(1))
	type kcase struct {
		filters []Program
		d       Data
	}
	var cases []kcase
	var in bytes.Buffer
	for len(cases) < 600 {
		d := Data{Nr: int32(1000 + r.Intn(100)), Arch: x8664}
		for i := range d.Args {
			d.Args[i] = randWord(r)
		}
		n := 1 + r.Intn(3)
		if r.Intn(10) == 0 {
			n = 1 + r.Intn(8)
		}
		c := kcase{d: d}
		for range n {
			c.filters = append(c.filters, guarded(randProgram(r, &d)))
		}
		cases = append(cases, c)
	}
	cmd := exec.Command(bin)
	for _, c := range cases {
		binary.Write(&in, binary.LittleEndian, uint32(len(c.filters)))
		for _, f := range c.filters {
			binary.Write(&in, binary.LittleEndian, uint32(len(f)))
			in.Write(f.Encode())
		}
		binary.Write(&in, binary.LittleEndian, c.d.Nr)
		binary.Write(&in, binary.LittleEndian, uint32(0)) // padding of struct call
		binary.Write(&in, binary.LittleEndian, c.d.Args)
	}
	cmd.Stdin = &in
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v", bin, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Scan()
	var ip uint64
	if _, err := fmt.Sscanf(sc.Text(), "ip %d", &ip); err != nil {
		t.Fatalf("first line %q: %v", sc.Text(), err)
	}
	counts := map[string]int{}
	for i, c := range cases {
		if !sc.Scan() {
			t.Fatalf("case %d: no output", i)
		}
		got := sc.Text()
		c.d.IP = ip
		want := expected(c.filters, c.d)
		counts[strings.Fields(want)[0]]++
		if got != want {
			t.Errorf("case %d (%+v): kernel %q, interpreter %q\nfilters:", i, c.d, got, want)
			for _, f := range c.filters {
				t.Errorf("  %v", f)
			}
		}
	}
	t.Logf("outcomes: %v", counts)
	for _, k := range []string{"einval", "ret", "trap", "kill_thread", "kill_process"} {
		if counts[k] == 0 {
			t.Errorf("no case had outcome %q: the generator does not cover it", k)
		}
	}
}

// expected is the line testdata/kernel.c prints for the case, according to
// Validate and Eval.
func expected(filters []Program, d Data) string {
	for i, f := range filters {
		if f.Validate() != nil {
			return fmt.Sprintf("einval %d", i)
		}
	}
	res, err := Eval(filters, d)
	if err != nil {
		return err.Error()
	}
	switch res.Action {
	case Allow, Log, Trace, UserNotif: // no tracer, no listener: ENOSYS
		return "ret -38"
	case Errno:
		return fmt.Sprintf("ret %d", -min(int(res.Data), 4095))
	case Trap:
		return fmt.Sprintf("trap %d", res.Data)
	case KillThread:
		return "kill_thread"
	}
	return "kill_process"
}

// guarded prefixes p with "allow every system call numbered below 1000".
func guarded(p Program) Program {
	g := Program{stmt(ldW, 0), jump(clsJMP|jmpJGE|srcK, 1000, 1, 0), stmt(retK, uint32(Allow))}
	return append(g, p...)
}

func randWord(r *rand.Rand) uint64 {
	switch r.Intn(4) {
	case 0:
		return uint64(r.Intn(16))
	case 1:
		return r.Uint64()
	case 2:
		return uint64(r.Uint32())
	}
	return ^uint64(r.Intn(4))
}

// randProgram makes a random program, mostly valid, whose comparisons use
// words of d so that both sides of the branches are taken.
func randProgram(r *rand.Rand, d *Data) Program {
	sd := d.Bytes()
	pool := []uint32{0, 1, 4, 0xffffffff, uint32(d.Nr), d.Arch}
	for off := 16; off < DataSize; off += 4 {
		pool = append(pool, binary.LittleEndian.Uint32(sd[off:]))
	}
	k := func() uint32 {
		if r.Intn(3) == 0 {
			return r.Uint32()
		}
		return pool[r.Intn(len(pool))]
	}
	actions := []Action{KillProcess, KillThread, Trap, Errno, UserNotif, Trace, Log, Allow}
	retVal := func() uint32 {
		if r.Intn(20) == 0 {
			return r.Uint32() // unknown actions too
		}
		return uint32(actions[r.Intn(len(actions))]) | uint32(r.Intn(5000))
	}
	n := 2 + r.Intn(24)
	p := make(Program, 0, n+8)
	if r.Intn(10) != 0 { // scratch words written first, so that most loads of them are valid
		for m := range uint32(4) {
			p = append(p, stmt(clsLD|modeIMM, k()), stmt(clsST, m))
		}
	}
	alu := []uint16{opADD, opSUB, opMUL, opDIV, opOR, opAND, opLSH, opRSH, opXOR}
	jmps := []uint16{jmpJEQ, jmpJGT, jmpJGE, jmpJSET}
	for i := 0; i < n; i++ {
		left := n - i - 1 // instructions after this one
		var in Instruction
		switch c := r.Intn(100); {
		case c < 25:
			off := uint32(4 * r.Intn(16))
			if r.Intn(40) == 0 {
				off = uint32(r.Intn(70))
			}
			in = stmt(ldW, off)
		case c < 30:
			in = stmt([]uint16{clsLD | modeIMM, clsLDX | modeIMM}[r.Intn(2)], k())
		case c < 38:
			code := []uint16{clsLD | modeMEM, clsLDX | modeMEM, clsST, clsSTX}[r.Intn(4)]
			in = stmt(code, uint32(r.Intn(4)))
			if r.Intn(50) == 0 {
				in.K = 16
			}
		case c < 58:
			op := alu[r.Intn(len(alu))]
			src := uint16([]int{srcK, srcX}[r.Intn(2)])
			kv := k()
			if op == opLSH || op == opRSH {
				kv = uint32(r.Intn(34))
			}
			if op == opDIV && src == srcK && kv == 0 && r.Intn(4) != 0 {
				kv = 3
			}
			in = stmt(clsALU|op|src, kv)
		case c < 62:
			in = stmt([]uint16{clsALU | opNEG, clsMISC | miscTAX, clsMISC | miscTXA, clsLD | sizeW | modeLEN, clsLDX | sizeW | modeLEN}[r.Intn(5)], 0)
		case c < 85 && left > 1:
			src := uint16([]int{srcK, srcX}[r.Intn(2)])
			in = jump(clsJMP|jmps[r.Intn(len(jmps))]|src, k(), uint8(r.Intn(left)), uint8(r.Intn(left)))
			if r.Intn(60) == 0 {
				in.Jt = uint8(left + r.Intn(3))
			}
		case c < 88 && left > 1:
			in = jump(clsJMP|jmpJA, uint32(r.Intn(left)), 0, 0)
		case c < 97:
			in = stmt(retK, retVal())
		case c < 98:
			in = stmt(uint16(r.Intn(0x100)), k()) // mostly an opcode seccomp refuses
		default:
			in = stmt(clsRET|retA, 0)
		}
		p = append(p, in)
	}
	if r.Intn(2) == 0 {
		return append(p, stmt(retK, retVal()))
	}
	// Computed errno: A's low bits with a known action.
	act := []Action{Errno, Trap, Errno, Allow}[r.Intn(4)]
	return append(p, stmt(clsALU|opAND|srcK, 0xfff), stmt(clsALU|opOR|srcK, uint32(act)), stmt(clsRET|retA, 0))
}
