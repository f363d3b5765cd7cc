package amd64

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/hotpatch/hotpatch/internal/arch"
)

func TestPlanSlot(t *testing.T) {
	const addr = 0x401100
	const near = 0x50000000
	const far = 0x7f0000000000
	tests := []struct {
		name             string
		prev, gap        string // nil prev: unknown
		code, tail       string
		dest             uint64
		noPrev           bool
		wantSlot         uint64 // slot address
		wantSlotKind     string
		wantEntry        uint64 // patch point
		errSub           string
		wantSlotOrig     string
		wantEntryOrigHex string
	}{
		{
			// The case: lea; ret, linked last (no tail), 12 bytes of
			// padding after the previous function's ret.
			name: "tiny last in .text", prev: "31c0 c3", gap: "662e0f1f840000000000 6690", code: "8d4701 c3", dest: near,
			wantSlot: addr - 5, wantSlotKind: "jmp rel32", wantEntry: addr, wantSlotOrig: "0000006690", wantEntryOrigHex: "8d47",
		},
		{
			name: "endbr tiny", prev: "c3", gap: "cccccccccccccccccccccccc", code: "f30f1efa 8d4701 c3", dest: near,
			wantSlot: addr - 5, wantSlotKind: "jmp rel32", wantEntry: addr + 4, wantSlotOrig: "cccccccccc", wantEntryOrigHex: "8d47",
		},
		{
			name: "far destination, abs64 in the slot", prev: "c3", gap: "cccccccccccccccccccccccccccccccc", code: "8d4701 c3", dest: far,
			wantSlot: addr - 14, wantSlotKind: "jmp abs64", wantEntry: addr, wantSlotOrig: "cccccccccccccccccccccccccccc", wantEntryOrigHex: "8d47",
		},
		{
			// A loop at the entry: offset 2 is a branch target, so the 5-byte
			// jump cannot go in place; there is no padding above, so the slot
			// goes after the function.
			name: "branch target at entry+2, slot after", prev: "c3", gap: "", dest: near,
			code: "31c0 ffc0 39f8 7cfa c3", tail: "0f1f440000 0f1f4000",
			wantSlot: addr + 9, wantSlotKind: "jmp rel32", wantEntry: addr, wantSlotOrig: "0f1f440000", wantEntryOrigHex: "31c0",
		},
		{name: "no padding anywhere", prev: "c3", gap: "", code: "8d4701 c3", dest: near, errSub: "no padding above the entry"},
		{name: "gap too small", prev: "c3", gap: "909090", code: "8d4701 c3", dest: near, errSub: "too small for a 5-byte jump"},
		{name: "previous falls through", prev: "31c0", gap: "9090909090909090", code: "8d4701 c3", dest: near, errSub: "ends with a other"},
		{
			// A final (noreturn) call: its return address, the first padding
			// byte, stays out of the slot.
			name: "previous ends with a call", prev: "e8 00100000", gap: "9090909090909090", code: "8d4701 c3", dest: near,
			wantSlot: addr - 5, wantSlotKind: "jmp rel32", wantEntry: addr, wantSlotOrig: "9090909090", wantEntryOrigHex: "8d47",
		},
		{name: "previous ends with a call, 5 bytes of padding", prev: "e8 00100000", gap: "9090909090", code: "8d4701 c3", dest: near, errSub: "too small"},
		{name: "unknown previous", noPrev: true, code: "8d4701 c3", dest: near, errSub: "follow no known function"},
		{name: "gap not padding", prev: "c3", gap: "9090 4889e5 90909090", code: "8d4701 c3", dest: near, errSub: "not all padding"},
		{name: "branch into the gap", prev: "74 01 c3", gap: "9090909090909090", code: "8d4701 c3", dest: near, errSub: "is a branch target"},
		{name: "one byte", prev: "c3", gap: "9090909090909090", code: "c3", dest: near, errSub: "only 1 byte"},
		{name: "branch to entry+1", prev: "c3", gap: "9090909090909090", code: "90 90 ebfd c3", dest: near, errSub: "targets offset 0x1"},
		{name: "slot out of rel8 reach", prev: "c3", gap: "", code: "90 90 90 ebfd" + strings.Repeat("90", 200) + "c3", tail: "9090909090", dest: near, errSub: "out of reach of a jmp rel8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fn := arch.Func{Name: "f", Addr: addr, Code: hexb(t, tt.code), Tail: hexb(t, tt.tail)}
			if !tt.noPrev {
				fn.Gap = append([]byte{}, hexb(t, tt.gap)...)
				fn.Prev = hexb(t, tt.prev)
			}
			r, err := Arch{}.PlanRedirect(fn, tt.dest)
			if tt.errSub != "" {
				if err == nil || !errors.Is(err, arch.ErrNotPatchable) || !strings.Contains(err.Error(), tt.errSub) || !strings.Contains(err.Error(), "f:") {
					t.Fatalf("got %+v, %v; want a refusal naming f with %q", r, err, tt.errSub)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Slot == nil {
				t.Fatalf("no slot: %+v", r)
			}
			if r.Addr != tt.wantEntry || r.Slot.Addr != tt.wantSlot || !strings.HasPrefix(r.Slot.Kind, tt.wantSlotKind) {
				t.Errorf("entry %#x slot %#x %q, want %#x %#x %q", r.Addr, r.Slot.Addr, r.Slot.Kind, tt.wantEntry, tt.wantSlot, tt.wantSlotKind)
			}
			if !bytes.Equal(r.Orig, hexb(t, tt.wantEntryOrigHex)) || !bytes.Equal(r.Slot.Orig, hexb(t, tt.wantSlotOrig)) {
				t.Errorf("orig entry %x slot %x, want %s %s", r.Orig, r.Slot.Orig, tt.wantEntryOrigHex, tt.wantSlotOrig)
			}
			// The entry jump goes to the slot, the slot to dest.
			in, _, err := decodeOne(r.Jump, r.Addr)
			if err != nil || in.Kind != Jmp || in.Target != r.Slot.Addr || len(r.Jump) != 2 {
				t.Errorf("entry jump %x = %+v, %v", r.Jump, in, err)
			}
			if tt.wantSlotKind == "jmp rel32" {
				in, _, err := decodeOne(r.Slot.Jump, r.Slot.Addr)
				if err != nil || in.Kind != Jmp || in.Target != tt.dest {
					t.Errorf("slot jump %x = %+v, %v", r.Slot.Jump, in, err)
				}
			} else if !bytes.Equal(r.Slot.Jump, EncodeJmpAbs(tt.dest)) {
				t.Errorf("slot jump %x", r.Slot.Jump)
			}
			if len(r.Slot.Orig) != len(r.Slot.Jump) {
				t.Errorf("slot orig %d bytes, jump %d", len(r.Slot.Orig), len(r.Slot.Jump))
			}
		})
	}
}

func TestRelocateEntry(t *testing.T) {
	const addr = 0x401000
	const tramp = 0x402000
	tests := []struct {
		name   string
		code   string
		window int // bytes overwritten from addr
		want   string
		mapped map[uint64]uint64 // old offset -> new offset
		errSub string
	}{
		{
			// push %rbx; mov %edi,%ebx; <5th byte starts here> ...
			name: "plain", code: "53 89fb 4883ec10 c3", window: 5,
			want:   "53 89fb 4883ec10 e9" + le32(0x401007-(tramp+7+5)),
			mapped: map[uint64]uint64{1: 1, 3: 3},
		},
		{
			// mov 0x100(%rip),%eax: disp rebased by addr-tramp.
			name: "rip-relative", code: "8b0500010000 c3", window: 5,
			want:   "8b05" + le32(0x401006+0x100-(tramp+6)) + "e9" + le32(0x401006-(tramp+6+5)),
			mapped: map[uint64]uint64{},
		},
		{
			// A loop at the entry: jcc rel8 back to the entry becomes jcc rel32
			// to the old entry (which then holds the redirect).
			name: "jcc rel8", code: "ffc0 75fc c3", window: 5,
			want:   "ffc0 0f85" + le32(0x401000-(tramp+2+6)) + "c3",
			mapped: map[uint64]uint64{2: 2, 4: 8},
		},
		{
			name: "call rel32", code: "e8 10000000 c3", window: 5,
			want:   "e8" + le32(0x401015-(tramp+5)) + "e9" + le32(0x401005-(tramp+5+5)),
			mapped: map[uint64]uint64{},
		},
		{
			name: "jmp rel8 then padding", code: "eb10", window: 2,
			want:   "e9" + le32(0x401012-(tramp+5)),
			mapped: map[uint64]uint64{},
		},
		{
			name: "loop", code: "e2fe c3", window: 2,
			want:   "e202 eb05 e9" + le32(0x401000-(tramp+9)) + "e9" + le32(0x401002-(tramp+9+5)),
			mapped: map[uint64]uint64{},
		},
		{
			name: "syscall kept with its two bytes", code: "53 0f05 5b c3", window: 5,
			want:   "53 0f05 5b c3",
			mapped: map[uint64]uint64{1: 1, 3: 3, 4: 4},
		},
		{name: "falls off the end", code: "90 90", window: 5, errSub: "falls through its end"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code := hexb(t, tt.code)
			fn := arch.Func{Name: "f", Addr: addr, Code: code}
			r := arch.Redirect{Addr: addr, Jump: make([]byte, tt.window)}
			got, err := Arch{}.RelocateEntry(fn, r, tramp)
			if tt.errSub != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errSub) {
					t.Fatalf("got %x, %v; want error %q", got.Code, err, tt.errSub)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Code, hexb(t, tt.want)) {
				t.Errorf("code\n %x\nwant\n %x", got.Code, hexb(t, tt.want))
			}
			if len(got.Map) != len(tt.mapped) {
				t.Errorf("map %v, want %v", got.Map, tt.mapped)
			}
			for o, n := range tt.mapped {
				if got.Map[addr+o] != tramp+n {
					t.Errorf("map[%#x] = %#x, want %#x", addr+o, got.Map[addr+o], tramp+n)
				}
			}
			// The copy decodes.
			if _, err := Decode(got.Code, tramp); err != nil {
				t.Errorf("copy does not decode: %v", err)
			}
		})
	}
	// Out of reach of a RIP-relative operand.
	fn := arch.Func{Name: "f", Addr: addr, Code: hexb(t, "8b0500010000 c3")}
	if _, err := (Arch{}).RelocateEntry(fn, arch.Redirect{Addr: addr, Jump: make([]byte, 5)}, 0x7f0000000000); !errors.Is(err, arch.ErrOutOfRange) {
		t.Errorf("far copy: %v", err)
	}
}

