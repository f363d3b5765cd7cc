package seccomp

import (
	"errors"
	"testing"
)

// Assembler helpers, as BPF_STMT and BPF_JUMP (linux/filter.h).
func stmt(code uint16, k uint32) Instruction { return Instruction{Code: code, K: k} }
func jump(code uint16, k uint32, jt, jf uint8) Instruction {
	return Instruction{Code: code, Jt: jt, Jf: jf, K: k}
}

const (
	ldW   = clsLD | sizeW | modeABS
	jeqK  = clsJMP | jmpJEQ | srcK
	retK  = clsRET | srcK
	x8664 = 0xc000003e
)

// denyNr is the usual filter shape: check the arch, then kill on one call.
func denyNr(nr uint32, action Action) Program {
	return Program{
		stmt(ldW, 4),
		jump(jeqK, x8664, 1, 0),
		stmt(retK, uint32(KillProcess)),
		stmt(ldW, 0),
		jump(jeqK, nr, 0, 1),
		stmt(retK, uint32(action)),
		stmt(retK, uint32(Allow)),
	}
}

func TestRunTable(t *testing.T) {
	d := Data{Nr: 9, Arch: x8664, IP: 0x7fff_1234_5678, Args: [6]uint64{0x1000, 0x2000, 7, 0x22, ^uint64(0), 0x1_0000_0003}}
	tests := []struct {
		name string
		p    Program
		want uint32
	}{
		{"allow", Program{stmt(retK, uint32(Allow))}, uint32(Allow)},
		{"kill on nr 9", denyNr(9, KillProcess), uint32(KillProcess)},
		{"other nr allowed", denyNr(10, KillProcess), uint32(Allow)},
		{"wrong arch", Program{stmt(ldW, 4), jump(jeqK, 0x40000003, 0, 1), stmt(retK, uint32(Allow)), stmt(retK, uint32(Errno)|1)}, uint32(Errno) | 1},
		{"arg low word", Program{stmt(ldW, 16+8*5), stmt(clsRET|retA, 0)}, 3},
		{"arg high word", Program{stmt(ldW, 16+8*5+4), stmt(clsRET|retA, 0)}, 1},
		{"ip low", Program{stmt(ldW, 8), stmt(clsRET|retA, 0)}, 0x1234_5678},
		{"ip high", Program{stmt(ldW, 12), stmt(clsRET|retA, 0)}, 0x7fff},
		{"len", Program{stmt(clsLD|sizeW|modeLEN, 0), stmt(clsRET|retA, 0)}, 64},
		{"ldx len, txa", Program{stmt(clsLDX|sizeW|modeLEN, 0), stmt(clsMISC|miscTXA, 0), stmt(clsRET|retA, 0)}, 64},
		{"jset exec bit", Program{stmt(ldW, 16+8*2), jump(clsJMP|jmpJSET|srcK, 4, 0, 1), stmt(retK, uint32(KillProcess)), stmt(retK, uint32(Allow))}, uint32(KillProcess)},
		{"jgt", Program{stmt(ldW, 0), jump(clsJMP|jmpJGT|srcK, 8, 0, 1), stmt(retK, 1), stmt(retK, 2)}, 1},
		{"jge equal", Program{stmt(ldW, 0), jump(clsJMP|jmpJGE|srcK, 9, 0, 1), stmt(retK, 1), stmt(retK, 2)}, 1},
		{"jeq x", Program{stmt(clsLDX|modeIMM, 9), stmt(ldW, 0), jump(clsJMP|jmpJEQ|srcX, 0, 0, 1), stmt(retK, 1), stmt(retK, 2)}, 1},
		{"ja", Program{jump(clsJMP|jmpJA, 1, 0, 0), stmt(retK, 1), stmt(retK, 2)}, 2},
		{"alu", Program{
			stmt(clsLD|modeIMM, 10), stmt(clsALU|opADD|srcK, 5), stmt(clsALU|opMUL|srcK, 3), stmt(clsALU|opSUB|srcK, 1),
			stmt(clsALU|opDIV|srcK, 4), stmt(clsALU|opLSH|srcK, 8), stmt(clsALU|opOR|srcK, 1), stmt(clsALU|opXOR|srcK, 0x10),
			stmt(clsALU|opAND|srcK, 0xfff), stmt(clsALU|opRSH|srcK, 1), stmt(clsRET|retA, 0)}, ((11<<8 | 1) ^ 0x10) >> 1},
		{"neg wraps", Program{stmt(clsLD|modeIMM, 1), stmt(clsALU|opNEG, 0), stmt(clsRET|retA, 0)}, 0xffffffff},
		{"div by x = 0 returns 0", Program{stmt(clsLD|modeIMM, 1), stmt(clsLDX|modeIMM, 0), stmt(clsALU|opDIV|srcX, 0), stmt(retK, uint32(Allow))}, 0},
		{"shift by x mod 32", Program{stmt(clsLD|modeIMM, 1), stmt(clsLDX|modeIMM, 33), stmt(clsALU|opLSH|srcX, 0), stmt(clsRET|retA, 0)}, 2},
		{"scratch memory", Program{stmt(clsLD|modeIMM, 7), stmt(clsST, 3), stmt(clsLDX|modeIMM, 9), stmt(clsSTX, 15),
			stmt(clsLD|modeMEM, 15), stmt(clsLDX|modeMEM, 3), stmt(clsALU|opSUB|srcX, 0), stmt(clsRET|retA, 0)}, 2},
		{"tax", Program{stmt(clsLD|modeIMM, 5), stmt(clsMISC|miscTAX, 0), stmt(clsLD|modeIMM, 0), stmt(clsMISC|miscTXA, 0), stmt(clsRET|retA, 0)}, 5},
	}
	for _, tc := range tests {
		got, err := tc.p.Run(&d)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s: got %#x, want %#x", tc.name, got, tc.want)
		}
	}
}

