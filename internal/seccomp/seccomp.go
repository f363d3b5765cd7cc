// Package seccomp evaluates seccomp filters the way the kernel does, so that
// hotpatch can tell, before it injects a system call into a process, what the
// process's filters will decide for exactly that call.
//
// A filter is a classic BPF program (struct sock_filter, linux/filter.h) run
// over struct seccomp_data (linux/seccomp.h):
//
//	struct seccomp_data { int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]; };
//
// The kernel accepts only a subset of classic BPF for seccomp
// (kernel/seccomp.c, seccomp_check_filter, on top of net/core/filter.c,
// bpf_check_classic): Validate enforces the same rules, so a program this
// package accepts is one the kernel would have loaded, and Run never fails on
// it. Programs come from another process's memory (through
// PTRACE_SECCOMP_GET_FILTER) and are untrusted input: every malformed program
// is an error, never a panic.
//
// Plain Go, no host dependency: it builds and is tested on every host. Loads
// from seccomp_data are native-endian 32-bit words, taken here as
// little-endian, the byte order of every architecture hotpatch supports
// (amd64, arm64).
package seccomp

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrInvalid: a program the kernel would refuse to load.
var ErrInvalid = errors.New("invalid seccomp program")

// Classic BPF opcode fields (linux/bpf_common.h).
const (
	clsLD   = 0x00
	clsLDX  = 0x01
	clsST   = 0x02
	clsSTX  = 0x03
	clsALU  = 0x04
	clsJMP  = 0x05
	clsRET  = 0x06
	clsMISC = 0x07

	sizeW = 0x00

	modeIMM = 0x00
	modeABS = 0x20
	modeMEM = 0x60
	modeLEN = 0x80

	opADD = 0x00
	opSUB = 0x10
	opMUL = 0x20
	opDIV = 0x30
	opOR  = 0x40
	opAND = 0x50
	opLSH = 0x60
	opRSH = 0x70
	opNEG = 0x80
	opXOR = 0xa0

	jmpJA   = 0x00
	jmpJEQ  = 0x10
	jmpJGT  = 0x20
	jmpJGE  = 0x30
	jmpJSET = 0x40

	srcK = 0x00
	srcX = 0x08

	retA = 0x10

	miscTAX = 0x00
	miscTXA = 0x80
)

// Limits of classic BPF (linux/filter.h, linux/bpf_common.h).
const (
	// MaxInstructions is BPF_MAXINSNS: the longest program the kernel loads.
	MaxInstructions = 4096
	// memWords is BPF_MEMWORDS, the size of the scratch memory M[].
	memWords = 16
	// DataSize is sizeof(struct seccomp_data).
	DataSize = 64
)

// Instruction is one struct sock_filter.
type Instruction struct {
	Code   uint16
	Jt, Jf uint8
	K      uint32
}

// Program is one seccomp filter.
type Program []Instruction

// InstructionSize is sizeof(struct sock_filter).
const InstructionSize = 8