func TestRewindEntry(t *testing.T) {
	const addr = 0x401000
	tests := []struct {
		name  string
		code  string
		pc    uint64 // offset
		delta uint64
		ok    bool
	}{
		{"after push", "55 4889e5 c3", 1, 8, true},
		{"after two pushes", "4157 4156 53 c3", 4, 16, true},
		{"after push and sub", "53 4883ec10 c3", 5, 0, false}, // pc 5 is outside a 5-byte window
		{"push, test", "53 85ff 7402 c3", 3, 8, true},
		{"after pause", "f390 8d4701 c3", 2, 0, true},
		{"after mov (not undoable)", "89f8 53 c3", 2, 0, false},
		{"mid instruction", "4883ec10 c3", 2, 0, false},
		{"at the entry", "55 c3", 0, 0, false},
	}
	for _, tt := range tests {
		fn := arch.Func{Name: "f", Addr: addr, Code: hexb(t, tt.code)}
		r := arch.Redirect{Addr: addr, Jump: make([]byte, 5)}
		d, ok := Arch{}.RewindEntry(fn, r, addr+tt.pc)
		if d != tt.delta || ok != tt.ok {
			t.Errorf("%s: RewindEntry = %d, %v; want %d, %v", tt.name, d, ok, tt.delta, tt.ok)
		}
	}
}