func TestValidateRejects(t *testing.T) {
	tests := []struct {
		name string
		p    Program
	}{
		{"empty", Program{}},
		{"too long", make(Program, MaxInstructions+1)},
		{"no ret at end", Program{stmt(ldW, 0)}},
		{"unknown opcode", Program{stmt(0xffff, 0), stmt(retK, 0)}},
		{"ldx abs", Program{stmt(clsLDX|sizeW|modeABS, 0), stmt(retK, 0)}},
		{"ld half word", Program{stmt(clsLD|0x08|modeABS, 0), stmt(retK, 0)}},
		{"mod", Program{stmt(clsALU|0x90|srcK, 3), stmt(retK, 0)}},
		{"load past seccomp_data", Program{stmt(ldW, 64), stmt(retK, 0)}},
		{"unaligned load", Program{stmt(ldW, 2), stmt(retK, 0)}},
		{"ancillary load", Program{stmt(ldW, 0xfffff000), stmt(retK, 0)}},
		{"jt out of range", Program{jump(jeqK, 0, 1, 0), stmt(retK, 0)}},
		{"jf out of range", Program{jump(jeqK, 0, 0, 5), stmt(retK, 0)}},
		{"ja out of range", Program{jump(clsJMP|jmpJA, 1, 0, 0), stmt(retK, 0)}},
		{"ja huge", Program{jump(clsJMP|jmpJA, 0xffffffff, 0, 0), stmt(retK, 0)}},
		{"div by constant 0", Program{stmt(clsALU|opDIV|srcK, 0), stmt(retK, 0)}},
		{"shift by 32", Program{stmt(clsALU|opLSH|srcK, 32), stmt(retK, 0)}},
		{"scratch index 16", Program{stmt(clsST, 16), stmt(retK, 0)}},
		{"scratch read before write", Program{stmt(clsLD|modeMEM, 0), stmt(retK, 0)}},
		{"scratch written on one path only", Program{
			stmt(ldW, 0), jump(jeqK, 1, 0, 1), stmt(clsST, 2), stmt(clsLD|modeMEM, 2), stmt(clsRET|retA, 0)}},
	}
	for _, tc := range tests {
		if err := tc.p.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Validate = %v, want ErrInvalid", tc.name, err)
		}
		if _, err := tc.p.Run(&Data{}); err == nil {
			t.Errorf("%s: Run succeeded", tc.name)
		}
		if _, err := Eval([]Program{{stmt(retK, uint32(Allow))}, tc.p}, Data{}); err == nil {
			t.Errorf("%s: Eval succeeded", tc.name)
		}
	}
}

