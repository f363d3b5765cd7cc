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
	// Strings a terminal would interpret: escapes, C1 controls, bidi
	// overrides, invalid UTF-8 (a forged record in a hostile process).
	for name, edit := range map[string]func(r *Record){
		"escape in id":    func(r *Record) { r.ID = "hp-\x1b[2J" },
		"space in id":     func(r *Record) { r.ID = "hp 1" },
		"csi in target":   func(r *Record) { r.Target = "/usr/bin/x\u009b31m" },
		"bidi in func":    func(r *Record) { r.Redirects[0].Func = "f\u202e" },
		"newline in kind": func(r *Record) { r.Redirects[0].Kind = "jmp\nrel32" },
		"empty func":      func(r *Record) { r.Redirects[0].Func = "" },
	} {
		r := sample()
		edit(r)
		b, err := Encode(r, StateApplied)
		if err != nil {
			t.Fatal(err)
		}
		cases[name] = b
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
		r, s, err := Decode(b)
		if err != nil {
			return
		}
		if r == nil {
			t.Fatal("nil record without error")
		}
		// What decodes is safe to print and survives a round trip.
		for _, v := range []string{r.ID, r.Target, r.BuildID, r.Digest} {
			if !Printable(v) {
				t.Fatalf("decoded unprintable %q", v)
			}
		}
		for _, rd := range r.Redirects {
			if !Printable(rd.Func) || !Printable(rd.Kind) || len(rd.Orig) != len(rd.Jump) {
				t.Fatalf("decoded bad redirect %+v", rd)
			}
		}
		again, err := Encode(r, s)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := Decode(again); err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
	})
}
