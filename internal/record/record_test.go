package record

import (
	"errors"
	"testing"
)

func sample() *Record {
	return &Record{
		ID: "hp-1234", Target: "/usr/bin/x", BuildID: "abcd", Base: 0x7f0000000000, Size: 3 * 4096,
		Redirects: []Redirect{{Func: "f", Addr: 0x401004, Entry: 0x401000, New: 0x7f0000001000,
			Orig: []byte{1, 2, 3, 4, 5}, Jump: []byte{0xe9, 0, 0, 0, 0}, Kind: "jmp rel32"}},
	}
}

func TestRoundTrip(t *testing.T) {
	b, err := Encode(sample(), StateApplied)
	if err != nil {
		t.Fatal(err)
	}
	r, s, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if s != StateApplied || r.ID != "hp-1234" || len(r.Redirects) != 1 || r.Redirects[0].Orig[4] != 5 {
		t.Fatalf("round trip: %v %+v", s, r)
	}
	copy(b[StateOffset:], StateBytes(StateReverting))
	if _, s, _ := Decode(b); s != StateReverting {
		t.Fatalf("state update: %v", s)
	}
}

func TestDecodeRejects(t *testing.T) {
	good, _ := Encode(sample(), StateApplied)
	mut := func(f func(b []byte) []byte) []byte {
		c := append([]byte(nil), good...)
		return f(c)
	}
	cases := map[string][]byte{
		"empty":     nil,
		"magic":     mut(func(b []byte) []byte { b[0] = 'X'; return b }),
		"version":   mut(func(b []byte) []byte { b[8] = 9; return b }),
		"state":     mut(func(b []byte) []byte { b[StateOffset] = 77; return b }),
		"truncated": mut(func(b []byte) []byte { return b[:len(b)-3] }),
		"huge":      mut(func(b []byte) []byte { b[19] = 0x7f; return b }),
		"size":      mut(func(b []byte) []byte { b[24]++; return b }),
	}
	for name, b := range cases {
		if _, _, err := Decode(b); !errors.Is(err, ErrBadRecord) {
			t.Errorf("%s: got %v, want ErrBadRecord", name, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	good, _ := Encode(sample(), StateApplied)
	f.Add(good)
	f.Add([]byte(Magic))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, _, err := Decode(b)
		if err == nil && r == nil {
			t.Fatal("nil record without error")
		}
	})
}