func TestEvalPrecedence(t *testing.T) {
	ret := func(v uint32) Program { return Program{stmt(retK, v)} }
	tests := []struct {
		name    string
		filters []Program
		want    Result
	}{
		{"none", nil, Result{Action: Allow, Raw: uint32(Allow), Filter: -1}},
		{"log beats allow", []Program{ret(uint32(Allow)), ret(uint32(Log))}, Result{Action: Log, Raw: uint32(Log), Filter: 1}},
		{"errno beats trace", []Program{ret(uint32(Trace) | 1), ret(uint32(Errno) | 13)}, Result{Action: Errno, Data: 13, Raw: uint32(Errno) | 13, Filter: 1}},
		{"trap beats errno", []Program{ret(uint32(Trap) | 2), ret(uint32(Errno) | 1)}, Result{Action: Trap, Data: 2, Raw: uint32(Trap) | 2, Filter: 0}},
		{"kill thread beats trap", []Program{ret(uint32(Trap)), ret(uint32(KillThread))}, Result{Action: KillThread, Filter: 1}},
		{"kill process beats all", []Program{ret(uint32(KillProcess)), ret(uint32(KillThread)), ret(uint32(UserNotif))}, Result{Action: KillProcess, Raw: uint32(KillProcess), Filter: 0}},
		{"user notif beats trace", []Program{ret(uint32(UserNotif)), ret(uint32(Trace))}, Result{Action: UserNotif, Raw: uint32(UserNotif), Filter: 0}},
		{"newest wins a tie", []Program{ret(uint32(Errno) | 1), ret(uint32(Errno) | 2)}, Result{Action: Errno, Data: 2, Raw: uint32(Errno) | 2, Filter: 1}},
		{"unknown action kills the process", []Program{ret(0x00040000)}, Result{Action: KillProcess, Raw: 0x00040000, Filter: 0}},
	}
	for _, tc := range tests {
		got, err := Eval(tc.filters, Data{})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
	r, _ := Eval([]Program{denyNr(319, KillProcess)}, Data{Nr: 319, Arch: x8664})
	if r.Runs() || r.String() != "SECCOMP_RET_KILL_PROCESS" {
		t.Errorf("memfd_create under a kill filter: %v runs=%v", r, r.Runs())
	}
	r, _ = Eval([]Program{denyNr(319, Errno|1)}, Data{Nr: 319, Arch: x8664})
	if r.Runs() || r.String() != "SECCOMP_RET_ERRNO|1" {
		t.Errorf("errno filter: %v", r)
	}
}

func TestDecodeEncode(t *testing.T) {
	p := denyNr(319, KillProcess)
	q, err := Decode(p.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if len(q) != len(p) {
		t.Fatalf("decoded %d instructions, want %d", len(q), len(p))
	}
	for i := range p {
		if p[i] != q[i] {
			t.Errorf("instruction %d: %+v != %+v", i, q[i], p[i])
		}
	}
	if _, err := Decode(make([]byte, 7)); !errors.Is(err, ErrInvalid) {
		t.Errorf("7 bytes: %v", err)
	}
}

// FuzzEval: any bytes are either refused or evaluated, never a panic; a
// program that validates always evaluates, to the value Run returns.
func FuzzEval(f *testing.F) {
	f.Add(denyNr(319, KillProcess).Encode(), int32(319), uint64(0), uint64(0))
	f.Add(Program{stmt(clsLD|modeIMM, 1), stmt(clsLDX|modeIMM, 0), stmt(clsALU|opDIV|srcX, 0), stmt(retK, 0)}.Encode(), int32(0), uint64(1), uint64(2))
	f.Add(Program{stmt(ldW, 16), stmt(clsST, 1), stmt(clsLDX|modeMEM, 1), stmt(clsALU|opLSH|srcX, 0), stmt(clsRET|retA, 0)}.Encode(), int32(1), uint64(77), uint64(3))
	f.Add([]byte{0x15, 0, 0xff, 0xff, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0}, int32(0), uint64(0), uint64(0))
	f.Fuzz(func(t *testing.T, b []byte, nr int32, ip, arg uint64) {
		d := Data{Nr: nr, Arch: x8664, IP: ip, Args: [6]uint64{arg, ^arg, arg >> 7, 0, arg * 3, 1}}
		p, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Decode error %v does not wrap ErrInvalid", err)
			}
			return
		}
		v, err := p.Run(&d)
		if err != nil {
			t.Fatalf("valid program fails to run: %v", err)
		}
		r, err := Eval([]Program{p}, d)
		if err != nil {
			t.Fatalf("Eval: %v", err)
		}
		if r.Raw != v && r.Filter != -1 {
			t.Fatalf("Eval raw %#x, Run %#x", r.Raw, v)
		}
	})
}
