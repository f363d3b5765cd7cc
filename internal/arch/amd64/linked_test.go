package amd64

import "testing"

func TestPCRelBias(t *testing.T) {
	code := []byte{
		0x48, 0x8d, 0x05, 0, 0, 0, 0, // lea 0(%rip),%rax: field at 3, ends at 7
		0x83, 0x3d, 0, 0, 0, 0, 0x05, // cmpl $5, 0(%rip): field at 9, ends at 14
		0xc7, 0x05, 0, 0, 0, 0, 1, 0, 0, 0, // movl $1, 0(%rip): field at 16, ends at 24
		0xe8, 0, 0, 0, 0, // call: field at 25, ends at 29
		0xc3,
	}
	got, err := Arch{}.PCRelBias(code, []int{3, 9, 16, 25})
	if err != nil {
		t.Fatal(err)
	}
	want := []int64{4, 5, 8, 4}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("field %d: bias %d, want %d", i, got[i], want[i])
		}
	}
	if _, err := (Arch{}).PCRelBias(code, []int{4}); err == nil {
		t.Error("a field that straddles no instruction's 4 bytes should be an error")
	}
}

func TestRelaxed(t *testing.T) {
	// mov foo@GOTPCREL(%rip),%rax as assembled, and lea foo(%rip),%rax linked.
	orig := []byte{0x48, 0x8b, 0x05, 0, 0, 0, 0, 0xc3}
	mask := []byte{0xff, 0xff, 0xff, 0, 0, 0, 0, 0xff}
	linked := []byte{0x48, 0x8d, 0x05, 1, 2, 3, 4, 0xc3}
	if !(Arch{}).Relaxed(orig, mask, linked, 1) {
		t.Error("mov -> lea not recognised")
	}
	if (Arch{}).Relaxed(orig, mask, linked, 7) {
		t.Error("a difference outside a relaxation was accepted")
	}
	// call *foo@GOTPCREL(%rip) -> addr32 call foo.
	orig = []byte{0xff, 0x15, 0, 0, 0, 0}
	mask = []byte{0xff, 0xff, 0, 0, 0, 0}
	linked = []byte{0x67, 0xe8, 1, 2, 3, 4}
	if !(Arch{}).Relaxed(orig, mask, linked, 0) || !(Arch{}).Relaxed(orig, mask, linked, 1) {
		t.Error("call *GOT -> addr32 call not recognised")
	}
	// A changed opcode without a masked field after it is a real difference.
	if (Arch{}).Relaxed([]byte{0x8b, 0xc0, 0x90}, []byte{0xff, 0xff, 0xff}, []byte{0x8d, 0xc0, 0x90}, 0) {
		t.Error("mov -> lea without a relocated field was accepted")
	}
}