// le32 formats v as 4 little-endian hex bytes.
func le32(v int64) string {
	b := []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)}
	const hx = "0123456789abcdef"
	var s strings.Builder
	for _, c := range b {
		s.WriteByte(hx[c>>4])
		s.WriteByte(hx[c&15])
	}
	return s.String()
}

// A function below of unknown size (size-0 symbol, as crtstuff's
// frame_dummy): its code is found by decoding.
func TestPlanSlotUnsizedPrev(t *testing.T) {
	const addr = 0x1100
	prev := hexb(t, "f30f1efa e977ffffff 0f1f8000000000") // endbr64; jmp; nopl
	fn := arch.Func{Name: "compute", Addr: addr, Code: hexb(t, "8d4701 c3"), Prev: prev}
	r, err := Arch{}.PlanRedirect(fn, 0x10000000)
	if err != nil {
		t.Fatal(err)
	}
	if r.Slot == nil || r.Slot.Addr != addr-5 || !bytes.Equal(r.Slot.Orig, hexb(t, "8000000000")) {
		t.Fatalf("plan %+v slot %+v", r, r.Slot)
	}
	// Code right up to the entry: no gap.
	fn.Prev = hexb(t, "f30f1efa 31c0 c3")
	if _, err := (Arch{}).PlanRedirect(fn, 0x10000000); err == nil || !strings.Contains(err.Error(), "no padding above") {
		t.Fatalf("no gap: %v", err)
	}
}