// Decode reads a program from its in-memory form (an array of struct
// sock_filter, as PTRACE_SECCOMP_GET_FILTER returns it) and validates it.
func Decode(b []byte) (Program, error) {
	if len(b)%InstructionSize != 0 {
		return nil, fmt.Errorf("%w: %d bytes is not a whole number of %d-byte instructions", ErrInvalid, len(b), InstructionSize)
	}
	p := make(Program, len(b)/InstructionSize)
	for i := range p {
		w := b[i*InstructionSize:]
		p[i] = Instruction{Code: binary.LittleEndian.Uint16(w), Jt: w[2], Jf: w[3], K: binary.LittleEndian.Uint32(w[4:])}
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// Encode returns the program's in-memory form (the inverse of Decode).
func (p Program) Encode() []byte {
	b := make([]byte, len(p)*InstructionSize)
	for i, in := range p {
		w := b[i*InstructionSize:]
		binary.LittleEndian.PutUint16(w, in.Code)
		w[2], w[3] = in.Jt, in.Jf
		binary.LittleEndian.PutUint32(w[4:], in.K)
	}
	return b
}

// allowed reports whether the kernel accepts opcode c in a seccomp filter:
// the explicit list of seccomp_check_filter (LD W ABS/LEN and LDX W LEN are
// accepted there and rewritten; everything else must be listed).
func allowed(c uint16) bool {
	switch c {
	case clsLD | sizeW | modeABS, clsLD | sizeW | modeLEN, clsLDX | sizeW | modeLEN,
		clsRET | srcK, clsRET | retA,
		clsALU | opNEG,
		clsLD | modeIMM, clsLDX | modeIMM,
		clsMISC | miscTAX, clsMISC | miscTXA,
		clsLD | modeMEM, clsLDX | modeMEM, clsST, clsSTX,
		clsJMP | jmpJA:
		return true
	}
	switch c &^ srcX {
	case clsALU | opADD, clsALU | opSUB, clsALU | opMUL, clsALU | opDIV,
		clsALU | opAND, clsALU | opOR, clsALU | opXOR, clsALU | opLSH, clsALU | opRSH,
		clsJMP | jmpJEQ, clsJMP | jmpJGE, clsJMP | jmpJGT, clsJMP | jmpJSET:
		return true
	}
	return false
}

// Validate applies the kernel's load-time checks: length 1..4096, only the
// opcodes seccomp allows, loads from seccomp_data 32-bit aligned and inside
// it, no division by a constant zero, shifts by a constant below 32, scratch
// memory indices below 16 and never read before written on every path,
// every jump landing inside the program (jumps only go forward, so every run
// ends), and a RET as the last instruction.
func (p Program) Validate() error {
	n := len(p)
	if n == 0 || n > MaxInstructions {
		return fmt.Errorf("%w: %d instructions (want 1 to %d)", ErrInvalid, n, MaxInstructions)
	}
	for pc, in := range p {
		if !allowed(in.Code) {
			return fmt.Errorf("%w: instruction %d: opcode %#04x not allowed in a seccomp filter", ErrInvalid, pc, in.Code)
		}
		bad := ""
		switch in.Code {
		case clsLD | sizeW | modeABS:
			if in.K >= DataSize || in.K&3 != 0 {
				bad = fmt.Sprintf("load at offset %d is not an aligned word of seccomp_data", in.K)
			}
		case clsALU | opDIV | srcK:
			if in.K == 0 {
				bad = "division by constant zero"
			}
		case clsALU | opLSH | srcK, clsALU | opRSH | srcK:
			if in.K >= 32 {
				bad = fmt.Sprintf("shift by %d", in.K)
			}
		case clsLD | modeMEM, clsLDX | modeMEM, clsST, clsSTX:
			if in.K >= memWords {
				bad = fmt.Sprintf("scratch memory index %d (at most %d)", in.K, memWords-1)
			}
		case clsJMP | jmpJA:
			if uint64(in.K) >= uint64(n-pc-1) {
				bad = fmt.Sprintf("jump by %d leaves the program", in.K)
			}
		default:
			if in.Code&0x07 == clsJMP && (pc+int(in.Jt)+1 >= n || pc+int(in.Jf)+1 >= n) {
				bad = fmt.Sprintf("conditional jump (%d, %d) leaves the program", in.Jt, in.Jf)
			}
		}
		if bad != "" {
			return fmt.Errorf("%w: instruction %d: %s", ErrInvalid, pc, bad)
		}
	}
	if c := p[n-1].Code; c != clsRET|srcK && c != clsRET|retA {
		return fmt.Errorf("%w: last instruction (opcode %#04x) is not a return", ErrInvalid, c)
	}
	return p.checkMemory()
}

// checkMemory is net/core/filter.c's check_load_and_stores: a scratch word
// may be loaded only if every path to the load stored it.
func (p Program) checkMemory() error {
	masks := make([]uint16, len(p))
	for i := range masks {
		masks[i] = 0xffff
	}
	var valid uint16
	for pc, in := range p {
		valid &= masks[pc]
		switch in.Code {
		case clsST, clsSTX:
			valid |= 1 << in.K
		case clsLD | modeMEM, clsLDX | modeMEM:
			if valid&(1<<in.K) == 0 {
				return fmt.Errorf("%w: instruction %d: scratch memory word %d read before written", ErrInvalid, pc, in.K)
			}
		case clsJMP | jmpJA:
			masks[pc+1+int(in.K)] &= valid
			valid = 0xffff
		default:
			if in.Code&0x07 == clsJMP {
				masks[pc+1+int(in.Jt)] &= valid
				masks[pc+1+int(in.Jf)] &= valid
				valid = 0xffff
			}
		}
	}
	return nil
}

// Data is struct seccomp_data: what a filter sees of one system call.
type Data struct {
	Nr   int32
	Arch uint32 // AUDIT_ARCH_* of the calling convention (arch.Arch.AuditArch)
	// IP is the instruction pointer at the call: the address just after
	// the system call instruction.
	IP   uint64
	Args [6]uint64
}

// Bytes is the data as the kernel lays it out for the filter.
func (d *Data) Bytes() [DataSize]byte {
	var b [DataSize]byte
	binary.LittleEndian.PutUint32(b[0:], uint32(d.Nr))
	binary.LittleEndian.PutUint32(b[4:], d.Arch)
	binary.LittleEndian.PutUint64(b[8:], d.IP)
	for i, a := range d.Args {
		binary.LittleEndian.PutUint64(b[16+8*i:], a)
	}
	return b
}

// Run validates p and runs it over d, returning the 32-bit value the
// program returns (action and data).
func (p Program) Run(d *Data) (uint32, error) {
	if err := p.Validate(); err != nil {
		return 0, err
	}
	return p.run(d.Bytes()), nil
}

// run interprets a validated program. Arithmetic is unsigned 32-bit with
// wrap-around; the semantics are those of the kernel's conversion to eBPF
// (net/core/filter.c, bpf_convert_filter): a division by X = 0 makes the
// program return 0, and a shift by X uses X mod 32 (the eBPF interpreter's
// 32-bit shifts, kernel/bpf/core.c, and the x86 JIT's shl/shr with cl).
// Validation guarantees every index is in range and every run ends within
// len(p) steps (jumps only go forward).
func (p Program) run(sd [DataSize]byte) uint32 {
	var a, x uint32
	var mem [memWords]uint32
	for pc := 0; pc < len(p); pc++ {
		in := p[pc]
		operand := in.K
		if in.Code&srcX != 0 {
			operand = x
		}
		switch in.Code & 0x07 {
		case clsLD:
			switch in.Code {
			case clsLD | sizeW | modeABS:
				a = binary.LittleEndian.Uint32(sd[in.K:])
			case clsLD | sizeW | modeLEN:
				a = DataSize
			case clsLD | modeIMM:
				a = in.K
			case clsLD | modeMEM:
				a = mem[in.K]
			}
		case clsLDX:
			switch in.Code {
			case clsLDX | sizeW | modeLEN:
				x = DataSize
			case clsLDX | modeIMM:
				x = in.K
			case clsLDX | modeMEM:
				x = mem[in.K]
			}
		case clsST:
			mem[in.K] = a
		case clsSTX:
			mem[in.K] = x
		case clsALU:
			switch in.Code & 0xf0 {
			case opADD:
				a += operand
			case opSUB:
				a -= operand
			case opMUL:
				a *= operand
			case opDIV:
				if operand == 0 {
					return 0
				}
				a /= operand
			case opOR:
				a |= operand
			case opAND:
				a &= operand
			case opXOR:
				a ^= operand
			case opLSH:
				a <<= operand & 31
			case opRSH:
				a >>= operand & 31
			case opNEG:
				a = -a
			}
		case clsJMP:
			var taken bool
			switch in.Code & 0xf0 {
			case jmpJA:
				pc += int(in.K)
				continue
			case jmpJEQ:
				taken = a == operand
			case jmpJGT:
				taken = a > operand
			case jmpJGE:
				taken = a >= operand
			case jmpJSET:
				taken = a&operand != 0
			}
			if taken {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		case clsRET:
			if in.Code == clsRET|retA {
				return a
			}
			return in.K
		case clsMISC:
			if in.Code == clsMISC|miscTAX {
				x = a
			} else {
				a = x
			}
		}
	}
	// Unreachable for a validated program: its last instruction returns.
	return uint32(KillProcess)
}