// FuzzPlanSlot: whatever the bytes around a function (they come from the
// target's ELF file), planning never panics, a slot lies in the bytes given
// for padding and holds them in Orig, the entry jump reaches it, and the
// relocated copy of the overwritten bytes never panics either.
func FuzzPlanSlot(f *testing.F) {
	f.Add(hexb(f, "8d4701c3"), []byte{}, hexb(f, "662e0f1f8400000000006690"), hexb(f, "31c0c3"), uint64(0x50000000))
	f.Add(hexb(f, "31c0ffc039f87cfac3"), hexb(f, "0f1f4400000f1f4000"), []byte{}, hexb(f, "c3"), uint64(0x7f0000000000))
	f.Add(hexb(f, "f30f1efa8d4701c3"), []byte{}, hexb(f, "cccccccccccc"), hexb(f, "e800100000"), uint64(0x50000000))
	f.Fuzz(func(t *testing.T, code, tail, gap, prev []byte, dest uint64) {
		const addr = 0x401000
		fn := arch.Func{Name: "f", Addr: addr, Code: code, Tail: tail, Gap: gap, Prev: prev}
		// The same bytes once more as a farther gap, below the others.
		nearAt := uint64(addr - len(gap) - len(prev) - len(tail))
		fn.Near = []arch.Gap{{Addr: nearAt, Bytes: tail, Prev: prev, Next: prev}}
		r, err := Arch{}.PlanRedirect(fn, dest)
		if err != nil {
			if !errors.Is(err, arch.ErrNotPatchable) {
				t.Fatalf("error %v does not wrap ErrNotPatchable", err)
			}
			return
		}
		if s := r.Slot; s != nil && s.Addr >= uint64(addr-len(gap)) {
			lo := uint64(addr - len(gap))
			hi := uint64(addr + len(code) + len(tail))
			if len(s.Orig) != len(s.Jump) || s.Addr < lo || s.Addr+uint64(len(s.Jump)) > hi ||
				(s.Addr < addr && s.Addr+uint64(len(s.Jump)) > addr) || (s.Addr >= addr && s.Addr < addr+uint64(len(code))) {
				t.Fatalf("bad slot %+v", s)
			}
			around := append(append(append([]byte{}, gap...), code...), tail...)
			if !bytes.Equal(around[s.Addr-lo:s.Addr-lo+uint64(len(s.Orig))], s.Orig) {
				t.Fatalf("slot Orig %x does not match the bytes", s.Orig)
			}
		}
		if s := r.Slot; s != nil {
			if in, _, err := decodeOne(r.Jump, r.Addr); err != nil || in.Target != s.Addr {
				t.Fatalf("entry jump %x does not reach the slot at %#x", r.Jump, s.Addr)
			}
			if s.Addr < uint64(addr-len(gap)) && (s.Addr < nearAt || s.Addr+uint64(len(s.Jump)) > nearAt+uint64(len(tail))) {
				t.Fatalf("slot %+v outside the farther gap", s)
			}
		}
		rel, err := Arch{}.RelocateEntry(fn, r, 0x402000)
		if err == nil {
			for old, n := range rel.Map {
				if old <= r.Addr || old >= r.Addr+uint64(len(r.Jump)) || n < 0x402000 || n >= 0x402000+uint64(len(rel.Code)) {
					t.Fatalf("bad map %#x -> %#x", old, n)
				}
			}
		}
	})
}

// A slot in a gap between two other functions, when the padding right
// above the entry is too small.
func TestPlanSlotNearGap(t *testing.T) {
	const addr = 0x401140
	// f0 ... ret at 0x40111f; 16 bytes of padding 0x401120-0x40112f; f1 (15
	// bytes) 0x401130-0x40113e, ret; 1 byte of padding; compute at 0x401140.
	f1 := hexb(t, "4883ec08 e8 00000000 4883c408 90 c3")
	fn := arch.Func{Name: "compute", Addr: addr, Code: hexb(t, "8d4701 c3"), Prev: f1, Gap: hexb(t, "90"),
		Near: []arch.Gap{{Addr: 0x401120, Bytes: hexb(t, "90909090909090909090909090909090"), Prev: hexb(t, "31c0 c3"), Next: f1}}}
	r, err := Arch{}.PlanRedirect(fn, 0x10000000)
	if err != nil {
		t.Fatal(err)
	}
	if r.Slot == nil || r.Slot.Addr != 0x401130-5 || !strings.Contains(r.Slot.Kind, "between two other functions") {
		t.Fatalf("slot %+v", r.Slot)
	}
	if in, _, err := decodeOne(r.Jump, r.Addr); err != nil || in.Target != r.Slot.Addr {
		t.Fatalf("entry jump %x", r.Jump)
	}
	// A branch of the next function into the gap rules it out.
	fn.Near[0].Next = hexb(t, "ebee c3") // jmp 0x401120
	if _, err := (Arch{}).PlanRedirect(fn, 0x10000000); err == nil || !strings.Contains(err.Error(), "targets it") {
		t.Fatalf("branch into the near gap: %v", err)
	}
}
